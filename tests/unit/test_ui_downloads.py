"""The SQL tab's download folders (ui.sql.download_folder): one new folder per download, and
the downloads older than the keep time removed, so the Serve replica's disk does not fill."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ui.sql import DOWNLOAD_KEEP, download_folder


def test_each_download_gets_a_new_empty_folder(tmp_path: Path) -> None:
    first, second = download_folder(tmp_path), download_folder(tmp_path)
    assert first != second and first.parent == second.parent == tmp_path / "tg-sql"
    assert list(first.iterdir()) == [] and list(second.iterdir()) == []


def test_downloads_past_the_keep_time_are_removed(tmp_path: Path) -> None:
    old = download_folder(tmp_path)
    (old / "result.csv").write_text("id\n1\n")
    recent = download_folder(tmp_path)
    (recent / "result.parquet").write_bytes(b"PAR1")
    past = time.time() - DOWNLOAD_KEEP - 60
    os.utime(old, (past, past))
    new = download_folder(tmp_path)
    assert not old.exists()
    assert (recent / "result.parquet").read_bytes() == b"PAR1"
    assert sorted(p.name for p in (tmp_path / "tg-sql").iterdir()) == sorted(
        [recent.name, new.name]
    )


def test_a_download_is_kept_15_minutes() -> None:
    assert DOWNLOAD_KEEP == 15 * 60  # the README's promise
