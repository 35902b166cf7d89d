"""The error tree. Messages are built from data; foreign errors are translated at one boundary.

TGError
├── ConfigError                 a job file or setting is wrong
│   ├── JobValidationError      pydantic errors, as (loc, msg) pairs
│   ├── MissingSecret           `${NAME}` with no such environment variable
│   ├── IdempotencyKeyReused    a command id sent again with another request
│   └── BackfillRefused         the job cannot bound a backfill (or it would replace the table)
├── NotFound
│   ├── JobNotFound
│   ├── RunNotFound
│   └── TableNotFound
├── Conflict                    the request contradicts what DuckDB holds now
│   ├── IllegalTransition       a run state change not in the table
│   └── StaleAttempt            a superseded attempt (the fence) tried to write
├── SourceError                 the HTTP source failed (URL sanitized)
│   ├── PaginationLoop          a paginator would repeat itself
│   └── RuleFailed              a `fail` response rule matched (never retried)
├── ForEachError                a run's source.for_each rows could not be read
├── TransformError              transform.sql failed
├── DestinationError            the DuckDB write failed (schema, primary key)
│   ├── ChecksFailed            a `fail` check did not pass: nothing committed (never retried)
│   └── SchemaFrozen            schema_contract freeze, and the rows bring new or changed columns
├── QueryError                  a query over the live database (POST /api/sql) was not answered
│   ├── QueryRefused            not one read-only statement over what it may read
│   ├── QueryFailed             DuckDB failed the read (unknown column, a bad parameter)
│   └── QueryTimeout            it ran past TG_SQL_TIMEOUT and was interrupted
└── Unavailable                 the system cannot take this now; trying later may work
    ├── NoCapacity              the cluster cannot place the engines asked for
    ├── PeerUnavailable         an actor is down or restarting (Ray's RayActorError)
    ├── TooManyQueries          TG_SQL_CONCURRENCY queries are running already
    └── BrokerError
        ├── BrokerFull          a bounded queue stayed full past the publish timeout
        └── CommandUnanswered   a command's answer did not come (broker down, owner silent)

HTTP answers follow the branch (serve/errors.py): NotFound 404, ConfigError 422, Conflict 409,
QueryError 422 but QueryTimeout 408, Unavailable 503 but TooManyQueries 429, anything else 500. tests/unit/test_errors.py checks this drawing against the
classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _rebuild(cls: type[TGError], args: tuple[Any, ...], state: dict[str, Any]) -> TGError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class TGError(Exception):
    """Base of every error turbo-giggle raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # our __init__s take data, not the message: pickle (Ray) must not call them again
        return (_rebuild, (type(self), self.args, self.__dict__))


class ConfigError(TGError):
    pass


class JobValidationError(ConfigError):
    """(field.path, message) pairs; from a YAML text, `positions` holds the (line, column) of
    each path's field (config/positions.py), and the message reads `FILE:LINE:COL: path: msg`."""

    def __init__(
        self,
        source: str,
        errors: Sequence[tuple[str, str]],
        positions: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        self.source = source
        self.errors = list(errors)
        self.positions = dict(positions or {})
        lines = []
        for loc, msg in self.errors:
            where = source
            if loc in self.positions:
                line, column = self.positions[loc]
                where = f"{source}:{line}:{column}"
            lines.append(f"{where}: {loc}: {msg}" if loc else f"{where}: {msg}")
        super().__init__("\n".join(lines))


class MissingSecret(ConfigError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"environment variable {name!r} is not set (referenced as ${{{name}}})")


class NotFound(TGError):
    pass


class JobNotFound(NotFound):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"No job named {name!r}")


class RunNotFound(NotFound):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"No run with id {run_id!r}")


class TableNotFound(NotFound):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"No table named {name!r}")


class Conflict(TGError):
    pass


class IllegalTransition(Conflict):
    def __init__(self, run_id: str, current: str, target: str) -> None:
        self.run_id, self.current, self.target = run_id, current, target
        super().__init__(f"run {run_id}: cannot go from {current!r} to {target!r}")


class StaleAttempt(Conflict):
    """The attempt number is the fencing token: an engine presumed dead (lease expired) that
    is in fact still running must not write next to the attempt that replaced it."""

    def __init__(self, run_id: str, attempt: int, current: int) -> None:
        self.run_id, self.attempt, self.current = run_id, attempt, current
        super().__init__(f"run {run_id}: attempt {attempt} was superseded by attempt {current}")


class SourceError(TGError):
    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        self.url, self.status = url, status
        super().__init__(message)


class PaginationLoop(SourceError):
    pass


class RuleFailed(SourceError):
    """A `fail` response rule matched: the run fails now and is not retried."""

    final = True


class BackfillRefused(ConfigError):
    """A backfill the job cannot do (no window and no until_param, a replace job, from >= to)."""


class ForEachError(TGError):
    """A run's source.for_each rows could not be had: its SQL failed or reads a table that
    does not exist yet (named, with the job that writes it)."""


class TransformError(TGError):
    pass


class DestinationError(TGError):
    pass


class ChecksFailed(DestinationError):
    """A `fail` check did not pass: the commit was rolled back. Not retried (the same rows
    would fail again); `results` holds every check of the attempt as {name, passed, value,
    on_fail} (store/checks.py)."""

    final = True

    def __init__(self, table: str, results: list[dict[str, object]]) -> None:
        self.table, self.results = table, results
        failed = [r for r in results if not r["passed"] and r["on_fail"] == "fail"]
        shown = "; ".join(f"{r['name']} (value: {r['value']})" for r in failed)
        super().__init__(f"table {table}: check failed, nothing committed: {shown}")

    def __reduce__(self) -> tuple[type[ChecksFailed], tuple[str, list[dict[str, object]]]]:
        return type(self), (self.table, self.results)  # it crosses Ray to the engine

    def failed_names(self) -> list[str]:
        """Every check that did not pass, `warn` ones included."""
        return [str(r["name"]) for r in self.results if not r["passed"]]


class SchemaFrozen(DestinationError):
    """schema_contract freeze, and the run's rows bring new or changed columns: never retried
    (the next try brings the same columns)."""

    final = True

    def __init__(self, table: str, new: list[str], changed: list[str]) -> None:
        self._args = (table, new, changed)
        parts = []
        if new:
            parts.append("new column(s) " + ", ".join(new))
        if changed:
            parts.append("changed column(s) " + ", ".join(changed))
        super().__init__(
            f"table {table}: schema_contract is freeze and the run's rows bring "
            + "; ".join(parts)
            + "; nothing committed"
        )

    def __reduce__(self) -> tuple[type[SchemaFrozen], tuple[str, list[str], list[str]]]:
        return type(self), self._args  # it crosses Ray to the engine


class QueryError(TGError):
    pass


class QueryRefused(QueryError):
    """The parser's wall (tg_actors/queries.py): `problem` says why the statement may not run."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"query refused: {problem}")


class QueryFailed(QueryError):
    """DuckDB's own error for a read it was allowed to run (its message, first lines)."""

    def __init__(self, message: str) -> None:
        self.problem = message
        super().__init__(f"query failed: {message}")


class QueryTimeout(QueryError):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"query interrupted after {seconds:g}s (TG_SQL_TIMEOUT)")


class Unavailable(TGError):
    pass


class NoCapacity(Unavailable):
    """Engines asked for that no node of the cluster can hold (CPUs, TG_ENGINE_NUM_CPUS)."""


class PeerUnavailable(Unavailable):
    """A call to another actor failed because that actor is down or restarting: the one
    translation of Ray's actor errors (tg_actors/peer.py), so no caller imports Ray for it."""

    def __init__(self, actor: str, reason: str) -> None:
        self.actor, self.reason = actor, reason
        super().__init__(f"{actor} is unavailable: {reason}")


class TooManyQueries(Unavailable):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"{limit} queries are running already (TG_SQL_CONCURRENCY): try again shortly"
        )


class BrokerError(Unavailable):
    pass


class BrokerFull(BrokerError):
    def __init__(self, topic: str, group: str, timeout: float) -> None:
        super().__init__(f"topic {topic!r} group {group!r} stayed full for {timeout:g}s")


class CommandUnanswered(BrokerError):
    """No answer to a command: the broker is down or restarted while it waited, or the
    command's owner did not answer in time. It may or may not have been applied: sent again
    with the same command id (the Idempotency-Key header) it is applied once."""

    def __init__(self, command_id: str, kind: str, reason: str) -> None:
        self.command_id, self.kind, self.reason = command_id, kind, reason
        super().__init__(
            f"command {command_id} ({kind}) got no answer: {reason}; it may have been "
            f"applied: send it again with the header Idempotency-Key: {command_id}"
        )


class IdempotencyKeyReused(ConfigError):
    """A command id (Idempotency-Key) that came before with a different request: refused,
    and the first request's answer kept."""

    def __init__(self, command_id: str, kind: str, job: str | None) -> None:
        self.command_id, self.kind, self.job = command_id, kind, job
        what = f"{kind} of job {job!r}" if job else kind
        super().__init__(
            f"Idempotency-Key {command_id!r} came before with a different request: this {what}"
            " is not applied; send it with a new key"
        )
