"""HttpSourceClient: one job's `source` read page by page (httpx around sources.pagination).

Secrets (`${NAME}`) are resolved here, when a run starts, and nowhere else, and only names
the engine's allow-list (TG_SECRET_ENV, `redaction.SecretNames`) lets a job read. Every URL or
body excerpt that leaves this module (errors, `Page.url`) is sanitized and scrubbed of the
resolved secret values, and so are the records (a source that echoes a token back does not get
it stored); checkpoints carry `${NAME}` references instead of them. With
TG_BLOCK_PRIVATE_TARGETS (TG_BLOCK_LOOPBACK_TARGETS) every request, redirects and token
requests included, to a link-local, metadata or private (loopback) address is refused
(`TargetPolicy`, checked by `GuardedTransport` on each hop). Requests go through
`requester.Requester` (auth, rate limit, retries); pages addressable in advance are fetched
several at once through `parallel.Window` and yielded in order.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import random
import re
import socket
import ssl
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import certifi
import httpx
import orjson
import pyarrow as pa
from aiolimiter import AsyncLimiter

from tg_actors import jobs
from tg_actors.errors import SourceError
from tg_actors.records import select_records
from tg_actors.redaction import SecretNames, resolve_value, scrub, secret_environ
from tg_actors.retry import RetryPolicy
from tg_actors.settings import max_retry_after
from tg_actors.sources import formats
from tg_actors.sources.pagination import Paginator, RequestSpec, ResponseView, make_paginator
from tg_actors.sources.paginator_base import Records, TableRows
from tg_actors.sources.parallel import Window
from tg_actors.sources.requester import Acquire, Redactor, Requester, Sleep, TokenCache
from tg_actors.sources.rules import matching
from tg_actors.sources.totals import ExpectedTotal

USER_AGENT = "turbo-giggle/0.1"
CHECKPOINT_VERSION = 1
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # the `${NAME}` syntax of redaction.py
_ACCEPT = {  # the Accept header of each source.format
    "json": "application/json",
    "jsonl": "application/jsonl, application/x-ndjson, application/json;q=0.5",
    "csv": "text/csv",
}


@dataclass(frozen=True)
class Page:
    number: int  # 1-based; continues across a resume
    records: list[dict[str, Any]]
    url: str  # as requested, sanitized: safe to log
    bytes: int  # size of the response body
    # JSON-ready: `pages(resume=checkpoint)` on a new client continues right after this page;
    # None on the last page. Holds `${NAME}` references, never secret values.
    checkpoint: dict[str, Any] | None = None
    # a `skip` rule matched this response: it gave no records and ended its chain
    skipped: bool = False
    # source.format jsonl or csv: the page's rows read straight into Arrow (`records` is
    # then empty; sources/formats.py); None for json
    table: pa.Table | None = None


@dataclass(frozen=True)
class _Run:
    spec: jobs.HttpSource  # secrets resolved
    redact: Redactor
    refs: dict[str, str]  # `${NAME}` -> value, for checkpoints


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: building it costs ~17 ms, once per run before."""
    return ssl.create_default_context(cafile=certifi.where())


class SharedTransport(httpx.AsyncBaseTransport):
    """An engine's one connection pool, shared by all its runs: keep-alive connections to an
    API are reused across runs (a new TCP and TLS handshake per short run was most of its
    cost). Each run's client closing does not close the pool; `close` does."""

    def __init__(self, max_connections: int = 100) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._pool = httpx.AsyncHTTPTransport(verify=tls_context(), limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        """A run's client is done: the pool stays for the next runs."""

    async def close(self) -> None:
        await self._pool.aclose()


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# link-local (cloud metadata at 169.254.169.254 and fd00:ec2::254), private, carrier-grade NAT
# (some clouds' metadata, 100.100.100.200) and unique-local ranges
_PRIVATE_NETS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fe80::/10",
        "fc00::/7",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOPBACK_NETS = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "0.0.0.0/8"))
_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})


class BlockedTarget(httpx.RequestError):
    """A request to an address the engine's TargetPolicy refuses (never retried)."""


@dataclass(frozen=True)
class TargetPolicy:
    """Which addresses a source may reach. Off by default; `block_private` refuses link-local,
    metadata and private ranges, `block_loopback` (separately) 127.0.0.0/8, ::1 and 0.0.0.0.
    An IPv4 address carried in IPv6 (mapped, 6to4, NAT64) counts as itself."""

    block_private: bool = False
    block_loopback: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> TargetPolicy:
        """The engine's policy: TG_BLOCK_PRIVATE_TARGETS, TG_BLOCK_LOOPBACK_TARGETS."""
        source = os.environ if environ is None else environ

        def flag(name: str) -> bool:
            return source.get(name, "").strip().lower() in _TRUE

        return cls(flag("TG_BLOCK_PRIVATE_TARGETS"), flag("TG_BLOCK_LOOPBACK_TARGETS"))

    @property
    def active(self) -> bool:
        return self.block_private or self.block_loopback

    def refuses(self, address: str) -> bool:
        return self.why(ipaddress.ip_address(address)) is not None

    def why(self, ip: IPAddress) -> str | None:
        """The reason `ip` is refused, or None."""
        if isinstance(ip, ipaddress.IPv6Address):  # an IPv4 address carried in IPv6
            mapped = ip.ipv4_mapped or ip.sixtofour
            if mapped is None and ip in _NAT64:
                mapped = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
            if mapped is not None:
                ip = mapped
        if self.block_private and any(ip in net for net in _PRIVATE_NETS):
            return "a link-local or private address: refused because TG_BLOCK_PRIVATE_TARGETS is on"
        if self.block_loopback and any(ip in net for net in _LOOPBACK_NETS):
            return "a loopback address: refused because TG_BLOCK_LOOPBACK_TARGETS is on"
        return None

    async def check(self, request: httpx.Request) -> None:
        """Raise BlockedTarget when the request's host is, or resolves to, a refused address.
        A name that does not resolve passes: its connection fails by itself."""
        host = request.url.host
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            port = request.url.port or (443 if request.url.scheme == "https" else 80)
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except OSError:
                return
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        for ip in addresses:
            reason = self.why(ip)
            if reason is not None:
                shown = host if str(ip) == host else f"{host} ({ip})"
                raise BlockedTarget(f"{shown} is {reason}", request=request)


class GuardedTransport(httpx.AsyncBaseTransport):
    """`inner` behind a TargetPolicy: every request it is handed, each redirect hop (httpx
    sends each through the transport) and each oauth2 token request, is checked first."""

    def __init__(self, inner: httpx.AsyncBaseTransport, policy: TargetPolicy) -> None:
        self._inner = inner
        self._policy = policy

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._policy.check(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class HttpSourceClient:
    """Reads an `HttpSource` spec. One `httpx.AsyncClient` per `pages()` run.

    `acquire` is awaited before every API request (each try, not token requests): the
    engine's shared rate limit. Without it, `spec.rate_limit` is applied per run, locally.
    `extra_params` (the incremental filter) join `spec.params` on the first request and stay
    on every request built from params; a next link from the API is followed as given.
    `secret_names`: which `${NAME}`s may be resolved (default: every name of an explicit
    `env`; for the process environment, the engine's TG_SECRET_ENV allow-list). `targets`:
    the addresses refused (default: TG_BLOCK_PRIVATE_TARGETS / TG_BLOCK_LOOPBACK_TARGETS).

    Iterate with `contextlib.aclosing(client.pages())` when you may stop early, so requests
    in flight are cancelled and the connection pool closes at once.
    """

    def __init__(
        self,
        spec: jobs.HttpSource,
        *,
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        acquire: Acquire | None = None,
        extra_params: Mapping[str, str] | None = None,
        secret_names: SecretNames | None = None,
        targets: TargetPolicy | None = None,
        tokens: TokenCache | None = None,
        full_read: bool = True,
    ) -> None:
        self.spec = spec
        self._env = env
        if secret_names is None:
            secret_names = SecretNames.from_environ() if env is None else SecretNames.any()
        self._secret_names = secret_names
        self._targets = TargetPolicy.from_environ() if targets is None else targets
        self._transport = transport
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._acquire = acquire
        self._extra = dict(extra_params or {})
        self._full_read = full_read  # False: a window slice (expect_total is not checked)
        # oauth2 access token, reused across runs until due (and across a for_each run's chains)
        self._tokens = TokenCache(clock) if tokens is None else tokens
        # after `pages()`: the masks of its secrets, and why its pagination ended (reason
        # code, a sentence), for a test read (engine/preview.py)
        self.redactor = Redactor(set())
        self.stopped: tuple[str, str] | None = None

    async def pages(self, resume: dict[str, Any] | None = None) -> AsyncGenerator[Page, None]:
        """Pages in order, each with the checkpoint to resume after it.

        With `resume` (a `Page.checkpoint` of an earlier run of this spec) the run starts with
        the request after that page and numbers pages on from it; the checkpoint's query
        (incremental filter included) is used as saved, `extra_params` are not re-applied.
        Raises SourceError (PaginationLoop, a checkpoint that does not fit), MissingSecret.
        """
        run = self._resolve()
        self.redactor, self.stopped = run.redact, None
        spec = run.spec
        paginator = make_paginator(spec.paginate)
        base = RequestSpec(spec.url, {**spec.params, **self._extra}, dict(spec.headers), spec.body)
        request: RequestSpec | None
        request, number = self._start(run, paginator, base, resume)
        total = self._expected_total(spec, resume)
        headers = {"User-Agent": USER_AGENT, "Accept": _ACCEPT[spec.format]}
        async with httpx.AsyncClient(
            transport=self._guarded_transport(),
            timeout=spec.timeout.total_seconds(),
            headers=headers,
            follow_redirects=True,
            verify=tls_context(),
        ) as client:
            requester = Requester(
                client,
                method=spec.method,
                auth=spec.auth,
                policy=RetryPolicy(
                    spec.max_tries,
                    spec.backoff.total_seconds(),
                    spec.max_backoff.total_seconds(),
                    max_retry_after=max_retry_after(),  # TG_MAX_RETRY_AFTER
                ),
                redactor=run.redact,
                tokens=self._tokens,
                sleep=self._sleep,
                rng=self._rng,
                acquire=self._acquire or local_limit(spec.rate_limit),
                max_bytes=spec.max_page_bytes,
                rules=spec.rules,
            )
            window: Window[RequestSpec, httpx.Response] = Window(requester.send, spec.concurrency)
            try:
                while request is not None:
                    _fill(window, paginator, request, number, spec.max_pages)
                    sent, response = await window.pop()
                    number += 1
                    url = run.redact.url(str(response.request.url))
                    rule = matching(
                        spec.rules, response.status_code, response.headers, response.content
                    )
                    if rule is not None:  # skip or stop (requester.py raised for the others)
                        window.clear()
                        with self._about(run, spec.method, url):
                            total.check(url)  # a read a rule cut short is checked too
                        skipped = rule.action is jobs.RuleAction.SKIP
                        code = response.status_code
                        self.stopped = (
                            f"rule_{rule.action}",
                            f"a {rule.action} rule matched {code}",
                        )
                        yield Page(number, [], url, len(response.content), None, skipped)
                        return
                    with self._about(run, spec.method, url):
                        kind = response.headers.get("content-type")
                        content = formats.decode(response.content, kind, spec.max_page_bytes)
                        table = body = None
                        if spec.format == "json":
                            body = self._parse(run, response, url, content)
                            records = select_records(body, spec.records, page=number)
                        else:  # rows straight into Arrow: paginators see their count
                            table = formats.to_table(content, spec.format, spec.columns)
                            records = []
                        seen: Records = records if table is None else TableRows(table, content)
                        view = ResponseView(
                            response.status_code, response.headers, body, str(response.url)
                        )
                        done = spec.max_pages is not None and number >= spec.max_pages
                        request = None if done else paginator.next(sent, view, seen)
                        total.page(number, view, len(seen))
                        if done:
                            self.stopped = ("max_pages", f"the job's max_pages ({number})")
                        elif request is None:
                            self.stopped = paginator.stopped
                            total.check(url)
                    if request is None or (len(window) and window.keys()[0] != request):
                        window.clear()  # the end, or the API moved off the plan: re-plan
                    checkpoint = None
                    if request is not None:
                        checkpoint = self._checkpoint(run, paginator, request, number)
                        if total.active:
                            checkpoint["total"] = total.snapshot()
                        _fill(window, paginator, request, number, spec.max_pages)
                    if table is not None:
                        table = _scrub_table(table, run.redact.secrets, content, spec.format)
                    records = _scrub_records(records, run.redact.secrets, content)
                    size = len(response.content)
                    yield Page(number, records, url, size, checkpoint, table=table)
            finally:
                await window.aclose()

    def _expected_total(
        self, spec: jobs.HttpSource, resume: dict[str, Any] | None
    ) -> ExpectedTotal:
        """The expect_total check of this read: off unless it is a full read (no incremental
        filter, no window)."""
        expect = spec.expect_total
        if expect is None or self._extra or not self._full_read:
            return ExpectedTotal()
        if isinstance(expect, str):
            total = ExpectedTotal(path=expect)
        else:
            total = ExpectedTotal(header=expect.header)
        total.restore((resume or {}).get("total"))
        return total

    def _guarded_transport(self) -> httpx.AsyncBaseTransport | None:
        """The transport of this run: the given one (or httpx's), behind the target policy
        when it refuses anything."""
        if not self._targets.active:
            return self._transport
        inner = self._transport or httpx.AsyncHTTPTransport(verify=tls_context())
        return GuardedTransport(inner, self._targets)

    def _start(
        self, run: _Run, paginator: Paginator, base: RequestSpec, resume: dict[str, Any] | None
    ) -> tuple[RequestSpec, int]:
        """(first request, pages already done) for a fresh run or from a checkpoint."""
        if resume is None:
            return paginator.first(base), 0
        saved = _untemplate(resume, run.refs)
        try:
            version, number, request = saved["version"], saved["page"], saved["request"]
            url, params = request["url"], request["params"]
            if version != CHECKPOINT_VERSION or not isinstance(number, int):
                raise TypeError(version)
            if not isinstance(url, str) or not isinstance(params, dict):
                raise TypeError(url)
            state = saved["paginator"]
        except (KeyError, TypeError):
            raise SourceError("cannot resume: the checkpoint is malformed") from None
        paginator.restore(state)
        return RequestSpec(url, dict(params), base.headers, request.get("json", base.json)), number

    @staticmethod
    def _checkpoint(
        run: _Run, paginator: Paginator, request: RequestSpec, number: int
    ) -> dict[str, Any]:
        # headers come from the spec on resume: only what pagination changes is kept (the
        # body too, as a body cursor moves in it)
        # the paginator's memory holds digests and numbers, never URLs: only the request may
        # hold a secret value, written back as its `${NAME}` reference
        saved: dict[str, Any] = {"url": request.url, "params": dict(request.params)}
        if request.json is not None:  # a body cursor (paginate.body_path) moves in it
            saved["json"] = request.json
        return {
            "version": CHECKPOINT_VERSION,
            "page": number,
            "request": _template(saved, run.refs),
            "paginator": paginator.snapshot(),
        }

    @contextmanager
    def _about(self, run: _Run, method: str, url: str) -> Iterator[None]:
        """Name the request in SourceErrors from the core, and scrub what the core wrote."""
        try:
            yield
        except SourceError as exc:
            message = run.redact.text(f"{method} {url}: {exc}")
            raise type(exc)(message, url=url, status=exc.status) from None

    def _resolve(self) -> _Run:
        """The spec with secrets resolved (never stored beyond this run, never shown)."""
        raw = self.spec.model_dump(by_alias=True)
        self._secret_names.check(raw, "source")  # before any value is read
        # the process's own: its environment, then the files of TG_SECRETS_DIR
        env = secret_environ() if self._env is None else self._env
        spec = jobs.HttpSource.model_validate(resolve_value(raw, env))
        names = set(_REF.findall(orjson.dumps(raw, default=str).decode()))
        refs = {name: env[name] for name in names}
        secrets = set(refs.values())
        auth = spec.auth
        fields = ("token", "password", "client_secret", "refresh_token")
        secrets |= {getattr(auth, field, None) or "" for field in fields}
        if isinstance(auth, jobs.ApiKeyAuth):
            secrets.add(auth.value)
        if self._tokens.token is not None:  # an oauth2 or login token kept from an earlier run
            secrets.add(self._tokens.token.value)
        if self._tokens.refresh_token is not None:  # a refresh token the server rotated to
            secrets.add(self._tokens.refresh_token)
        return _Run(spec, Redactor(secrets), refs)

    @staticmethod
    def _parse(run: _Run, response: httpx.Response, url: str, content: bytes) -> Any:
        if not content.strip():
            return None  # 204 or an empty body: a page without records
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            kind = response.headers.get("content-type", "no content-type")
            raise SourceError(
                f"response is not JSON ({kind}): {run.redact.excerpt(response)}", url=url
            ) from None


def _fill(
    window: Window[RequestSpec, httpx.Response],
    paginator: Paginator,
    request: RequestSpec,
    done: int,
    max_pages: int | None,
) -> None:
    """Put `request` in flight, and the planned requests after it while there is room."""
    if not len(window):
        window.push(request)
    room = window.free
    if max_pages is not None:  # window entries are pages done+1, done+2, ...
        room = min(room, max_pages - done - len(window))
    if room > 0 and paginator.addressable:
        planned = islice(paginator.upcoming(request), len(window) - 1, None)
        for following in islice(planned, room):
            window.push(following)


def _scrub_records(
    records: list[dict[str, Any]], secrets: tuple[str, ...], body: bytes
) -> list[dict[str, Any]]:
    """`records` with every secret value of the run inside a string (a value or a key, at any
    depth) replaced by `***`: a source that echoes its credentials back does not get them
    stored. Checked against the raw body first, so a page that holds none costs a few `in`
    scans: only a body that holds a secret as it is, or any JSON escape (by which a secret
    could be spelled otherwise), is walked."""
    live = tuple(secret for secret in secrets if len(secret) >= 4)  # as redaction.scrub
    if not live or not records:
        return records
    if b"\\" not in body and not any(secret.encode() in body for secret in live):
        return records
    return [_scrub_value(record, live) for record in records]


def _scrub_table(table: pa.Table, secrets: tuple[str, ...], body: bytes, fmt: str) -> pa.Table:
    """`_scrub_records` for a jsonl/csv page's table: checked against the (decoded) body as
    it is, and only a body holding a secret (or, for jsonl, a JSON escape) is scrubbed, by
    `pyarrow.compute.replace_substring` over its text (formats.scrub_table)."""
    live = tuple(secret for secret in secrets if len(secret) >= 4)  # as redaction.scrub
    if not live or not table.num_rows:
        return table
    escaped = fmt == "jsonl" and b"\\" in body
    if not escaped and not any(secret.encode() in body for secret in live):
        return table
    return formats.scrub_table(table, live)


def _scrub_value(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets) if value else value
    if isinstance(value, dict):
        return {
            (scrub(k, secrets) if isinstance(k, str) else k): _scrub_value(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub_value(v, secrets) for v in value]
    return value


def local_limit(rate_limit: jobs.RateLimit | None) -> Acquire | None:
    """`rate_limit` for this run alone: one request every 1/per_second seconds, no burst."""
    if rate_limit is None:
        return None
    limiter = AsyncLimiter(1, 1.0 / rate_limit.per_second)

    async def acquire() -> None:
        await limiter.acquire()

    return acquire


def _template(value: Any, refs: dict[str, str]) -> Any:
    """`value` with each resolved secret written back as its `${NAME}` reference."""
    if isinstance(value, str):
        for name, secret in sorted(refs.items(), key=lambda item: len(item[1]), reverse=True):
            if len(secret) >= 4:  # as redaction.scrub: shorter values would hit by chance
                value = value.replace(secret, f"${{{name}}}")
        return value
    if isinstance(value, dict):
        return {k: _template(v, refs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_template(v, refs) for v in value]
    return value


def _untemplate(value: Any, refs: dict[str, str]) -> Any:
    """The inverse of `_template` for the references this run knows."""
    if isinstance(value, str):
        return _REF.sub(lambda m: refs.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: _untemplate(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_untemplate(v, refs) for v in value]
    return value
