"""Short-lived DuckDB connections.

DuckDB lets one process write a file and then no other process open it, not even read-only
(DAGSTER-NOTES §1.5). So connections are opened around SQL only and closed in `finally`. A file
held by another process is waited for (its connections are short too: a reader between two of
a run's writes, or two runs a backfill from the asset graph started side by side), and only a
lock held longer than the wait becomes an error that says who holds the file and what to do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from invoicesync_dagster.warehouse.schema import apply_schema


class WarehouseLocked(Exception):
    """Another process (a Dagster run, a duckdb CLI session) holds the DuckDB file."""


# A run's writes wait for a reader or another run; a reader (the CLI) gives up sooner.
WRITER_WAIT_S = 600.0
READER_WAIT_S = 20.0


@contextmanager
def connect(
    path: Path, *, read_only: bool = False, wait_s: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse file; the schema is created or migrated on write opens.
    While another process holds the file, tries again for `wait_s` seconds."""
    if read_only and not path.exists():
        raise FileNotFoundError(
            f"No warehouse at {path}: materialize the Stripe assets first (make demo, or "
            "`invoicesync process`), or set INVOICESYNC_HOME to the folder that holds it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + (
        wait_s if wait_s is not None else READER_WAIT_S if read_only else WRITER_WAIT_S
    )
    pause = 0.05
    while True:
        try:
            connection = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            if time.monotonic() + pause > deadline:
                raise WarehouseLocked(
                    f"{path} is in use by another process ({_holder(error)}). DuckDB allows "
                    "one writer and then no readers: wait for the running Dagster run to "
                    "finish, or close the duckdb CLI session that has it open."
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
    try:
        if not read_only:
            apply_schema(connection)
        yield connection
    finally:
        connection.close()


def _holder(error: duckdb.IOException) -> str:
    text = str(error)
    marker = "Conflicting lock is held in "
    return text[text.index(marker) + len(marker) :].strip() if marker in text else "unknown"
