"""`source.expect_total`: a full read must fetch exactly the records the server reports.

The first page tells the total (a JSONPath into its body, or a header such as
X-Total-Count); every page's records are counted; when pagination ends, a different count
fails the run ("fetched N of M records the server reported") before its last page is staged,
so nothing is committed. The count travels in the page checkpoints, so a resumed attempt
checks the whole read. Checked only on a full read: not with an incremental filter or a time
window (the server's total then counts what the filter left, or not), and not when
`max_pages` cut the read short on purpose. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tg_actors.errors import SourceError
from tg_actors.records import extract_value
from tg_actors.sources.requestspec import ResponseView


@dataclass
class ExpectedTotal:
    path: str | None = None  # JSONPath into the first page's body
    header: str | None = None  # or this response header of the first page
    expected: int | None = None
    seen: int = 0

    @property
    def active(self) -> bool:
        return self.path is not None or self.header is not None

    def page(self, number: int, view: ResponseView, records: int) -> None:
        """Count a page's records; the first page (number 1) gives the total."""
        if not self.active:
            return
        self.seen += records
        if number != 1:
            return
        raw: Any = (
            view.headers.get(self.header)
            if self.header is not None
            else extract_value(view.body, self.path or "$")
        )
        where = f"header {self.header}" if self.header is not None else f"path {self.path!r}"
        if raw is None or raw == "":
            raise SourceError(f"expect_total: the first page has no {where}", url=view.url)
        try:
            self.expected = int(str(raw).strip())
        except ValueError:
            raise SourceError(
                f"expect_total: {where} holds {raw!r}, not a number of records", url=view.url
            ) from None

    def check(self, url: str) -> None:
        """At the end of a full read: SourceError unless exactly `expected` were fetched."""
        if self.active and self.expected is not None and self.seen != self.expected:
            raise SourceError(
                f"fetched {self.seen} of {self.expected} records the server reported"
                " (expect_total): the read stopped early or the server miscounts; nothing is"
                " committed",
                url=url,
            )

    def snapshot(self) -> dict[str, Any]:
        return {"expected": self.expected, "seen": self.seen}

    def restore(self, saved: dict[str, Any] | None) -> None:
        if saved:
            self.expected = saved.get("expected")
            self.seen = int(saved.get("seen") or 0)
