"""One attempt's pure steps, shared by the SyncEngine actor (engine/actor.py) and the
Ray-free local run (tg_actors/localrun.py): the Begin an attempt asks for, the extraction
from the source into `stage` (plain or fanned out), the oauth2 token cache, and how an
error reads in `tg.runs.error`. Nothing here imports Ray: `import tg_actors.localrun` must
not start paying for it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import httpx

from tg_actors.attempts import Begin, Begun
from tg_actors.engine.fanout import extract_chains, fans_out, plain_filter
from tg_actors.engine.sync import Acquire, Progress, Stage, SyncResult, extract_and_stage
from tg_actors.jobs import JobSpec, OAuth2RefreshToken
from tg_actors.sources.requester import TokenCache

# keep(token, origin): save a refresh token the server rotated to (tg.state)
KeepToken = Callable[[str, str], Awaitable[None]]


def describe(exc: BaseException) -> str:
    """An attempt's error as the run shows it: `Type: message` (a timeout in words)."""
    if isinstance(exc, TimeoutError):
        return "attempt timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def begin_of(spec: JobSpec, run_id: str, attempt: int | None) -> Begin:
    """What attempt `attempt` of the run asks of the Database before its first request."""
    for_each = spec.source.for_each
    return Begin(
        run_id,
        job=spec.name,
        attempt=attempt,
        incremental=spec.source.incremental is not None,
        for_each_sql=for_each.sql if for_each is not None else None,
        positioned=fans_out(spec),
        refresh_token=isinstance(spec.source.auth, OAuth2RefreshToken),
    )


def tokens_of(spec: JobSpec, begun: Begun, keep: KeepToken) -> TokenCache | None:
    """For oauth2_refresh_token: the run's token cache, starting from the refresh token an
    earlier run rotated to, and saving a new rotation (`keep`) before it is used."""
    if not isinstance(spec.source.auth, OAuth2RefreshToken):
        return None
    return TokenCache(time.monotonic, stored_refresh=begun.refresh_token, on_rotate=keep)


async def extract(
    spec: JobSpec,
    begun: Begun,
    stage: Stage,
    progress: Progress | None,
    *,
    acquire: Acquire | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    tokens: TokenCache | None = None,
) -> SyncResult:
    """The attempt's pages from the source into `stage`, resuming where `begun` says; with
    `acquire` None a job's rate_limit holds for this run alone (sources/http.local_limit)."""
    if fans_out(spec):
        return await extract_chains(
            spec,
            stage,
            progress,
            begun=begun,
            now=begun.started_at,
            acquire=acquire,
            keep_tail=True,
            transport=transport,
            tokens=tokens,
        )
    cursor, params = plain_filter(spec, begun)
    return await extract_and_stage(
        spec,
        stage,
        progress,
        resume=begun.resume,
        cursor=cursor,
        acquire=acquire,
        keep_tail=True,
        transport=transport,
        params=params,
        tokens=tokens,
    )
