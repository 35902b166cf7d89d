"""One HTTP request, done properly: auth, the shared rate limit, retries with backoff.

`Requester` is built per run (it holds the run's httpx client and asyncio lock); what must
outlive a run (the oauth2 token) lives in a `TokenCache` owned by the source client.
Every httpx failure becomes a `SourceError` in `Requester._try_once`, and only there.
A request's tries, for an API request:

    acquire() -> send -> 2xx: done
                      -> 401 with oauth2: new token, send again (once; not a try)
                      -> connection error, timeout, 408, 429, 5xx: wait (Retry-After, else
                         jittered backoff), next try; after max_tries: SourceError
                         (a Retry-After over TG_MAX_RETRY_AFTER: SourceError at once)
                      -> any other status: SourceError at once
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from tg_actors import jobs
from tg_actors.errors import RuleFailed, SourceError
from tg_actors.records import extract_value
from tg_actors.redaction import sanitize_url, scrub
from tg_actors.retry import RetryPolicy, is_retryable_status, retry_after_seconds
from tg_actors.sources.pagination import RequestSpec, merge_query
from tg_actors.sources.rules import matching

EXCERPT_CHARS = 300
Acquire = Callable[[], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]
AuthSpec = (
    jobs.NoAuth
    | jobs.BearerAuth
    | jobs.BasicAuth
    | jobs.ApiKeyAuth
    | jobs.OAuth2ClientCredentials
    | jobs.OAuth2RefreshToken
    | jobs.LoginAuth
)
TokenAuth = jobs.OAuth2ClientCredentials | jobs.OAuth2RefreshToken | jobs.LoginAuth
# worth another try: the network failed or the server did not answer in time
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class Redactor:
    """Masks a run's secret values (longest first) in URLs and free text."""

    def __init__(self, secrets: set[str]) -> None:
        self.secrets: tuple[str, ...] = ()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        every = {*self.secrets, *secrets} - {""}
        self.secrets = tuple(sorted(every, key=len, reverse=True))

    def url(self, url: str) -> str:
        return sanitize_url(url, self.secrets)

    def text(self, text: str) -> str:
        return scrub(text, self.secrets)

    def excerpt(self, response: httpx.Response) -> str:
        # scrub before cutting, so a secret split by the cut cannot leak half of itself
        text = " ".join(response.text[: EXCERPT_CHARS * 8].split())
        return self.text(text)[:EXCERPT_CHARS]


@dataclass(frozen=True)
class Token:
    value: str
    renew_at: float  # on the client's clock


@dataclass
class TokenCache:
    """The oauth2 (or login) access token, kept across runs until shortly before it expires,
    and the refresh token the server last rotated to (oauth2_refresh_token)."""

    clock: Callable[[], float]
    token: Token | None = None
    refresh_token: str | None = None
    # the rotated refresh token an earlier run stored (tg.state) and the digest of the job's
    # own refresh_token it descends from: used while the job still names that one
    stored_refresh: tuple[str, str] | None = None
    # called with (rotated token, origin digest) as soon as the server rotates it, so the
    # next run starts from it (the engine saves it in tg.state; it is never shown)
    on_rotate: Callable[[str, str], Awaitable[None]] | None = None


def refresh_origin(refresh_token: str) -> str:
    """A digest of a job's own refresh_token: which one a stored rotation descends from."""
    return hashlib.blake2b(refresh_token.encode(), digest_size=16).hexdigest()


class Requester:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        method: str,
        auth: AuthSpec,
        policy: RetryPolicy,
        redactor: Redactor,
        tokens: TokenCache,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        acquire: Acquire | None = None,
        max_bytes: int | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rules: Sequence[jobs.Rule] = (),
    ) -> None:
        self.client, self.method, self.auth, self.policy = client, method, auth, policy
        self.now = now  # wall clock for Retry-After given as an HTTP date
        self.redact, self.tokens, self.sleep = redactor, tokens, sleep
        self.rng = rng or random.Random()
        self.acquire = acquire
        self.max_bytes = max_bytes  # a body past this is refused while it streams in
        self.rules = tuple(rules)  # source.rules: first match decides (sources/rules.py)
        self._token_lock = asyncio.Lock()

    async def send(self, request: RequestSpec) -> httpx.Response:
        """One API request with auth and retries; a 2xx response or SourceError."""
        refreshed = False
        while True:
            auth_headers, auth_params, token = await self._auth_for()
            url, params = merge_query(request.url, {**request.params, **auth_params})
            response = await self._tries(
                self.method,
                url,
                rate_limited=True,
                params=params,
                headers={**request.headers, **auth_headers},
                json=request.json if self.method == "POST" else None,
            )
            rule = self._rule(response)
            if rule is not None:  # retry rules were spent by _tries: skip, stop or fail
                if rule.action is jobs.RuleAction.FAIL:
                    raise self._failure(response, None, RuleFailed, "a fail rule matched")
                return response  # skip or stop: the source ends this chain's pages
            if response.status_code == 401 and token is not None:
                self._drop_token(token)  # expired or revoked early: a fresh token, once
                if not refreshed:
                    refreshed = True
                    continue
                raise self._refused_again(response)
            return self._check(response, tries=None)

    async def _tries(
        self, method: str, url: str, *, rate_limited: bool, **kwargs: Any
    ) -> httpx.Response:
        """Up to max_tries tries; the last response (2xx, not retryable, or out of tries)."""
        for number in range(1, self.policy.max_tries + 1):
            if rate_limited and self.acquire is not None:
                await self.acquire()
            last = self.policy.gives_up_after(number)
            try:
                response = await self._try_once(method, url, number, last, **kwargs)
            except _Retry:
                await self.sleep(self.policy.wait(number, self.rng))
                continue
            rule = self._rule(response) if rate_limited else None  # not token requests
            if rule is not None and rule.action is not jobs.RuleAction.RETRY:
                return response  # skip, stop or fail: send() decides
            if rule is None and not is_retryable_status(response.status_code):
                return response  # a success, or an error no later try can fix
            if last:  # out of tries (a retry rule may have matched a 2xx)
                raise self._failure(response, number)
            after = retry_after_seconds(response.headers.get("retry-after"), self.now())
            if after is not None and self.policy.refuses(after):
                raise self._wait_refused(response, after)
            await self.sleep(self.policy.wait(number, self.rng, after))
        raise AssertionError("unreachable: the last try returns or raises")

    async def _try_once(
        self, method: str, url: str, number: int, last: bool, **kwargs: Any
    ) -> httpx.Response:
        """Send once; every httpx failure becomes a SourceError (or a _Retry) here, only here."""
        shown = self.redact.url(url)
        try:
            request = self.client.build_request(method, url, **kwargs)
            shown = self.redact.url(str(request.url))
            if self.max_bytes is None:
                return await self.client.send(request)
            response = await self.client.send(request, stream=True)
            try:
                await _read_at_most(response, self.max_bytes, f"{method} {shown}")
            finally:
                await response.aclose()
            return response
        except _TRANSIENT as exc:
            if not last:
                raise _Retry() from exc
            tries = _tries_text(number)
            if isinstance(exc, httpx.TimeoutException):
                seconds = self.client.timeout.read or 0
                message = f"{method} {shown} timed out after {seconds:g}s, {tries}"
            else:
                detail = self.redact.text(f"{type(exc).__name__}: {exc}")
                message = f"{method} {shown} failed {tries}: {detail}"
            raise SourceError(message, url=shown) from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            detail = self.redact.text(f"{type(exc).__name__}: {exc}")
            raise SourceError(f"{method} {shown} failed: {detail}", url=shown) from exc

    def _check(self, response: httpx.Response, *, tries: int | None) -> httpx.Response:
        if response.is_success:
            return response
        raise self._failure(response, tries)

    def _failure(
        self,
        response: httpx.Response,
        tries: int | None,
        kind: type[SourceError] = SourceError,
        why: str = "",
    ) -> SourceError:
        method, url = response.request.method, self.redact.url(str(response.request.url))
        status = response.status_code
        tried = f" {_tries_text(tries)}" if tries is not None and tries > 1 else ""
        reason = f" ({why})" if why else ""
        return kind(
            f"{method} {url} returned HTTP {status}{tried}{reason}: {self.redact.excerpt(response)}",
            url=url,
            status=status,
        )

    def _rule(self, response: httpx.Response) -> jobs.Rule | None:
        if not self.rules:
            return None
        return matching(self.rules, response.status_code, response.headers, response.content)

    def _wait_refused(self, response: httpx.Response, after: float) -> SourceError:
        """The server asked for a longer wait than TG_MAX_RETRY_AFTER: fail, do not sleep."""
        method, url = response.request.method, self.redact.url(str(response.request.url))
        status, bound = response.status_code, self.policy.max_retry_after
        excerpt = self.redact.excerpt(response)
        return SourceError(
            f"{method} {url} returned HTTP {status} asking to wait {after:g}s (Retry-After),"
            f" more than TG_MAX_RETRY_AFTER ({bound:g}s), so it is not retried"
            + (f": {excerpt}" if excerpt else ""),
            url=url,
            status=status,
        )

    async def _auth_for(self) -> tuple[dict[str, str], dict[str, str], str | None]:
        """(headers, query params, the oauth2 token used or None) for one request."""
        auth = self.auth
        if isinstance(auth, jobs.BearerAuth):
            return {"Authorization": f"Bearer {auth.token}"}, {}, None
        if isinstance(auth, jobs.BasicAuth):
            return {"Authorization": basic(auth.username, auth.password)}, {}, None
        if isinstance(auth, jobs.ApiKeyAuth):
            pair = {auth.name: auth.value}
            return (pair, {}, None) if auth.in_ == "header" else ({}, pair, None)
        if isinstance(auth, jobs.OAuth2ClientCredentials | jobs.OAuth2RefreshToken):
            token = await self._oauth_token(auth)
            return {"Authorization": f"Bearer {token}"}, {}, token
        if isinstance(auth, jobs.LoginAuth):
            token = await self._oauth_token(auth)
            return {auth.header: auth.prefix + token}, {}, token
        return {}, {}, None

    def _refused_again(self, response: httpx.Response) -> SourceError:
        """A second 401, with a token fetched after the first: fail, naming where it came from."""
        auth = self.auth
        where = auth.url if isinstance(auth, jobs.LoginAuth) else getattr(auth, "token_url", "")
        try:
            self._check(response, tries=None)
        except SourceError as exc:
            shown = self.redact.url(where)
            message = f"{exc}; a fresh token from {shown} was refused too"
            return SourceError(self.redact.text(message), url=exc.url, status=exc.status)
        raise AssertionError("unreachable: a 401 is not a success")

    def _drop_token(self, used: str) -> None:
        # requests in flight together may all see 401: only the first drops the token
        current = self.tokens.token
        if current is not None and current.value == used:
            self.tokens.token = None

    async def _oauth_token(self, auth: TokenAuth) -> str:
        """The cached access token, or a new one (oauth2 grant or login) when it is due."""
        async with self._token_lock:  # one token request at a time, shared by all in flight
            now = self.tokens.clock()
            cached = self.tokens.token
            if cached is not None and now < cached.renew_at:
                return cached.value
            if isinstance(auth, jobs.LoginAuth):
                token, lifetime = await self._login(auth)
            else:
                token, lifetime = await self._grant(auth)
            # renew shortly before expiry so a token never lapses between check and use
            self.tokens.token = Token(token, now + lifetime - min(60.0, lifetime * 0.1))
            self.redact.add(token)
            return token

    async def _grant(
        self, auth: jobs.OAuth2ClientCredentials | jobs.OAuth2RefreshToken
    ) -> tuple[str, float]:
        """(token, lifetime) from a client-credentials (RFC 6749 §4.4) or refresh-token (§6)
        grant; the client authenticated by HTTP Basic or in the form (client_auth)."""
        form: dict[str, str] = {}
        if isinstance(auth, jobs.OAuth2ClientCredentials):
            form.update(auth.extra or {})
            form["grant_type"] = "client_credentials"
            if auth.audience:
                form["audience"] = auth.audience
        else:
            form["grant_type"] = "refresh_token"
            form["refresh_token"] = self._refresh_token(auth)
        if auth.scope:
            form["scope"] = auth.scope
        headers: dict[str, str] = {}
        if auth.client_auth == "post":
            form["client_id"] = auth.client_id
            if auth.client_secret is not None:
                form["client_secret"] = auth.client_secret
        else:
            headers["Authorization"] = basic(auth.client_id, auth.client_secret or "")
        response = await self._tries(
            "POST", auth.token_url, rate_limited=False, data=form, headers=headers
        )
        self._check(response, tries=None)
        try:
            answer = orjson.loads(response.content)
            token, lifetime = str(answer["access_token"]), _lifetime(answer.get("expires_in"))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
            shown = self.redact.url(auth.token_url)
            raise SourceError(
                f"POST {shown}: the token response has no access_token", url=shown
            ) from None
        rotated = answer.get("refresh_token")
        if isinstance(auth, jobs.OAuth2RefreshToken) and isinstance(rotated, str) and rotated:
            self.tokens.refresh_token = rotated  # the server rotated it: the next renewal's
            self.redact.add(rotated)
            if self.tokens.on_rotate is not None:  # kept for the next run before it is used
                await self.tokens.on_rotate(rotated, refresh_origin(auth.refresh_token))
        return token, lifetime

    def _refresh_token(self, auth: jobs.OAuth2RefreshToken) -> str:
        """The refresh token to send: the one this run rotated to, else the one an earlier
        run stored if it descends from the job's own, else the job's own."""
        if self.tokens.refresh_token:
            return self.tokens.refresh_token
        stored = self.tokens.stored_refresh
        if stored is not None and stored[1] == refresh_origin(auth.refresh_token):
            self.redact.add(stored[0])
            return stored[0]
        return auth.refresh_token

    async def _login(self, auth: jobs.LoginAuth) -> tuple[str, float]:
        """(token, lifetime) from the login request: JSON body or form, token at token_path."""
        kwargs: dict[str, Any] = {}
        if auth.form is not None:
            kwargs["data"] = auth.form
        elif auth.body is not None:
            kwargs["json"] = auth.body
        response = await self._tries(auth.method, auth.url, rate_limited=False, **kwargs)
        self._check(response, tries=None)
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = None
        value = extract_value(answer, auth.token_path)
        if not isinstance(value, str | int | float) or isinstance(value, bool) or value == "":
            shown = self.redact.url(auth.url)
            raise SourceError(
                f"{auth.method} {shown}: the login response has no token at {auth.token_path}",
                url=shown,
            )
        if auth.expires_in is not None:
            return str(value), auth.expires_in.total_seconds()
        given = answer.get("expires_in") if isinstance(answer, dict) else None
        try:
            return str(value), _lifetime(given)
        except (TypeError, ValueError):
            return str(value), math.inf  # an odd expires_in: the token lasts until a 401


async def _read_at_most(response: httpx.Response, limit: int, what: str) -> None:
    """Read the body, refusing it once it passes `limit` bytes (announced or streamed): a huge
    page fails the run with a clear error instead of exhausting the engine's memory."""
    too_big = (
        f"{what}: the response is larger than source.max_page_bytes ({limit:,} bytes);"
        " ask for smaller pages or raise the limit"
    )
    announced = response.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit:
        raise SourceError(too_big, status=response.status_code)
    parts, size = [], 0
    async for part in response.aiter_bytes():
        size += len(part)
        if size > limit:
            raise SourceError(too_big, status=response.status_code)
        parts.append(part)
    response._content = b"".join(parts)  # as Response.aread() leaves it


class _Retry(Exception):
    """A transient failure that has tries left (never leaves this module)."""


def _lifetime(expires_in: Any) -> float:
    """Seconds a token lasts: its `expires_in`, or forever (until a 401) without one."""
    return math.inf if expires_in is None else float(expires_in)


def _tries_text(tries: int) -> str:
    return f"after {tries} {'try' if tries == 1 else 'tries'}"


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
