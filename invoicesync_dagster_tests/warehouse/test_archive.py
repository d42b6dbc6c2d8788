"""The archive of provider answers: month folders, written once, never overwritten."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from invoicesync_dagster.warehouse.archive import ArchiveConflict, archive_path, store


def test_answers_go_to_their_month_and_are_written_once(tmp_path: Path) -> None:
    path = store(tmp_path, date(2026, 3, 9), "INV-2026-000007_5001.zip", b"PK signed")
    assert path == tmp_path / "archive" / "2026" / "03" / "INV-2026-000007_5001.zip"
    assert path.read_bytes() == b"PK signed"
    assert store(tmp_path, date(2026, 3, 9), "INV-2026-000007_5001.zip", b"PK signed") == path
    with pytest.raises(ArchiveConflict, match="different answer"):
        store(tmp_path, date(2026, 3, 9), "INV-2026-000007_5001.zip", b"PK other")
    assert path.read_bytes() == b"PK signed"
    assert [p.name for p in path.parent.iterdir()] == ["INV-2026-000007_5001.zip"]


@pytest.mark.parametrize("name", ["../x.zip", "a/b.zip", "", ".hidden", "x..zip/../y"])
def test_names_cannot_leave_the_archive(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="archive file name"):
        archive_path(tmp_path, date(2026, 1, 1), name)
