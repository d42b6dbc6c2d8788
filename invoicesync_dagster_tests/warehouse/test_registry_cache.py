"""The `anaf_registry` cache: fresh answers are reused, stale and missing ones are asked again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from invoicesync_dagster.clients.anaf_registry import AnafRegistryClient, RegistryAnswer
from invoicesync_dagster.efactura.identifiers import cui_check_digit
from invoicesync_dagster.sandbox.anaf_registry_fake import AnafRegistryFake
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster.warehouse.database import connect
from invoicesync_dagster.warehouse.registry import cached, lookup_cached, store

ON = date(2026, 7, 1)


def _record(cui: int, name: str, *, vat: bool = True, county: str = "CJ") -> dict:
    return {
        "date_generale": {"cui": cui, "denumire": name, "nrRegCom": f"J12/{cui}/2015"},
        "inregistrare_scop_Tva": {"scpTVA": vat, "perioade_TVA": [
            {"data_inceput_ScpTVA": "2015-03-01", "data_sfarsit_ScpTVA": "",
             "data_anul_imp_ScpTVA": "", "mesaj_ScpTVA": ""}] if vat else []},
        "adresa_sediu_social": {"scod_JudetAuto": county, "sdenumire_Localitate": "Cluj-Napoca"},
    }  # fmt: skip


def _cui(body: int) -> str:
    return str(body) + str(cui_check_digit(str(body)))


ACME, BETA, GONE = _cui(1_111_111), _cui(2_222_222), _cui(3_333_333)


@pytest.fixture
def fake(sandbox: SandboxServer) -> AnafRegistryFake:
    records = [_record(int(ACME), "ACME SRL"), _record(int(BETA), "BETA SA", vat=False)]
    registry = AnafRegistryFake(records=records)
    sandbox.mount(registry)
    return registry


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[AnafRegistryClient]:
    with AnafRegistryClient(sandbox.url) as registry_client:
        yield registry_client


def test_a_second_lookup_within_max_age_makes_no_call(
    tmp_path: Path, fake: AnafRegistryFake, client: AnafRegistryClient
) -> None:
    database = tmp_path / "w.duckdb"
    first = lookup_cached(database, client, [f"RO{ACME}", BETA, GONE], ON, max_age_days=30)
    later = ON + timedelta(days=30)
    again = lookup_cached(database, client, [ACME, BETA, f"RO {GONE}"], later, max_age_days=30)

    assert [c.cui_count for c in fake.calls] == [3]
    assert first.not_found == again.not_found == {GONE}  # not-found answers are cached too
    assert first.found == again.found  # the cached raw record parses back to the same record
    assert again.found[ACME].name == "ACME SRL" and again.found[ACME].county_code == "RO-CJ"
    assert not again.found[BETA].vat_payer
    with connect(database, read_only=True) as connection:
        rows = connection.execute(
            "SELECT cui, found, name, vat_payer, county_code, queried_on FROM anaf_registry "
            "ORDER BY cui"
        ).fetchall()
    assert rows == [
        (ACME, True, "ACME SRL", True, "RO-CJ", ON),
        (BETA, True, "BETA SA", False, "RO-CJ", ON),
        (GONE, False, None, None, None, ON),
    ]


def test_stale_and_missing_entries_are_asked_again(
    tmp_path: Path, fake: AnafRegistryFake, client: AnafRegistryClient
) -> None:
    database = tmp_path / "w.duckdb"
    old, recent = ON - timedelta(days=31), ON - timedelta(days=2)
    with connect(database) as connection:
        store(connection, RegistryAnswer(not_found={ACME}), old)  # ANAF did not know it then
        store(connection, RegistryAnswer(not_found={GONE}), recent)

    answer = lookup_cached(database, client, [ACME, BETA, GONE], ON, max_age_days=30)

    # ACME is stale, BETA was never asked; GONE is fresh and not asked again.
    assert [c.cui_count for c in fake.calls] == [2]
    assert set(answer.found) == {ACME, BETA} and answer.not_found == {GONE}
    with connect(database, read_only=True) as connection:
        fresh = cached(connection, [ACME, BETA, GONE], max_age_days=30, today=ON)
    assert {cui: row.queried_on for cui, row in fresh.items()} == {
        ACME: ON, BETA: ON, GONE: recent,
    }  # fmt: skip
    assert fresh[ACME].found and fresh[ACME].record is not None
    assert fresh[ACME].record.name == "ACME SRL"


def test_cached_returns_only_fresh_rows(tmp_path: Path) -> None:
    with connect(tmp_path / "w.duckdb") as connection:
        store(connection, RegistryAnswer(not_found={ACME}), ON - timedelta(days=10))
        store(connection, RegistryAnswer(not_found={BETA}), ON)
        assert set(cached(connection, [ACME, BETA], 10, today=ON)) == {ACME, BETA}
        assert set(cached(connection, [f"RO{ACME}", BETA], 9, today=ON)) == {BETA}
        assert cached(connection, [], 10, today=ON) == {}
        with pytest.raises(ValueError, match="max_age_days"):
            cached(connection, [ACME], -1)


def test_cached_on_a_warehouse_without_the_table_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    duckdb.connect(str(path)).close()
    with connect(path, read_only=True) as connection:
        assert cached(connection, [ACME], 30) == {}


def test_the_table_comes_from_the_migrations_and_store_replaces_by_cui(tmp_path: Path) -> None:
    with connect(tmp_path / "w.duckdb") as connection:
        store(connection, RegistryAnswer(not_found={ACME}), ON - timedelta(days=5))
        store(connection, RegistryAnswer(not_found={ACME}), ON)
        assert connection.execute(
            "SELECT count(*), max(queried_on) FROM anaf_registry"
        ).fetchone() == (1, ON)
