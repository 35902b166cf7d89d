"""API token: TG_API_TOKEN, or one generated at first start into `api_token` beside the DB.

A token is never empty or short: TG_API_TOKEN under MIN_TOKEN_CHARS is refused (Settings
validates it; `ensure_token` checks again for a Settings copied past validation), and a token
file that is empty or short is replaced by a new token. The file is written whole or not at
all: a private temporary file (mode 0600) beside it, flushed, then linked (first start) or
renamed (replacing a short one) into place, so no reader ever sees a half-written token.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tg_actors.settings import MIN_TOKEN_CHARS, Settings, secret_text, token_too_short

log = logging.getLogger(__name__)


def ensure_token(settings: Settings) -> tuple[str, Path | None]:
    """(token, file it lives in or None when it came from the environment)."""
    if settings.api_token is not None:
        text = secret_text(settings.api_token).strip()
        if len(text) < MIN_TOKEN_CHARS:
            raise ValueError(token_too_short(len(text)))
        return text, None
    path = settings.token_path
    for _ in range(3):
        known = settings.known_token()
        if known is not None:
            return known, path
        _write_token(path, secrets.token_urlsafe(32), replace=path.exists())
    raise RuntimeError(f"could not write a usable API token to {path}")


def _write_token(path: Path, token: str, *, replace: bool) -> None:
    """Put `token` at `path` atomically, mode 0600. A first write never clobbers a file that
    another process created meanwhile (os.link refuses): its token wins, and is read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".api_token.", dir=path.parent)  # 0600, whatever umask
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temp, 0o600)
        if replace:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:
                pass
            except OSError:  # a filesystem without hard links: rename, unless one appeared
                if not path.exists():
                    os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def token_matches(given: str | None, expected: str) -> bool:
    """`given` is the token; never true for an empty or short expected token."""
    if given is None or len(expected) < MIN_TOKEN_CHARS:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


# the OpenAPI's security scheme: each route behind `bearer_dependency` lists it, so the docs'
# "Authorize" sends the token. auto_error=False: it only documents; require_bearer decides
# (and answers 401 with WWW-Authenticate, as before)
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="TG_API_TOKEN, or the token in `api_token` beside the database",
    auto_error=False,
)


def bearer_dependency(expected: str):  # type: ignore[no-untyped-def]
    async def require_bearer(
        request: Request,
        _documented: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not token_matches(value.strip(), expected):
            # what was refused and from where, never what was sent
            client = request.client.host if request.client else "?"
            sent = scheme.lower() == "bearer" and value.strip()
            why = "a wrong bearer token" if sent else "no bearer token"
            log.warning("refused %s %s from %s: %s", request.method, request.url.path, client, why)
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_bearer
