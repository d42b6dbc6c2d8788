"""The ledger of invoice numbers, table `invoice_number_allocations` (policy: efactura/numbering).

One row per number ever handed out, unique per (series, year, number) and per `source_key`. Rows
are never deleted: a number whose document can never be issued is voided (state `voided` and a
`void_reason`) and keeps its row, so every number from 1 to the maximum is explained and `gaps`
stays empty.

`allocate` runs in one short transaction on the connection it is given (do not call it inside an
open transaction): sources that already have a number get it back unchanged, the others get
max + 1, max + 2, ... in the order given. DuckDB has one writer process, but several connections of
that process may write at once under optimistic concurrency: two transactions that pick the same
number (or the same source) collide at insert or commit (ConstraintException or
TransactionException). Allocations of one process take turns on a lock, so they never collide
with each other; a collision with any other writer of the table makes the loser start over on a
fresh snapshot, a bounded number of times. Each thread needs its own connection
(`connection.cursor()` or another `connect()`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import duckdb

from invoicesync_dagster.efactura.numbering import (
    check_series,
    check_source_key,
    check_year,
    format_document_number,
)

MAX_ATTEMPTS = 20
# Serializes this process's allocations. Left to optimistic concurrency alone, two threads that
# allocate back to back starve each other: the one whose transaction started first keeps winning
# at commit and the other exhausts its retries. Reentrant so a test can race inside a commit.
_ALLOCATING = threading.RLock()

_COLUMNS = (
    "series, year, number, source_key, document_id, allocated_at, state, void_reason, voided_at"
)


class AllocationConflict(Exception):
    """Concurrent writers kept colliding with this allocation; it allocated nothing."""


@dataclass(frozen=True)
class Allocation:
    """One `invoice_number_allocations` row. `document_id` is the document's BT-1, e.g.
    `INV-2026-000123`."""

    series: str
    year: int
    number: int
    source_key: str
    document_id: str
    allocated_at: datetime
    state: Literal["allocated", "voided"]
    void_reason: str | None
    voided_at: datetime | None

    @property
    def voided(self) -> bool:
        """The number exists but its document must never be issued (see `void_reason`)."""
        return self.state == "voided"


def allocate(
    connection: duckdb.DuckDBPyConnection,
    series: str,
    year: int,
    source_keys: Sequence[str],
) -> dict[str, Allocation]:
    """Numbers of `series`/`year` for `source_keys` (only documents that passed the local checks),
    by source key. A source that already has a number keeps it, whatever series, year or state
    (voided included: check `Allocation.voided`); the others get the next consecutive numbers in
    the order given (a key listed twice counts once)."""
    check_series(series)
    check_year(year)
    wanted = list(dict.fromkeys(check_source_key(key) for key in source_keys))
    if not wanted:
        return {}
    with _ALLOCATING:
        for _attempt in range(MAX_ATTEMPTS):
            connection.execute("BEGIN TRANSACTION")  # fails clearly inside a caller's transaction
            try:
                allocations = _allocate_in_transaction(connection, series, year, wanted)
                connection.execute("COMMIT")
                return allocations
            except (duckdb.TransactionException, duckdb.ConstraintException):
                _rollback(connection)  # another writer took the number or the source first
            except BaseException:
                _rollback(connection)
                raise
    raise AllocationConflict(
        f"could not allocate {len(wanted)} {series}/{year} number(s) (first source "
        f"{wanted[0]}) after {MAX_ATTEMPTS} attempts: another writer (a second process or raw SQL) "
        "kept changing invoice_number_allocations at the same time; stop it and run again "
        "(allocations are stable, nothing is lost)"
    )


def void(connection: duckdb.DuckDBPyConnection, source_key: str, reason: str) -> Allocation:
    """Mark the number of `source_key` as never to be issued; the row stays. Voiding again keeps
    the first reason."""
    if not reason or not reason.strip():
        raise ValueError(f"voiding the number of {source_key} needs a reason (who, why)")
    connection.execute(
        "UPDATE invoice_number_allocations SET state = 'voided', void_reason = ?, voided_at = ? "
        "WHERE source_key = ? AND state = 'allocated'",
        [reason.strip(), datetime.now(UTC), source_key],
    )
    found = numbers_for(connection, [source_key])
    if source_key not in found:
        raise KeyError(f"{source_key} has no invoice number to void (it was never allocated)")
    return found[source_key]


def numbers_for(
    connection: duckdb.DuckDBPyConnection, source_keys: Iterable[str]
) -> dict[str, Allocation]:
    """Allocations of the given sources, by source key (sources without a number are absent).
    Works on read-only connections."""
    wanted = sorted(set(source_keys))
    if not wanted or not _table_exists(connection):
        return {}
    rows = connection.execute(
        f"SELECT {_COLUMNS} FROM invoice_number_allocations "
        "WHERE source_key IN (SELECT unnest(?::VARCHAR[]))",
        [wanted],
    ).fetchall()
    return {row[3]: Allocation(*row) for row in rows}


def gaps(connection: duckdb.DuckDBPyConnection, series: str, year: int) -> list[int]:
    """Numbers of `series`/`year` missing from 1..max (voided numbers are not missing). Should
    always be empty; anything else means rows were deleted by hand."""
    if not _table_exists(connection):
        return []
    rows = connection.execute(
        "WITH taken AS (SELECT number FROM invoice_number_allocations "
        "WHERE series = ? AND year = ?) "
        "SELECT n FROM (SELECT unnest(range(1, (SELECT coalesce(max(number), 0) + 1 FROM taken)))"
        " AS n) WHERE n NOT IN (SELECT number FROM taken) ORDER BY n",
        [series, year],
    ).fetchall()
    return [number for (number,) in rows]


def _allocate_in_transaction(
    connection: duckdb.DuckDBPyConnection, series: str, year: int, wanted: list[str]
) -> dict[str, Allocation]:
    allocations = numbers_for(connection, wanted)
    missing = [key for key in wanted if key not in allocations]
    if not missing:
        return {key: allocations[key] for key in wanted}
    (highest,) = connection.execute(
        "SELECT coalesce(max(number), 0) FROM invoice_number_allocations "
        "WHERE series = ? AND year = ?",
        [series, year],
    ).fetchone()  # type: ignore[misc]
    now = datetime.now(UTC)
    new = [
        Allocation(
            series=series,
            year=year,
            number=number,
            source_key=key,
            document_id=format_document_number(series, year, number),
            allocated_at=now,
            state="allocated",
            void_reason=None,
            voided_at=None,
        )
        for number, key in enumerate(missing, start=highest + 1)
    ]
    # One statement for the whole batch; the unnests zip the lists row by row.
    connection.execute(
        "INSERT INTO invoice_number_allocations "
        "(series, year, number, source_key, document_id, allocated_at, state) "
        "SELECT ?, ?, unnest(?::BIGINT[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), ?, "
        "'allocated'",
        [
            series,
            year,
            [allocation.number for allocation in new],
            [allocation.source_key for allocation in new],
            [allocation.document_id for allocation in new],
            now,
        ],
    )
    allocations.update((allocation.source_key, allocation) for allocation in new)
    return {key: allocations[key] for key in wanted}


def _rollback(connection: duckdb.DuckDBPyConnection) -> None:
    with suppress(duckdb.TransactionException):  # a failed COMMIT has already rolled back
        connection.execute("ROLLBACK")


def _table_exists(connection: duckdb.DuckDBPyConnection) -> bool:
    (count,) = connection.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'invoice_number_allocations'"
    ).fetchone()  # type: ignore[misc]
    return bool(count)
