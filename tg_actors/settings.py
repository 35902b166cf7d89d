"""Settings: defaults, overridden by TG_* environment variables, overridden by CLI flags."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tg_actors.durations import parse_duration
from tg_actors.names import MAX_ENGINES
from tg_actors.redaction import DEFAULT_SECRET_ENV
from tg_actors.retry import DEFAULT_MAX_RETRY_AFTER

NAMESPACE = "turbo_giggle"
# an API token shorter than this is refused (TG_API_TOKEN) or replaced (the token file)
MIN_TOKEN_CHARS = 16


# a DuckDB size setting (memory_limit, checkpoint_threshold), checked here so that a bad
# value is named by its variable instead of failing the Database's start
_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB|%)|-1", re.IGNORECASE)


class Settings(BaseSettings):
    """Every TG_* setting. Sources, first wins: arguments (CLI flags), the environment, a
    `.env` file in the working directory (TG_NAME=value lines), the defaults."""

    # `.env`: read from the working directory when there is one; its lines other than TG_*
    # ones are ignored (extra="ignore"). hide_input_in_errors: a refused setting's error
    # never quotes the value (a short TG_API_TOKEN is still a secret)
    model_config = SettingsConfigDict(
        env_prefix="TG_",
        extra="ignore",
        env_file=".env",
        env_file_encoding="utf-8",
        hide_input_in_errors=True,
    )

    configs: Path = Path("configs")
    db_path: Path = Path("data/turbo_giggle.duckdb")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # a SecretStr: repr, str, logs and validation errors show `**********`, never the token
    api_token: SecretStr | None = None
    engines: int = Field(2, ge=1, le=MAX_ENGINES)
    engine_num_cpus: float = Field(0.0, ge=0)
    # runs one engine works on at once; the Scheduler's capacity is engines * engine_slots
    engine_slots: int = Field(8, ge=1, le=1024)
    address: str | None = None
    namespace: str = NAMESPACE
    tick_seconds: float = Field(0.2, gt=0)
    queue_maxsize: int = Field(10_000, ge=1)
    stop_grace_seconds: float = Field(10.0, ge=0)
    # a running run whose engine sent no heartbeat (every 2 s) for this long is retried
    lease_seconds: float = Field(30.0, ge=3)
    max_body_bytes: int = Field(1 << 20, ge=1024)  # bigger request bodies get 413
    api_cache_seconds: float = Field(1.0, ge=0)  # GET /api/jobs and /api/runs share answers
    cors_origins: str = ""  # comma-separated origins allowed cross-site; none by default
    alert_webhook_url: str | None = None  # POSTed a JSON alert when a run fails for good
    # json: our alert bodies; slack: Slack incoming-webhook bodies ({"text", "blocks"})
    alert_format: Literal["json", "slack"] = "json"
    duckdb_memory_limit: str | None = "256MB"  # the Database actor's DuckDB buffer pool
    # WAL size at which DuckDB folds it into the file (None: DuckDB's 16MB). Larger trades
    # the Database's memory for speed: staged batches dropped before a checkpoint are never
    # written to the file (README: Tests and benchmarks)
    duckdb_checkpoint_threshold: str | None = None
    # which environment variables a job's `${NAME}` may name: comma-separated glob patterns
    # (a name starting TG_ matches only a pattern that itself starts with TG_)
    secret_env: str = DEFAULT_SECRET_ENV
    # a folder of one file per secret (Docker/Kubernetes secret mounts): `${NAME}` reads the
    # file NAME there when the environment has no NAME (redaction.secret_environ)
    secrets_dir: Path | None = None
    # text: one human line per record; json: one JSON object per line (Ray's LoggingConfig in
    # every actor and the Serve app, tg_actors.logs in the driver)
    log_format: Literal["text", "json"] = "text"
    # refuse sources (and redirects, token URLs) resolving to link-local, metadata or private
    # addresses; loopback only with block_loopback_targets
    block_private_targets: bool = False
    block_loopback_targets: bool = False
    # a 429/503 Retry-After is honoured up to this (a duration: 15m); longer fails the request
    max_retry_after: float = Field(DEFAULT_MAX_RETRY_AFTER, ge=0)
    # finished runs older than this (by finished_at) and their logs are deleted, never open
    # runs nor a job's newest run; 0 or none keeps them forever (durations: 90d, 12h)
    run_retention: float | None = 90 * 86400.0
    log_retention: float | None = 30 * 86400.0  # the log lines of such runs
    # the documented name of run_retention, in whole days (0 keeps forever): when set, it
    # wins over TG_RUN_RETENTION
    run_history_days: int | None = Field(None, ge=0)
    # POST /api/sql (store/reader.py): a query is interrupted after sql_timeout seconds of
    # DuckDB work (408), a JSON answer holds at most sql_max_rows rows (`truncated` beyond),
    # and at most sql_concurrency queries run at once (429 beyond)
    sql_timeout: float = Field(30.0, gt=0)
    sql_max_rows: int = Field(10_000, ge=1)
    sql_concurrency: int = Field(4, ge=1, le=64)

    @field_validator("duckdb_memory_limit", "duckdb_checkpoint_threshold")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and not _SIZE.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not a size such as 256MB, 1GB, 512MiB or 50%")
        return value.strip() if value is not None else None

    @field_validator("max_retry_after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return duration_seconds(value)

    @field_validator("sql_timeout", mode="before")
    @classmethod
    def _sql_timeout(cls, value: object) -> object:
        return duration_seconds(value)

    @field_validator("run_retention", "log_retention", mode="before")
    @classmethod
    def _retention(cls, value: object) -> object:
        return retention_seconds(value)

    @field_validator("api_token", mode="before")
    @classmethod
    def _long_enough(cls, value: object) -> object:
        # before pydantic wraps the text in a SecretStr: its length is checked here
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or not isinstance(text, str):
            return text
        text = text.strip()
        if not text:
            return None  # unset, or set empty: the token file is used
        if len(text) < MIN_TOKEN_CHARS:
            raise ValueError(token_too_short(len(text)))
        return SecretStr(text)

    @model_validator(mode="after")
    def _history_days(self) -> Settings:
        if self.run_history_days is not None:
            days = self.run_history_days
            self.run_retention = None if days == 0 else days * 86400.0
        return self

    @field_validator("db_path")
    @classmethod
    def _not_tg_stem(cls, value: Path) -> Path:
        # DuckDB names the catalog after the file: tg.duckdb would clash with schema `tg`
        if value.stem == "tg":
            raise ValueError(
                f"database file {str(value)!r} is named 'tg', which clashes with the schema "
                "'tg' inside it: choose another name (default data/turbo_giggle.duckdb)"
            )
        return value

    def engine_env(self) -> dict[str, str]:
        """The settings the SyncEngines read from their own environment (sources/http.py)."""
        return {
            "TG_SECRET_ENV": self.secret_env,
            # the engines read `${NAME}` files there (the same path on every node)
            **({"TG_SECRETS_DIR": str(self.secrets_dir)} if self.secrets_dir else {}),
            "TG_LOG_FORMAT": self.log_format,
            "TG_BLOCK_PRIVATE_TARGETS": str(self.block_private_targets).lower(),
            "TG_BLOCK_LOOPBACK_TARGETS": str(self.block_loopback_targets).lower(),
            # requester.py (engines) and the Database actor's housekeeping read these
            "TG_MAX_RETRY_AFTER": seconds_text(self.max_retry_after),
            "TG_RUN_RETENTION": seconds_text(self.run_retention),
            "TG_LOG_RETENTION": seconds_text(self.log_retention),
            # the Database actor's read path (store/reader.py SqlLimits) reads these
            "TG_SQL_TIMEOUT": seconds_text(self.sql_timeout),
            "TG_SQL_MAX_ROWS": str(self.sql_max_rows),
            "TG_SQL_CONCURRENCY": str(self.sql_concurrency),
        }

    def shareable(self) -> dict[str, Any]:
        """The settings as JSON values for another process (an actor, the Serve app) to
        rebuild them with Settings(**...): without the API token, which goes apart."""
        return self.model_dump(mode="json", exclude={"api_token"})

    @property
    def jobs_dir(self) -> Path:
        return self.configs / "jobs"

    @property
    def token_path(self) -> Path:
        return self.db_path.parent / "api_token"

    def known_token(self) -> str | None:
        """TG_API_TOKEN, else the token file beside the database, else None (also for a file
        whose token is empty or shorter than MIN_TOKEN_CHARS: `ensure_token` replaces it)."""
        if self.api_token is not None:
            return secret_text(self.api_token)
        try:
            token = self.token_path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return token if len(token) >= MIN_TOKEN_CHARS else None


def secret_text(value: SecretStr | str) -> str:
    """The text of a secret setting; also a plain str, as a Settings copied past validation
    (`model_copy(update={"api_token": ...})`) holds it."""
    return value if isinstance(value, str) else value.get_secret_value()


def token_too_short(length: int) -> str:
    return (
        f"TG_API_TOKEN must be at least {MIN_TOKEN_CHARS} characters long (it has {length}); "
        "unset it to use the token generated into api_token beside the database"
    )


_FOREVER = ("", "none", "never", "off", "forever")


def duration_seconds(value: object) -> object:
    """A duration setting (`15m`, `90d`, `900`) as seconds; others go to pydantic's check."""
    if isinstance(value, str):
        return parse_duration(value).total_seconds()
    return value


def retention_seconds(value: object) -> object:
    """A retention setting as seconds, or None: keep forever (`0`, `none`, `never`)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _FOREVER):
        return None
    seconds = duration_seconds(value)
    return None if seconds == 0 else seconds


def seconds_text(seconds: float | None) -> str:
    """A duration setting as text that reads back the same ("none": keep forever)."""
    if seconds is None:
        return "none"
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.6f}"


def max_retry_after() -> float:
    """TG_MAX_RETRY_AFTER in seconds, read where the requests are made (each engine)."""
    return _max_retry_after(os.environ.get("TG_MAX_RETRY_AFTER"))


@functools.lru_cache(maxsize=8)
def _max_retry_after(raw: str | None) -> float:
    if raw is None:
        return DEFAULT_MAX_RETRY_AFTER
    seconds = duration_seconds(raw)
    assert isinstance(seconds, float)
    if seconds < 0:
        raise ValueError(f"TG_MAX_RETRY_AFTER cannot be negative: {raw!r}")
    return seconds
