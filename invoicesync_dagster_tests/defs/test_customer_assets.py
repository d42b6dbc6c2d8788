"""`customer_tax_profiles` end to end: Stripe and ANAF registry fakes over loopback, a real DuckDB
file, the Stripe assets and the profiles asset materialized with its three checks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from invoicesync_dagster.defs.customers.assets import customer_tax_profiles
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster.warehouse.customers import submission_blocks
from invoicesync_dagster.warehouse.database import connect
from invoicesync_dagster_tests.defs.buyers import DAY, STRIPE_ASSETS, Buyers, cui


def profiles(tmp_path: Path) -> dict[str, dict[str, Any]]:
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
        cursor = connection.execute("SELECT * FROM customer_tax_profiles")
        columns = [d[0] for d in cursor.description]
        return {row[0]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_a_day_of_every_kind_of_buyer(
    materialize: Callable[..., dg.ExecuteInProcessResult], sandbox: SandboxServer, tmp_path: Path
) -> None:
    buyers = Buyers(sandbox)
    mapped_cui, tax_id_cui, cif_cui = cui(1_234_561), cui(2_345_672), cui(3_456_783)
    # The mappings CSV gives a CUI the registry knows from an explicit record.
    sandbox.registry.add_records(
        [{"date_generale": {"cui": int(mapped_cui), "denumire": "MAPATA OFICIAL SRL",
                            "nrRegCom": "J40/7/2019"},
          "inregistrare_scop_Tva": {"scpTVA": True},
          "adresa_sediu_social": {"sdenumire_Strada": "Calea Victoriei", "snumar_Strada": "1",
                                  "sdenumire_Localitate": "Sector 1 Mun. Bucureşti",
                                  "scod_JudetAuto": "B"}}]
    )  # fmt: skip
    mapped = buyers.buyer(
        "Mapată S.R.L.",
        "office@mapata.ro",
        tax_ids=(("eu_vat", f"RO{cui(1_111_112)}"),),
        cui=cui(1_111_113),
    )
    by_tax_id = buyers.buyer(
        "Carpați Soft S.R.L.",
        "office@carpati.ro",
        tax_ids=(("eu_vat", f"RO{tax_id_cui}"),),
        cif=cui(2_222_223),
        sandbox_registry="active",
    )
    by_cif = buyers.buyer("Olt Agroserv S.A.", "office@olt.ro", cif=f"RO{cif_cui}",
                          sandbox_registry="not_vat_payer")  # fmt: skip
    person = buyers.buyer("Ștefan Țurcanu", "stefan@gmail.com", cnp="1800101123450")
    anonymous = buyers.buyer("Ioana Pop", "ioana@gmail.com")
    german = buyers.buyer("Müller GmbH", "billing@mueller.de", country="DE",
                          tax_ids=(("eu_vat", "DE123456789"),))  # fmt: skip
    american = buyers.buyer("Acme Widgets, Inc.", "ap@acme.com", country="US")
    no_cui = buyers.buyer("Fermele Bărăganului S.R.L.", "office@ferme.ro")
    bad_digit = buyers.buyer("Ionescu & Asociații S.R.L.", "office@ionescu.ro", cui="12345678")
    unknown = buyers.buyer("Fantoma S.R.L.", "office@fantoma.ro", cui=cui(4_567_894),
                           sandbox_registry="not_found")  # fmt: skip
    dormant = buyers.buyer("Adormita S.R.L.", "office@adormita.ro", cui=cui(5_678_905),
                           sandbox_registry="inactive")  # fmt: skip
    (tmp_path / "customers.csv").write_text(
        f"email,cui\nOffice@Mapata.ro,RO{mapped_cui}\nbroken@x.ro,RO12345678\n", encoding="utf-8"
    )

    assert materialize(STRIPE_ASSETS).success
    result = materialize([customer_tax_profiles])

    # An invalid CUI fails its check with ERROR, but does not fail the step: the others proceed.
    assert result.success
    rows = profiles(tmp_path)
    assert len(rows) == 11

    row = rows[mapped["id"]]
    assert (row["cui"], row["cui_source"]) == (mapped_cui, "mappings_csv")
    assert (row["legal_name"], row["legal_name_source"]) == ("MAPATA OFICIAL SRL", "anaf_registry")
    assert (row["city"], row["county_code"], row["address_source"]) == (
        "Sector 1 Mun. Bucureşti", "RO-B", "anaf_registry",
    )  # fmt: skip
    assert (row["registration_number"], row["vat_payer"]) == ("J40/7/2019", True)
    assert len(row["notes"]) == 2  # the tax id and metadata CUIs it overrode

    row = rows[by_tax_id["id"]]
    assert (row["cui"], row["cui_source"], row["registry_status"]) == (
        tax_id_cui, "stripe_tax_id", "found",
    )  # fmt: skip
    assert row["vat_payer"] is True and row["legal_name"] == "CARPAȚI SOFT S.R.L."
    row = rows[by_cif["id"]]
    assert (row["cui"], row["cui_source"], row["vat_payer"]) == (cif_cui, "stripe_metadata", False)

    assert {k: rows[c["id"]]["classification"] for k, c in {
        "person": person, "anonymous": anonymous, "german": german, "american": american,
        "no_cui": no_cui, "bad_digit": bad_digit, "dormant": dormant,
    }.items()} == {
        "person": "ro_person", "anonymous": "ro_person", "german": "eu_business",
        "american": "non_eu", "no_cui": "unknown", "bad_digit": "ro_company",
        "dormant": "ro_company",
    }  # fmt: skip
    assert (rows[person["id"]]["cnp"], rows[person["id"]]["cnp_source"]) == (
        "1800101123450", "stripe_metadata",
    )  # fmt: skip
    assert (rows[anonymous["id"]]["cnp"], rows[anonymous["id"]]["cnp_source"]) == (
        "0000000000000", "b2c_placeholder",
    )  # fmt: skip
    assert rows[german["id"]]["vat_number"] == "DE123456789"

    # Exactly the invalid ones are blocked; the document step asks the warehouse.
    blocked = {cid for cid, r in rows.items() if r["submission_blocked"]}
    assert blocked == {bad_digit["id"], unknown["id"]}
    with connect(tmp_path / "w.duckdb", read_only=True) as connection:
        reasons = submission_blocks(connection, [bad_digit["id"], unknown["id"], by_tax_id["id"]])
    assert set(reasons) == {bad_digit["id"], unknown["id"]}
    assert "fails the check digit" in reasons[bad_digit["id"]]
    assert "does not know CUI" in reasons[unknown["id"]]

    evaluations = checks(result)
    assert {name: (e.passed, e.severity) for name, e in evaluations.items()} == {
        "missing_cui": (False, dg.AssetCheckSeverity.WARN),
        "invalid_cui": (False, dg.AssetCheckSeverity.ERROR),
        "inactive_buyer": (False, dg.AssetCheckSeverity.WARN),
    }
    assert {e.partition for e in evaluations.values()} == {DAY.isoformat()}
    assert evaluations["missing_cui"].metadata["customer_ids"].value == [no_cui["id"]]
    assert sorted(evaluations["invalid_cui"].metadata["customer_ids"].value) == sorted(
        [bad_digit["id"], unknown["id"]]
    )
    assert evaluations["inactive_buyer"].metadata["customer_ids"].value == [dormant["id"]]
    table = evaluations["missing_cui"].metadata["customers"].value
    assert "Fermele Bărăganului S.R.L." in table and "office@ferme.ro" in table
    assert "mappings CSV" in table and "| invoices |" in table

    (materialization,) = result.asset_materializations_for_node("customer_tax_profiles")
    metadata = materialization.metadata
    assert metadata["dagster/row_count"].value == 11
    assert metadata["submission_blocked"].value == 2
    assert metadata["mappings_used"].value == 1
    assert "line 3" in metadata["mappings_problems"].value  # the bad line, named


def test_250_cuis_take_three_registry_calls_and_a_rerun_uses_the_cache(
    materialize: Callable[..., dg.ExecuteInProcessResult], sandbox: SandboxServer, tmp_path: Path
) -> None:
    buyers = Buyers(sandbox)
    for n in range(250):
        buyers.buyer(f"Firma {n} S.R.L.", f"office{n}@firma.ro", cui=cui(6_000_000 + n))
    assert materialize(STRIPE_ASSETS).success

    first = materialize([customer_tax_profiles])

    calls = sandbox.registry.calls
    assert first.success
    assert [(c.cui_count, c.outcome) for c in calls] == [(100, "answered")] * 2 + [(50, "answered")]
    assert all(b.monotonic - a.monotonic >= 1.0 for a, b in pairwise(calls))
    assert calls[-1].monotonic - calls[0].monotonic >= 2.0
    assert len(profiles(tmp_path)) == 250
    (materialization,) = first.asset_materializations_for_node("customer_tax_profiles")
    assert materialization.metadata["registry_cuis_asked"].value == 250

    # A re-run of the day finds every answer in the cache: ANAF is not asked again.
    second = materialize([customer_tax_profiles])
    assert second.success
    assert len(sandbox.registry.calls) == 3
    (materialization,) = second.asset_materializations_for_node("customer_tax_profiles")
    assert materialization.metadata["registry_cuis_asked"].value == 0
    assert materialization.metadata["registry_cuis_from_cache"].value == 250


def test_a_stale_cache_entry_is_asked_again(
    materialize: Callable[..., dg.ExecuteInProcessResult], sandbox: SandboxServer, tmp_path: Path
) -> None:
    buyers = Buyers(sandbox)
    company = cui(7_000_001)
    buyers.buyer("Proaspăt S.R.L.", "office@proaspat.ro", cui=company, sandbox_registry="active")
    assert materialize(STRIPE_ASSETS).success
    with connect(tmp_path / "w.duckdb") as connection:  # an answer 30 days old: stale after 7
        connection.execute(
            "INSERT INTO anaf_registry (cui, found, queried_on, queried_at) "
            "VALUES (?, false, ?, now())",
            [company, DAY - timedelta(days=30)],
        )

    result = materialize([customer_tax_profiles])

    assert [c.cui_count for c in sandbox.registry.calls] == [1]
    (row,) = profiles(tmp_path).values()
    assert (row["registry_status"], row["submission_blocked"]) == ("found", False)
    assert checks(result)["invalid_cui"].passed


def test_the_checks_are_recorded_on_the_partition_for_the_ui(
    materialize: Callable[..., dg.ExecuteInProcessResult], sandbox: SandboxServer
) -> None:
    """What the UI reads: each check's latest execution on the day, with its customers."""
    buyers = Buyers(sandbox)
    buyers.buyer("Fără Cod S.R.L.", "office@faracod.ro")
    buyers.buyer("Cod Greșit S.R.L.", "office@codgresit.ro", cui="12345678")
    buyers.buyer("Corectă S.R.L.", "office@corecta.ro", cui=cui(8_000_001))

    with dg.instance_for_test() as instance:
        assert materialize(STRIPE_ASSETS, instance=instance).success
        assert materialize([customer_tax_profiles], instance=instance).success
        storage = instance.event_log_storage
        latest = {}
        for name in ("missing_cui", "invalid_cui", "inactive_buyer"):
            key = dg.AssetCheckKey(dg.AssetKey("customer_tax_profiles"), name)
            (record,) = storage.get_asset_check_execution_history(key, limit=1)
            assert record.event is not None and record.event.dagster_event is not None
            latest[name] = (record.status.value, record.event.dagster_event.event_specific_data)

    assert {name: status for name, (status, _) in latest.items()} == {
        "missing_cui": "FAILED",
        "invalid_cui": "FAILED",
        "inactive_buyer": "SUCCEEDED",
    }
    for _, evaluation in latest.values():
        assert evaluation.partition == DAY.isoformat()
    missing = latest["missing_cui"][1].metadata["customers"].value
    invalid = latest["invalid_cui"][1].metadata["customers"].value
    assert "Fără Cod S.R.L." in missing and "Cod Greșit" not in missing
    assert "Cod Greșit S.R.L." in invalid and "fails the check digit" in invalid
    assert "Corectă" not in missing + invalid


def test_a_registry_outage_fails_the_step_with_a_clear_message(
    materialize: Callable[..., dg.ExecuteInProcessResult], sandbox: SandboxServer, tmp_path: Path
) -> None:
    buyers = Buyers(sandbox)
    buyers.buyer("Carpați Soft S.R.L.", "office@carpati.ro", cui=cui(9_000_001))
    assert materialize(STRIPE_ASSETS).success
    sandbox.faults.configure(
        {"rules": [{"path_prefix": "/api/PlatitorTvaRest", "status": 403}]}  # not retried
    )

    result = materialize([customer_tax_profiles])

    assert not result.success
    failure = result.failure_data_for_node("customer_tax_profiles")
    assert failure is not None and failure.user_failure_data is not None
    description = failure.user_failure_data.description or ""
    assert "HTTP 403" in description and "re-materialize this partition" in description
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM customer_tax_profiles").fetchone() == (0,)
