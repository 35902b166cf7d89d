"""Secrets: `${NAME}` references are resolved only for a run and shown as `***` everywhere else."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tg_actors.errors import MissingSecret

MASK = "***"
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# query parameters whose values are masked in any URL we log or show
_SENSITIVE_PARAMS = re.compile(r"(token|key|secret|password|passwd|auth|signature|sig|code)", re.I)


def has_secret_ref(value: str) -> bool:
    return bool(_REF.search(value))


def mask_value(value: Any) -> Any:
    """Deep copy of `value` with every string that references `${NAME}` replaced by `***`."""
    if isinstance(value, str):
        return MASK if has_secret_ref(value) else value
    if isinstance(value, Mapping):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    return value


def restore_masked(value: Any, stored: Any, path: str = "") -> tuple[Any, list[str]]:
    """`value` (a job sent back from the UI or API) with each `***` put back to the secret
    reference stored at the same place, so editing a job never needs its secrets. Returns
    (restored value, paths of `***` with no stored secret behind them: the caller refuses)."""
    if value == MASK:
        if isinstance(stored, str) and has_secret_ref(stored):
            return stored, []
        return value, [path]
    if isinstance(value, Mapping):
        out, unmatched = {}, []
        for key, item in value.items():
            inner = stored.get(key) if isinstance(stored, Mapping) else None
            out[key], missing = restore_masked(item, inner, f"{path}.{key}" if path else key)
            unmatched += missing
        return out, unmatched
    if isinstance(value, list | tuple):
        items, unmatched = [], []
        for i, item in enumerate(value):
            inner = stored[i] if isinstance(stored, list) and i < len(stored) else None
            restored, missing = restore_masked(item, inner, f"{path}.{i}" if path else str(i))
            items.append(restored)
            unmatched += missing
        return items, unmatched
    return value, []


def resolve_value(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """Deep copy of `value` with `${NAME}` replaced from `env` (default os.environ)."""
    source = os.environ if env is None else env
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in source:
                raise MissingSecret(name)
            return source[name]

        return _REF.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: resolve_value(v, source) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve_value(v, source) for v in value]
    return value


def sanitize_url(url: str, secrets: tuple[str, ...] = ()) -> str:
    """URL fit for logs: user-info and sensitive query values masked, known secret values removed."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = urlencode(
        [
            (k, MASK if _SENSITIVE_PARAMS.search(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    clean = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return scrub(clean, secrets)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every occurrence of a known secret value in free text (errors, bodies)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text
