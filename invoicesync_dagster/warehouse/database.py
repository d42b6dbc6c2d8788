"""Short-lived DuckDB connections.

DuckDB lets one process write a file and then no other process open it, not even read-only
(DAGSTER-NOTES §1.5). So connections are opened around SQL only, closed in `finally`, and a
lock conflict becomes an error that says who holds the file and what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from invoicesync_dagster.warehouse.schema import apply_schema


class WarehouseLocked(Exception):
    """Another process (a Dagster run, a duckdb CLI session) holds the DuckDB file."""


@contextmanager
def connect(path: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse file; the schema is created or migrated on write opens."""
    if read_only and not path.exists():
        raise FileNotFoundError(
            f"No warehouse at {path}: materialize the Stripe assets first (make demo, or "
            "`invoicesync process`), or set INVOICESYNC_HOME to the folder that holds it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as error:
        if "lock" in str(error).lower():
            raise WarehouseLocked(
                f"{path} is in use by another process ({_holder(error)}). DuckDB allows one "
                "writer and then no readers: wait for the running Dagster run to finish, or "
                "close the duckdb CLI session that has it open."
            ) from None
        raise
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
