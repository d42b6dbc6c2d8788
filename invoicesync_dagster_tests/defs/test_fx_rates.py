"""The `fx_rates` asset against the BNR fake, into a real DuckDB file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from invoicesync_dagster.clients.bnr import bucharest_today
from invoicesync_dagster.defs.efactura.fx import fx_rates
from invoicesync_dagster.defs.jobs import efactura_job
from invoicesync_dagster.defs.resources import BnrResource, WarehouseResource
from invoicesync_dagster.efactura.fx import rate_for
from invoicesync_dagster.sandbox.bnr_fake import CURRENCIES, banking_days, rates_on
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster.warehouse.database import connect
from invoicesync_dagster.warehouse.fx import rates_between

# Monday after Christmas 2025: 25-26 Dec are holidays, 27-28 Dec a weekend.
DAY = date(2025, 12, 29)

Materialize = Callable[..., dg.ExecuteInProcessResult]


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "w.duckdb"


@pytest.fixture
def materialize(sandbox: SandboxServer, database: Path) -> Materialize:
    def run(day: date = DAY, **bnr: object) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [fx_rates],
            partition_key=day.isoformat(),
            resources={
                "bnr": BnrResource(rates_url=f"{sandbox.url}/bnr/nbrfxrates.xml", **bnr),
                "warehouse": WarehouseResource(database=str(database)),
            },
            raise_on_error=False,
        )

    return run


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (event,) = result.asset_materializations_for_node("fx_rates")
    return {key: getattr(value, "value", value) for key, value in event.metadata.items()}


def rows(database: Path) -> list[tuple[object, ...]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute(
            "SELECT rate_date, currency, rate, multiplier, source, fetched_at FROM fx_rates "
            "ORDER BY rate_date, currency"
        ).fetchall()


def test_stores_ten_days_of_rates_and_reports_the_rate_documents_use(
    materialize: Materialize, sandbox: SandboxServer, database: Path
) -> None:
    result = materialize()
    assert result.success
    days = banking_days(DAY - timedelta(days=10), DAY)
    assert days == [date(2025, 12, d) for d in (19, 22, 23, 24, 29)]
    stored = rows(database)
    assert len(stored) == len(days) * len(CURRENCIES)
    by_key = {(r[0], r[1]): r for r in stored}
    eur_24 = by_key[(date(2025, 12, 24), "EUR")]
    assert eur_24[2] == rates_on(date(2025, 12, 24))["EUR"].rate
    assert eur_24[4] == f"{sandbox.url}/bnr/files/xml/years/nbrfxrates2025.xml"
    huf = by_key[(date(2025, 12, 29), "HUF")]
    assert (huf[2], huf[3]) == (rates_on(date(2025, 12, 29))["HUF"].rate, 100)

    meta = metadata(result)
    assert meta["dagster/row_count"] == len(stored)
    assert meta["rates_inserted"] == len(stored)
    # Documents issued on Monday 29 Dec use the rate of Wednesday 24 Dec.
    assert meta["eur_rate_date"] == "2025-12-24"
    assert Decimal(str(meta["eur_rate"])) == rates_on(date(2025, 12, 24))["EUR"].rate
    assert meta["usd_rate_date"] == "2025-12-24"
    assert meta["banking_days"] == [d.isoformat() for d in days]

    with connect(database, read_only=True) as connection:
        loaded = rates_between(connection, DAY - timedelta(days=10), DAY)
    fx = rate_for(DAY, loaded, "HUF")
    assert (fx.rate_date, fx.multiplier) == (date(2025, 12, 24), 100)


def test_re_running_a_day_is_idempotent(
    materialize: Materialize, sandbox: SandboxServer, database: Path
) -> None:
    assert materialize().success
    first = rows(database)
    again = materialize()
    assert again.success
    assert rows(database) == first  # same rates, same fetched_at: nothing rewritten
    meta = metadata(again)
    assert (meta["rates_inserted"], meta["rates_changed"]) == (0, 0)
    assert meta["rates_unchanged"] == len(first)
    # A rate that differs from BNR's is replaced, and only that one.
    with duckdb.connect(str(database)) as connection:
        connection.execute(
            "UPDATE fx_rates SET rate = 4.0000 WHERE rate_date = '2025-12-24' AND currency = 'EUR'"
        )
    corrected = materialize()
    assert (metadata(corrected)["rates_changed"], metadata(corrected)["rates_inserted"]) == (1, 0)
    assert rows(database) != first  # its fetched_at is new
    assert [r[:5] for r in rows(database)] == [r[:5] for r in first]
    # An overlapping day adds only its new banking days.
    following = materialize(DAY + timedelta(days=1))
    assert following.success
    assert metadata(following)["rates_inserted"] == len(CURRENCIES)  # 30 Dec
    assert len(rows(database)) == len(first) + len(CURRENCIES)


def test_a_recent_day_reads_the_ten_days_file_only(
    materialize: Materialize, sandbox: SandboxServer
) -> None:
    day = bucharest_today() - timedelta(days=1)
    result = materialize(day)
    assert result.success
    assert sandbox.requests.count("GET", "/bnr/nbrfxrates10days.xml") == 1
    assert sandbox.requests.snapshot()["total"] == 1
    meta = metadata(result)
    assert meta["eur_rate_date"] < day.isoformat()  # type: ignore[operator]


def test_bnr_down_fails_the_partition_and_writes_nothing(
    materialize: Materialize, sandbox: SandboxServer, database: Path
) -> None:
    sandbox.faults.configure({"rules": [{"path_prefix": "/bnr/", "status": 503}]})
    result = materialize(max_retries=0)
    assert not result.success
    failure = result.failure_data_for_node("fx_rates")
    assert failure is not None
    description = failure.user_failure_data.description if failure.user_failure_data else ""
    assert "nbrfxrates2025.xml: HTTP 503" in str(description)
    assert "re-materialize this partition" in str(description)
    assert not database.exists()  # the warehouse is opened only once BNR has answered


def test_efactura_job_runs_fx_rates_as_a_duckdb_writer() -> None:
    assert efactura_job.tags == {"invoicesync/duckdb": "writer"}
    assert efactura_job.selection == dg.AssetSelection.groups("efactura")
