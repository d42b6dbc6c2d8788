"""Another process holding the DuckDB file: waited for, then a clear error."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from invoicesync_dagster.warehouse.database import WarehouseLocked, connect

HOLDER = (
    "import duckdb, sys\n"
    "connection = duckdb.connect(sys.argv[1])\n"
    "print('holding', flush=True)\n"
    "sys.stdin.readline()\n"
    "connection.close()\n"
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A second process with the warehouse open for writing until told to let go."""
    database = tmp_path / "invoicesync.duckdb"
    with connect(database) as connection:
        connection.execute("CREATE TABLE probe (n INTEGER)")
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "holding"
    yield database, process
    process.kill()
    process.wait()


def release(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()
    process.wait(timeout=30)


def test_a_writer_waits_for_the_other_process_to_let_go(
    holder: tuple[Path, subprocess.Popen[str]],
) -> None:
    database, process = holder
    written: list[int] = []

    def write() -> None:
        with connect(database, wait_s=120) as connection:
            connection.execute("INSERT INTO probe VALUES (1)")
            written.append(1)

    writer = threading.Thread(target=write)
    writer.start()
    assert written == []  # the other process still holds the file
    release(process)
    writer.join(timeout=120)
    assert written == [1]
    with connect(database, read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM probe").fetchone() == (1,)


def test_a_lock_held_past_the_wait_names_the_holder_and_the_fix(
    holder: tuple[Path, subprocess.Popen[str]],
) -> None:
    database, process = holder
    with pytest.raises(WarehouseLocked) as raised, connect(database, read_only=True, wait_s=0.3):
        pass
    message = str(raised.value)
    assert str(database) in message and f"PID {process.pid}" in message
    assert "wait for the running Dagster run to finish" in message
