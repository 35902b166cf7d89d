"""HttpSourceClient: one job's `source` read page by page (httpx around core.pagination).

Secrets (`${NAME}`) are resolved here, when a run starts, and nowhere else. Every URL or body
excerpt that leaves this module (errors, `Page.url`) is sanitized and scrubbed of the resolved
secret values. httpx errors become `SourceError` in `_call`, the one place requests are sent.
"""

from __future__ import annotations

import base64
import math
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from tg_actors import jobs
from tg_actors.core.pagination import RequestSpec, ResponseView, make_paginator, merge_query
from tg_actors.core.records import select_records
from tg_actors.core.redaction import resolve_value, sanitize_url, scrub
from tg_actors.errors import SourceError

USER_AGENT = "turbo-giggle/0.1"
EXCERPT_CHARS = 300
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # the `${NAME}` syntax of redaction.py


@dataclass(frozen=True)
class Page:
    number: int  # 1-based
    records: list[dict[str, Any]]
    url: str  # as requested, sanitized: safe to log
    bytes: int  # size of the response body


_AuthSpec = (
    jobs.NoAuth | jobs.BearerAuth | jobs.BasicAuth | jobs.ApiKeyAuth | jobs.OAuth2ClientCredentials
)


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # on the client's clock


class HttpSourceClient:
    """Reads an `HttpSource` spec. One `httpx.AsyncClient` per `pages()` run.

    Iterate with `contextlib.aclosing(client.pages())` when you may stop early, so the
    connection pool closes at once rather than when the generator is collected.
    """

    def __init__(
        self,
        spec: jobs.HttpSource,
        *,
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self._env = env
        self._transport = transport
        self._clock = clock
        self._secrets: tuple[str, ...] = ()
        self._auth: _AuthSpec = jobs.NoAuth()  # resolved at each run start
        self._token: _Token | None = None  # oauth2 access token, reused across runs until due

    async def pages(self) -> AsyncIterator[Page]:
        """Pages in order. Raises SourceError (PaginationLoop), MissingSecret."""
        spec = self._resolve()
        paginator = make_paginator(spec.paginate)
        request: RequestSpec | None = paginator.first(
            RequestSpec(spec.url, dict(spec.params), dict(spec.headers), spec.body)
        )
        timeout = spec.timeout.total_seconds()
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        async with httpx.AsyncClient(
            transport=self._transport, timeout=timeout, headers=headers, follow_redirects=True
        ) as client:
            number = 0
            while request is not None:
                number += 1
                response = await self._send(client, request)
                url = self._safe(str(response.request.url))
                with self._about(spec.method, url):
                    body = self._parse(response, url)
                    records = select_records(body, spec.records)
                yield Page(number, records, url, len(response.content))
                if spec.max_pages is not None and number >= spec.max_pages:
                    return
                view = ResponseView(response.status_code, response.headers, body, str(response.url))
                with self._about(spec.method, url):
                    request = paginator.next(request, view, records)

    @contextmanager
    def _about(self, method: str, url: str) -> Iterator[None]:
        """Name the request in SourceErrors from the core, and scrub what the core wrote."""
        try:
            yield
        except SourceError as exc:
            message = self._scrub(f"{method} {url}: {exc}")
            raise type(exc)(message, url=url, status=exc.status) from None

    def _resolve(self) -> jobs.HttpSource:
        """The spec with secrets resolved (never stored beyond this run, never shown)."""
        raw = self.spec.model_dump(by_alias=True)
        spec = jobs.HttpSource.model_validate(resolve_value(raw, self._env))
        env = os.environ if self._env is None else self._env
        secrets = {env[name] for name in _REF.findall(orjson.dumps(raw, default=str).decode())}
        auth = spec.auth
        secrets |= {
            getattr(auth, field, None) or "" for field in ("token", "password", "client_secret")
        }
        if isinstance(auth, jobs.ApiKeyAuth):
            secrets.add(auth.value)
        if self._token is not None:  # an oauth2 token kept from an earlier run
            secrets.add(self._token.value)
        self._secrets = tuple(sorted(secrets - {""}, key=len, reverse=True))
        self._auth = auth
        return spec

    async def _send(self, client: httpx.AsyncClient, request: RequestSpec) -> httpx.Response:
        """One page request with auth; the place for retries, backoff and rate limits."""
        auth_headers, auth_params = await self._auth_for(client)
        url, params = merge_query(request.url, {**request.params, **auth_params})
        post = self.spec.method == "POST"
        response = await self._call(
            client,
            self.spec.method,
            url,
            params=params,
            headers={**request.headers, **auth_headers},
            json=request.json if post else None,
        )
        if response.status_code == 401:
            self._token = None  # the next run asks for a fresh one
        return self._check(response)

    async def _call(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        """Send; every httpx failure becomes a SourceError here, and only here."""
        shown = self._safe(url)
        try:
            request = client.build_request(method, url, **kwargs)
            shown = self._safe(str(request.url))
            return await client.send(request)
        except httpx.TimeoutException as exc:
            seconds = client.timeout.read or 0
            raise SourceError(f"{method} {shown} timed out after {seconds:g}s", url=shown) from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            detail = self._scrub(f"{type(exc).__name__}: {exc}")
            raise SourceError(f"{method} {shown} failed: {detail}", url=shown) from exc

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        method, url = response.request.method, self._safe(str(response.request.url))
        status = response.status_code
        raise SourceError(
            f"{method} {url} returned HTTP {status}: {self._excerpt(response)}",
            url=url,
            status=status,
        )

    def _parse(self, response: httpx.Response, url: str) -> Any:
        if not response.content.strip():
            return None  # 204 or an empty body: a page without records
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            kind = response.headers.get("content-type", "no content-type")
            raise SourceError(
                f"response is not JSON ({kind}): {self._excerpt(response)}", url=url
            ) from None

    async def _auth_for(self, client: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, query params) that authenticate one request."""
        auth = self._auth
        if isinstance(auth, jobs.BearerAuth):
            return {"Authorization": f"Bearer {auth.token}"}, {}
        if isinstance(auth, jobs.BasicAuth):
            return {"Authorization": _basic(auth.username, auth.password)}, {}
        if isinstance(auth, jobs.ApiKeyAuth):
            pair = {auth.name: auth.value}
            return (pair, {}) if auth.in_ == "header" else ({}, pair)
        if isinstance(auth, jobs.OAuth2ClientCredentials):
            return {"Authorization": f"Bearer {await self._oauth_token(client, auth)}"}, {}
        return {}, {}

    async def _oauth_token(
        self, client: httpx.AsyncClient, auth: jobs.OAuth2ClientCredentials
    ) -> str:
        """Client-credentials grant (RFC 6749 §4.4), client authenticated by HTTP Basic."""
        now = self._clock()
        if self._token is not None and now < self._token.renew_at:
            return self._token.value
        form = {"grant_type": "client_credentials"}
        if auth.scope:
            form["scope"] = auth.scope
        headers = {"Authorization": _basic(auth.client_id, auth.client_secret)}
        response = self._check(
            await self._call(client, "POST", auth.token_url, data=form, headers=headers)
        )
        try:
            answer = orjson.loads(response.content)
            token, expires_in = str(answer["access_token"]), answer.get("expires_in")
            lifetime = math.inf if expires_in is None else float(expires_in)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
            raise SourceError(
                f"POST {self._safe(auth.token_url)}: the token response has no access_token",
                url=self._safe(auth.token_url),
            ) from None
        # renew shortly before expiry so a token never lapses between check and use
        self._token = _Token(token, now + lifetime - min(60.0, lifetime * 0.1))
        self._secrets = tuple(sorted({*self._secrets, token}, key=len, reverse=True))
        return token

    def _safe(self, url: str) -> str:
        return sanitize_url(url, self._secrets)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _excerpt(self, response: httpx.Response) -> str:
        # scrub before cutting, so a secret split by the cut cannot leak half of itself
        text = " ".join(response.text[: EXCERPT_CHARS * 8].split())
        return self._scrub(text)[:EXCERPT_CHARS]


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
