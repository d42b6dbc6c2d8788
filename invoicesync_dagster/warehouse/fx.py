"""BNR exchange rates in DuckDB: table `fx_rates`, one row per (rate_date, currency).

The table is created by a migration in schema.py. `rate_date` is the date BNR dated the rate
with (`Cube/@date`, the banking day it was published on); `rate` is RON for `multiplier` units,
4 decimals as published; `source` is the URL of the file it was read from; `fetched_at` is when
the row's current value was first read (re-reading an unchanged rate does not touch the row).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import duckdb

from invoicesync_dagster.efactura.fx import PublishedRate

TABLE = "fx_rates"


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int
    changed: list[tuple[date, str, Decimal, Decimal]]  # (day, currency, old rate, new rate)
    unchanged: int


def upsert_rates(
    connection: duckdb.DuckDBPyConnection,
    rates: Mapping[date, Mapping[str, PublishedRate]],
    sources: Mapping[date, str],
    *,
    fetched_at: datetime | None = None,
) -> UpsertCounts:
    """Insert new rates, replace those whose value or multiplier changed, leave the rest as
    they are; `sources` gives the URL each day's rates came from."""
    at = fetched_at or datetime.now(UTC)
    days = sorted(rates)
    if not days:
        return UpsertCounts(0, [], 0)
    existing = {
        (day, currency): PublishedRate(rate, multiplier)
        for day, currency, rate, multiplier in connection.execute(
            "SELECT rate_date, currency, rate, multiplier FROM fx_rates "
            "WHERE rate_date BETWEEN ? AND ?",
            [days[0], days[-1]],
        ).fetchall()
    }
    rows = []
    changed = []
    unchanged = 0
    for day in days:
        for currency, published in sorted(rates[day].items()):
            old = existing.get((day, currency))
            if old == published:
                unchanged += 1
                continue
            if old is not None:
                changed.append((day, currency, old.rate, published.rate))
            rows.append([day, currency, published.rate, published.multiplier, sources[day], at])
    if rows:
        # One statement over column lists: executemany costs ~6 ms a row in DuckDB.
        columns = [list(column) for column in zip(*rows, strict=True)]
        connection.execute(
            "INSERT OR REPLACE INTO fx_rates "
            "(rate_date, currency, rate, multiplier, source, fetched_at) "
            "SELECT unnest(?::DATE[]), unnest(?::VARCHAR[]), unnest(?::DECIMAL(18, 4)[]), "
            "unnest(?::INTEGER[]), unnest(?::VARCHAR[]), unnest(?::TIMESTAMPTZ[])",
            columns,
        )
    return UpsertCounts(len(rows) - len(changed), changed, unchanged)


def rates_between(
    connection: duckdb.DuckDBPyConnection, start: date, end: date
) -> dict[date, dict[str, PublishedRate]]:
    """The stored rates dated start..end (inclusive), by date then currency, ready for
    `efactura.fx.rate_for`. Works on read-only connections; no table yet → empty."""
    if not _table_exists(connection):
        return {}
    rows = connection.execute(
        "SELECT rate_date, currency, rate, multiplier FROM fx_rates "
        "WHERE rate_date BETWEEN ? AND ? ORDER BY rate_date, currency",
        [start, end],
    ).fetchall()
    rates: dict[date, dict[str, PublishedRate]] = {}
    for day, currency, rate, multiplier in rows:
        rates.setdefault(day, {})[currency] = PublishedRate(rate, multiplier)
    return rates


def _table_exists(connection: duckdb.DuckDBPyConnection) -> bool:
    (count,) = connection.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? "
        "AND schema_name = current_schema()",
        [TABLE],
    ).fetchone()  # type: ignore[misc]
    return bool(count)
