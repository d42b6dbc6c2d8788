"""`invoicesync sync-customers`, `cui validate`, `cui lookup` and `sandbox serve
--registry-fixtures`, against the sandbox over loopback."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from invoicesync_dagster.cli import cli
from invoicesync_dagster.efactura.mappings import parse_mappings
from invoicesync_dagster.sandbox.anaf_registry_fake import REGISTRY_PATH
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster_tests.defs.buyers import Buyers, cui

ACME = {
    "date_generale": {
        "cui": 14399840, "denumire": "ACME SOFTWARE SRL", "adresa": "JUD. CLUJ, MUN. CLUJ-NAPOCA",
        "nrRegCom": "J12/1/2013", "stare_inregistrare": "INREGISTRAT din data 09.01.2013",
    },
    "inregistrare_scop_Tva": {"scpTVA": True, "perioade_TVA": [
        {"data_inceput_ScpTVA": "2014-01-09", "data_sfarsit_ScpTVA": "",
         "data_anul_imp_ScpTVA": "", "mesaj_ScpTVA": ""}]},
    "adresa_sediu_social": {"sdenumire_Localitate": "Mun. Cluj-Napoca", "scod_JudetAuto": "CJ"},
}  # fmt: skip


@pytest.fixture
def env(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_cli")
    monkeypatch.setenv("STRIPE_API_BASE", sandbox.url)
    monkeypatch.setenv("ANAF_PUBLIC_API_BASE", sandbox.url)
    monkeypatch.setenv("INVOICESYNC_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def billed(env: Path, sandbox: SandboxServer) -> dict[str, dict[str, Any]]:
    """Five customers billed three days ago, and a mappings file with one bad line."""
    buyers = Buyers(sandbox)
    customers = {
        "mapped": buyers.buyer("Mapată S.R.L.", "office@mapata.ro", sandbox_registry="active"),
        "tax_id": buyers.buyer(
            "Carpați Soft S.R.L.",
            "office@carpati.ro",
            tax_ids=(("eu_vat", f"RO{cui(2_345_672)}"),),
            sandbox_registry="inactive",
        ),
        "no_cui": buyers.buyer("Fermele Bărăganului S.R.L.", "office@ferme.ro"),
        "bad_digit": buyers.buyer("Ionescu S.R.L.", "office@ionescu.ro", cui="12345678"),
        "person": buyers.buyer("Ioana Pop", "ioana@gmail.com"),
    }
    # The mapped customer's CUI is only in the mappings file: the registry knows it explicitly.
    sandbox.registry.add_records([ACME])
    (env / "customers.csv").write_text(
        "email,cui\noffice@mapata.ro,RO14399840\nnobody@x.ro,\n", encoding="utf-8"
    )
    return customers


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_sync_customers_writes_json_and_the_missing_list(
    billed: dict[str, dict[str, Any]], env: Path, sandbox: SandboxServer
) -> None:
    out = env / "out.json"
    code, output = invoke(
        "sync-customers", "--mappings", "customers.csv", "--validate", "--days", "7", "-o", str(out)
    )

    # The bad mappings line makes the command fail after writing everything else.
    assert code == 1
    assert "customers.csv, line 3: nobody@x.ro has an empty CUI" in output
    assert "customers.csv has 1 problem (listed above)" in output
    rows = {row["customer_id"]: row for row in json.loads(out.read_text())}
    assert len(rows) == 5
    mapped = rows[billed["mapped"]["id"]]
    assert (mapped["cui"], mapped["cui_source"], mapped["legal_name"]) == (
        "14399840", "mappings_csv", "ACME SOFTWARE SRL",
    )  # fmt: skip
    assert (mapped["vat_payer"], mapped["registry_status"]) == (True, "found")
    assert rows[billed["tax_id"]["id"]]["inactive"] is True
    assert rows[billed["bad_digit"]["id"]]["submission_blocked"] is True
    assert rows[billed["person"]["id"]]["cnp"] == "0000000000000"
    assert [c.cui_count for c in sandbox.registry.calls] == [2]  # the bad check digit is not asked

    missing = json.loads((env / "out.missing.json").read_text())
    assert {row["customer_id"] for row in missing} == {
        billed["no_cui"]["id"], billed["bad_digit"]["id"],
    }  # fmt: skip
    assert all(row["cui"] == "" and row["what_to_do"] for row in missing)
    assert "2 customers still without a valid CUI written to" in output
    assert "1 ro_person" in output and "3 ro_company" in output


def test_sync_customers_csv_and_its_missing_list_is_a_mappings_file(
    billed: dict[str, dict[str, Any]], env: Path, sandbox: SandboxServer
) -> None:
    (env / "customers.csv").write_text("email,cui\noffice@mapata.ro,RO14399840\n")
    out = env / "out.csv"
    code, output = invoke("sync-customers", "-o", str(out))  # the default mappings path is unset

    assert code == 0, output
    assert "No mappings file at" in output  # $INVOICESYNC_HOME/customers.csv does not exist
    with out.open(encoding="utf-8") as source:
        rows = {row["customer_id"]: row for row in csv.DictReader(source)}
    assert rows[billed["mapped"]["id"]]["classification"] == "unknown"  # no CUI without the file
    assert rows[billed["tax_id"]["id"]]["registry_status"] == "not_asked"  # no --validate
    assert sandbox.registry.calls == []
    missing_file = env / "out.missing.csv"
    lines = missing_file.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "email,cui,name,customer_id,invoices,problem,what_to_do"
    # Filled in by the accountant, the missing list loads as a mappings file.
    filled = "\n".join([lines[0], *(line.replace(",,", ",RO4221306,", 1) for line in lines[1:])])
    parsed = parse_mappings(filled.encode(), "filled.csv")
    assert parsed.problems == []
    assert set(parsed.entries) == {"office@mapata.ro", "office@ferme.ro", "office@ionescu.ro"}


def test_sync_customers_table_on_stdout(billed: dict[str, dict[str, Any]], env: Path) -> None:
    (env / "customers.csv").write_text("email,cui\noffice@mapata.ro,RO14399840\n")
    code, output = invoke("sync-customers", "--mappings", "customers.csv", "--validate")
    assert code == 0, output
    assert "Read 1 mappings from customers.csv" in output
    assert "ACME SOFTWARE SRL" in output and "not found" not in output
    assert "BLOCKED" in output  # the bad check digit
    assert "5 customers billed from" in output and "2 customers still without a valid CUI" in output


def test_cui_validate(env: Path) -> None:
    assert invoke("cui", "validate", "RO 4221306") == (
        0,
        "CUI 4221306 is valid (as a VAT number: RO4221306). Whether it exists: invoicesync cui "
        "lookup 4221306\n",
    )
    code, output = invoke("cui", "validate", "RO12345678")
    assert code == 1 and "fails the check digit (last digit is 8, expected 4)" in output
    code, output = invoke("cui", "validate", "1800101123450")
    assert code == 1 and "is a valid CNP (a person's id), not a CUI" in output

    code, _ = invoke("cui", "validate", "12345678", "-o", str(env / "check.json"))
    (row,) = json.loads((env / "check.json").read_text())
    assert code == 1 and row["valid"] is False and "check digit" in row["error"]


def test_cui_lookup(env: Path, sandbox: SandboxServer) -> None:
    sandbox.registry.add_records([ACME])
    code, output = invoke("cui", "lookup", "RO14399840", "--date", "2026-07-01")
    assert code == 0, output
    assert "ACME SOFTWARE SRL" in output and "J12/1/2013" in output
    assert "vat_payer            yes" in output and "2014-01-09" in output
    assert "RO-CJ" in output and "JUD. CLUJ, MUN. CLUJ-NAPOCA" in output

    out = env / "acme.csv"
    assert invoke("cui", "lookup", "14399840", "-o", str(out))[0] == 0
    with out.open(encoding="utf-8") as source:
        (row,) = list(csv.DictReader(source))
    assert (row["name"], row["vat_payer"], row["vat_registered_on"]) == (
        "ACME SOFTWARE SRL", "True", "2014-01-09",
    )  # fmt: skip

    unknown = cui(9_999_990)
    code, output = invoke("cui", "lookup", unknown)
    assert code == 1 and f"does not know CUI {unknown}" in output
    calls = len(sandbox.registry.calls)
    code, output = invoke("cui", "lookup", "12345678")
    assert code == 1 and "check digit" in output and "was not asked" in output
    assert len(sandbox.registry.calls) == calls


def test_the_sandbox_serves_the_registry_with_fixture_records(
    sandbox_factory: Any, tmp_path: Path
) -> None:
    fixtures = tmp_path / "registry.json"
    fixtures.write_text(json.dumps([ACME]), encoding="utf-8")
    server = sandbox_factory(registry_fixtures=fixtures)
    answer = httpx.post(server.url + REGISTRY_PATH, json=[{"cui": 14399840, "data": "2026-07-01"}])
    assert answer.json()["found"][0]["date_generale"]["denumire"] == "ACME SOFTWARE SRL"

    fixtures.write_text('{"found": "nope"}', encoding="utf-8")
    code, output = invoke("sandbox", "serve", "--registry-fixtures", str(fixtures))
    assert code == 1 and "sandbox not started" in output and "registry fixtures" in output
