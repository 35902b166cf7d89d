"""API token: TG_API_TOKEN, or one generated at first start into `api_token` beside the DB."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import HTTPException, Request

from tg_actors.settings import Settings


def ensure_token(settings: Settings) -> tuple[str, Path | None]:
    """(token, file it lives in or None when it came from the environment)."""
    known = settings.known_token()
    if known is not None:
        return known, None if settings.api_token else settings.token_path
    path = settings.token_path
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, path


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def bearer_dependency(expected: str):  # type: ignore[no-untyped-def]
    async def require_bearer(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not token_matches(value.strip(), expected):
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_bearer
