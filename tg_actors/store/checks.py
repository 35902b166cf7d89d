"""A run's `checks` (CONTRACT §7.3), evaluated inside its commit transaction.

`records` is the run's rows as they land (after transform and the schema contract), `target`
the table as it is after this run's write, both as CTEs over what the transaction sees: a
check reads exactly what a reader will see once the commit is visible. The shorthands become
SQL here; a `sql` check is the job's own query, checked read-only (over `records` and
`target` only) when the job was validated.

DuckDB aborts a transaction on any failed statement, binder errors included. So each query is
bound first (`con.sql`, lazy: a binder error there aborts nothing) and a check that does not
bind is a failed check whose value is the error. A query that binds but fails while it runs
(a bad CAST in a `sql` check) has already aborted the commit: `evaluate` raises CheckCrashed,
and writes.commit_run runs the commit again with that check recorded as failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import duckdb

from tg_actors.jobs import (
    AcceptedValuesCheck,
    AnyCheck,
    FreshnessCheck,
    NotNullCheck,
    OnFail,
    RowCountCheck,
    SqlCheck,
    UniqueCheck,
)
from tg_actors.store.schema import quote
from tg_actors.transform import first_line

_VALUE_CHARS = 500  # a value (or an error) kept per result


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of one run: passed or not, what it measured (as text) and its on_fail."""

    name: str
    passed: bool
    value: str | None
    on_fail: OnFail

    @property
    def blocking(self) -> bool:
        return not self.passed and self.on_fail is OnFail.FAIL

    @classmethod
    def of(cls, public: dict[str, Any]) -> CheckResult:
        """The result `to_public` gave."""
        return cls(
            str(public["name"]), bool(public["passed"]), public["value"], OnFail(public["on_fail"])
        )

    def to_public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "value": self.value,
            "on_fail": self.on_fail.value,
        }


class CheckCrashed(Exception):
    """The check `name` bound but failed while it ran, which aborted the transaction."""

    def __init__(self, name: str, error: str) -> None:
        super().__init__(f"check {name}: {error}")
        self.name, self.error = name, error


def evaluate(
    con: duckdb.DuckDBPyConnection,
    checks: Sequence[AnyCheck],
    records: str,
    target: str,
    now: datetime,
    crashed: dict[str, str] | None = None,
) -> list[CheckResult]:
    """Every check's result, in order. `records` and `target` are SELECTs; `crashed`: checks
    that failed while running in an earlier try of this commit (name -> error), recorded as
    failed without running them again."""
    crashed = crashed or {}
    with_ctes = f"WITH records AS ({records}), target AS ({target}) "
    results = []
    for index, check in enumerate(checks):
        name = check.label(index)
        if name in crashed:
            results.append(
                CheckResult(name, False, _clip(f"error: {crashed[name]}"), check.on_fail)
            )
            continue
        sql, params = query(check, now)
        try:
            relation = con.sql(with_ctes + sql, params=params)  # binds; runs nothing yet
        except duckdb.Error as exc:
            results.append(
                CheckResult(name, False, _clip(f"error: {first_line(exc)}"), check.on_fail)
            )
            continue
        try:
            rows = relation.fetchall()
        except duckdb.Error as exc:
            raise CheckCrashed(name, first_line(exc)) from exc
        passed, value = judge(check, rows, now)
        results.append(CheckResult(name, passed, _clip(value), check.on_fail))
    return results


def record(
    con: duckdb.DuckDBPyConnection, run_id: str, results: Sequence[CheckResult], now: datetime
) -> None:
    """Replace the run's rows of tg.run_checks with `results` (inside the caller's txn)."""
    con.execute("DELETE FROM tg.run_checks WHERE run_id = ?", [run_id])
    if results:
        con.executemany(
            "INSERT INTO tg.run_checks (run_id, name, passed, value, on_fail, checked_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [[run_id, r.name, r.passed, r.value, r.on_fail.value, now] for r in results],
        )


def query(check: AnyCheck, now: datetime) -> tuple[str, list[Any]]:
    """The check's SELECT (after the WITH of `records` and `target`) and its parameters."""
    if isinstance(check, SqlCheck):
        return f"SELECT * FROM ({check.sql}) AS _tg_check LIMIT 2", []  # 2: "more than 1"
    over = check.over.value
    if isinstance(check, RowCountCheck):
        return f"SELECT count(*) FROM {over}", []
    if isinstance(check, NotNullCheck):
        nulls = " OR ".join(f"{quote(c)} IS NULL" for c in check.columns)
        return f"SELECT count(*) FROM {over} WHERE {nulls}", []
    if isinstance(check, UniqueCheck):
        key = ", ".join(quote(c) for c in check.columns)
        return (
            f"SELECT count(*), sum(n) FROM (SELECT count(*) AS n FROM {over} GROUP BY {key}"
            " HAVING count(*) > 1)",
            [],
        )
    if isinstance(check, AcceptedValuesCheck):
        column = quote(check.column)
        allowed = [_text(v) for v in check.values]
        return (
            f"SELECT count(*), min(CAST({column} AS VARCHAR)) FROM {over} WHERE {column} IS NOT"
            f" NULL AND CAST({column} AS VARCHAR) NOT IN (SELECT unnest(?::VARCHAR[]))",
            [allowed],
        )
    if isinstance(check, FreshnessCheck):
        return f"SELECT max({quote(check.column)}) FROM {over}", []
    raise TypeError(f"not a check: {check!r}")  # pragma: no cover - the union is closed


def judge(check: AnyCheck, rows: list[tuple[Any, ...]], now: datetime) -> tuple[bool, str | None]:
    """(passed, value shown) from the check's result rows."""
    if isinstance(check, SqlCheck):
        if len(rows) != 1 or not rows[0]:
            return (
                False,
                f"the query returned {len(rows) if len(rows) < 2 else 'more than 1'} rows, not 1",
            )
        first = rows[0][0]
        if not isinstance(first, bool) and first is not None:
            return False, f"error: its first column is {first!r}, not a boolean"
        shown = rows[0][1] if len(rows[0]) > 1 else first
        return first is True, None if shown is None else str(shown)
    (row,) = rows
    if isinstance(check, RowCountCheck):
        count = int(row[0])
        low_ok = check.min is None or count >= check.min
        high_ok = check.max is None or count <= check.max
        return low_ok and high_ok, _rows(count)
    if isinstance(check, NotNullCheck):
        count = int(row[0])
        return count == 0, f"{_rows(count)} with a NULL"
    if isinstance(check, UniqueCheck):
        keys, total = int(row[0]), int(row[1] or 0)
        return keys == 0, f"{keys} duplicated keys ({_rows(total)})" if keys else "no duplicates"
    if isinstance(check, AcceptedValuesCheck):
        count = int(row[0])
        return count == 0, f"{_rows(count)} not accepted" + (f", e.g. {row[1]!r}" if count else "")
    if isinstance(check, FreshnessCheck):
        newest = _instant(row[0])
        if newest is None:
            return False, "no value" if row[0] is None else f"not a time: {row[0]!r}"
        age = now - newest
        return (
            age <= check.max_age,
            f"newest {newest.isoformat()} ({_age(age.total_seconds())} old)",
        )
    raise TypeError(f"not a check: {check!r}")  # pragma: no cover


def _instant(value: Any) -> datetime | None:
    """A timestamp, date or ISO text as an aware datetime (naive means UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _age(seconds: float) -> str:
    if seconds < 0:
        return "0s (in the future)"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _text(value: str | int | float | bool) -> str:
    """An accepted value as DuckDB's CAST(... AS VARCHAR) writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _clip(value: str | None) -> str | None:
    if value is None or len(value) <= _VALUE_CHARS:
        return value
    return value[: _VALUE_CHARS - 3] + "..."
