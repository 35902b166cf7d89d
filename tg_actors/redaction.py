"""Secrets: `${NAME}` references are resolved only for a run and shown as `***` everywhere else."""

from __future__ import annotations

import os
import re
from collections import ChainMap
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tg_actors.errors import ConfigError, MissingSecret

MASK = "***"
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# the environment variables a job's `${NAME}` may name (TG_SECRET_ENV): names that say they
# are credentials. Not PATH, HOME, DATABASE_URL, RAY_* or anything else of the engine's host.
# It covers every `${NAME}` of the shipped examples (configs/), asserted by
# tests/unit/test_security_fixes.py::test_the_default_allow_list_keeps_the_shipped_examples_working
DEFAULT_SECRET_ENV = "*_TOKEN,*_KEY,*_SECRET,*_PASSWORD,*_USER,*_USERNAME,*_CLIENT_ID"
SECRET_ENV_VARIABLE = "TG_SECRET_ENV"
# the engine's own settings: reachable only through a pattern that itself starts with it
_OWN_PREFIX = "TG_"
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


class SecretNotAllowed(ConfigError):
    """A `${NAME}` outside the allow-list of environment variables a job may name."""

    def __init__(self, field: str, name: str, patterns: str) -> None:
        self.field, self.name, self.patterns = field, name, patterns
        allowed = patterns or "nothing"
        super().__init__(
            f"{field}: ${{{name}}} names an environment variable jobs may not read: "
            f"{SECRET_ENV_VARIABLE} allows {allowed} (set {SECRET_ENV_VARIABLE} on the "
            "engines to widen it)"
        )


@dataclass(frozen=True)
class SecretNames:
    """Which environment variables a `${NAME}` may name: glob patterns (case-sensitive, as
    environment names are). A name starting TG_ (the engine's own settings, TG_API_TOKEN
    among them) matches only a pattern that itself starts with TG_."""

    patterns: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> SecretNames:
        return cls(tuple(p.strip() for p in text.split(",") if p.strip()))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SecretNames:
        """The engine's allow-list: TG_SECRET_ENV, else DEFAULT_SECRET_ENV."""
        source = os.environ if environ is None else environ
        return cls.parse(source.get(SECRET_ENV_VARIABLE, DEFAULT_SECRET_ENV))

    @classmethod
    def any(cls) -> SecretNames:
        return cls(("*",))

    def allows(self, name: str) -> bool:
        own = name.startswith(_OWN_PREFIX)
        return any(
            fnmatchcase(name, pattern)
            for pattern in self.patterns
            if not own or pattern.startswith(_OWN_PREFIX)
        )

    def check(self, value: Any, where: str = "") -> None:
        """Raise SecretNotAllowed for the first `${NAME}` in `value` outside the list."""
        for path, name in secret_refs(value, where):
            if not self.allows(name):
                raise SecretNotAllowed(path or "value", name, ",".join(self.patterns))


def secret_refs(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, NAME) of every `${NAME}` in `value`, paths dotted as `source.auth.token`."""
    if isinstance(value, str):
        for match in _REF.finditer(value):
            yield path, match.group(1)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from secret_refs(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from secret_refs(item, f"{path}.{i}" if path else str(i))


SECRETS_DIR_VARIABLE = "TG_SECRETS_DIR"
# a secret file's name is a `${NAME}`; anything else in the folder (Kubernetes' `..data`
# links, dotfiles) is never read
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SecretFiles(Mapping[str, str]):
    """The secrets of a folder, one file per secret (Docker `/run/secrets`, a Kubernetes
    secret volume): the file NAME holds the value of `${NAME}`, one trailing newline (`\n`
    or `\r\n`) stripped. Read when looked up, so a rotated secret is seen by the next run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, name: str) -> Path | None:
        if not _NAME.fullmatch(name):
            return None
        path = self.folder / name
        return path if path.is_file() else None

    def __getitem__(self, name: str) -> str:
        path = self._path(name)
        if path is None:
            raise KeyError(name)
        text = path.read_text(encoding="utf-8")
        if text.endswith("\r\n"):
            return text[:-2]
        return text[:-1] if text.endswith("\n") else text

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._path(name) is not None

    def __iter__(self) -> Iterator[str]:
        if not self.folder.is_dir():
            return iter(())
        return iter(sorted(p.name for p in self.folder.iterdir() if p.name in self))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def secret_environ(environ: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """Where a run's `${NAME}` values come from: the environment (default os.environ), then
    the files of TG_SECRETS_DIR when it names a folder. The environment wins: a variable set
    for one process overrides the mounted file. The allow-list (TG_SECRET_ENV) applies to
    both alike."""
    source = os.environ if environ is None else environ
    folder = source.get(SECRETS_DIR_VARIABLE, "").strip()
    if not folder:
        return source
    return ChainMap(dict(source), SecretFiles(Path(folder)))  # type: ignore[arg-type]


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


def sanitize_headers(
    headers: Iterable[tuple[str, str]], secrets: tuple[str, ...] = ()
) -> dict[str, str]:
    """HTTP headers fit to show: the value of any header whose name says it carries a
    credential (Authorization, X-Api-Key, Cookie, ...) masked, known secret values removed."""
    return {
        name.lower(): MASK
        if _SENSITIVE_PARAMS.search(name) or "cookie" in name.lower()
        else scrub(value, secrets)
        for name, value in headers
    }


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every occurrence of a known secret value in free text (errors, bodies)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text


_URL = re.compile(r"https?://[^\s'\"<>]+")


def mask_text(text: str) -> str:
    """Free text (an error) fit for the audit log: `${NAME}` references as `***`, and each URL
    in it with its user-info and sensitive query values masked."""
    return _URL.sub(lambda m: sanitize_url(m.group(0)), _REF.sub(MASK, text))
