"""The DuckDB cache of ANAF registry answers: table `anaf_registry`, one row per CUI.

The table is created by migration 2 (schema.py). A row is the registry's latest answer about a
CUI, found or not: a not-found answer is cached too, so an unknown CUI does not cost a request on
every run. `queried_on` is the date the answer is valid for (the `data` sent to ANAF); an answer
is fresh while `queried_on` is at most `max_age_days` before the reference day. `raw` keeps the v9
record as ANAF sent it, so a cached answer parses back into the same `RegistryRecord`.

`lookup_cached` is the whole read-through: cache, then the registry for what is missing or stale,
then the cache again. It opens the warehouse around the SQL only, never while calling ANAF
(a DuckDB file admits one writer and then no readers, DAGSTER-NOTES §1.5).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from invoicesync_dagster.clients.anaf_registry import (
    AnafRegistryClient,
    RegistryAnswer,
    RegistryRecord,
    registry_cui,
)
from invoicesync_dagster.warehouse.database import connect

BUCHAREST = ZoneInfo("Europe/Bucharest")

_COLUMNS = (
    "cui, found, name, registration_number, vat_payer, vat_registered_on, efactura_registered, "
    "inactive, county_code, raw, queried_on, queried_at"
)


@dataclass(frozen=True)
class CachedAnswer:
    """One `anaf_registry` row."""

    cui: str
    found: bool
    name: str | None
    registration_number: str | None
    vat_payer: bool | None
    vat_registered_on: date | None
    efactura_registered: bool | None
    inactive: bool | None
    county_code: str | None
    raw: dict[str, Any] | None
    queried_on: date
    queried_at: datetime

    @property
    def record(self) -> RegistryRecord | None:
        return RegistryRecord.from_v9(self.raw) if self.found and self.raw else None


def bucharest_today() -> date:
    return datetime.now(BUCHAREST).date()


def cached(
    connection: duckdb.DuckDBPyConnection,
    cuis: Iterable[str],
    max_age_days: int,
    *,
    today: date | None = None,
) -> dict[str, CachedAnswer]:
    """Fresh cached answers by CUI (registry form: digits, no RO). `today` is the reference
    day (Bucharest's today by default); works on read-only connections."""
    if max_age_days < 0:
        raise ValueError(f"max_age_days must be >= 0, got {max_age_days}")
    wanted = sorted({registry_cui(cui) for cui in cuis})
    if not wanted or not _table_exists(connection):
        return {}
    oldest = (today or bucharest_today()) - timedelta(days=max_age_days)
    rows = connection.execute(
        f"SELECT {_COLUMNS} FROM anaf_registry "
        "WHERE cui IN (SELECT unnest(?::VARCHAR[])) AND queried_on >= ?",
        [wanted, oldest],
    ).fetchall()
    answers = {}
    for row in rows:
        values = list(row)
        values[9] = json.loads(values[9]) if values[9] is not None else None
        answers[row[0]] = CachedAnswer(*values)
    return answers


def store(
    connection: duckdb.DuckDBPyConnection,
    answer: RegistryAnswer,
    queried_on: date,
    *,
    queried_at: datetime | None = None,
) -> int:
    """Insert or replace the rows of every CUI in `answer`; returns how many were written.
    The table comes from the warehouse migrations (schema.py), applied by `connect()`."""
    at = queried_at or datetime.now(UTC)
    rows: list[list[Any]] = [
        [
            cui,
            True,
            record.name,
            record.registration_number,
            record.vat_payer,
            record.vat_registered_on,
            record.efactura_registered,
            record.inactive,
            record.county_code,
            json.dumps(record.raw, ensure_ascii=False),
            queried_on,
            at,
        ]
        for cui, record in answer.found.items()
    ]
    rows += [
        [cui, False, None, None, None, None, None, None, None, None, queried_on, at]
        for cui in sorted(answer.not_found - answer.found.keys())
    ]
    if rows:
        connection.executemany(
            f"INSERT OR REPLACE INTO anaf_registry ({_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)


def as_answer(answers: Iterable[CachedAnswer]) -> RegistryAnswer:
    result = RegistryAnswer()
    for row in answers:
        record = row.record
        if record is None:
            result.not_found.add(row.cui)
        else:
            result.found[row.cui] = record
    return result


def lookup_cached(
    database: Path,
    client: AnafRegistryClient,
    cuis: Iterable[str],
    on: date,
    max_age_days: int,
) -> RegistryAnswer:
    """The registry's answer for `cuis` on `on`: cached answers no older than `max_age_days`
    before `on`, the rest asked of ANAF (and cached)."""
    wanted = {registry_cui(cui) for cui in cuis}
    with connect(database) as connection:
        fresh = cached(connection, wanted, max_age_days, today=on)
    answer = as_answer(fresh.values())
    missing = sorted(wanted - fresh.keys())
    if missing:
        asked = client.lookup(missing, on)
        with connect(database) as connection:
            store(connection, asked, on)
        answer.found.update(asked.found)
        answer.not_found.update(asked.not_found)
    return answer


def _table_exists(connection: duckdb.DuckDBPyConnection) -> bool:
    (count,) = connection.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'anaf_registry' "
        "AND schema_name = current_schema()"
    ).fetchone()  # type: ignore[misc]
    return bool(count)
