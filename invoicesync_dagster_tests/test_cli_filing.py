"""`invoicesync process`, `process-one`, `status`, `download` and `providers check` over the
sandbox (Stripe, ANAF OAuth + e-Factura, SmartBill, BNR on loopback), with the daily jobs run
in-process into a real DuckDB file. The sandbox's ledger proves what was sent, and how often."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from invoicesync_dagster.cli import cli
from invoicesync_dagster.sandbox import seed
from invoicesync_dagster.sandbox.anaf_oauth_fake import SANDBOX_CLIENT, sandbox_login
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster_tests.defs.buyers import DAY, cui
from invoicesync_dagster_tests.defs.conftest import SELLER
from invoicesync_dagster_tests.defs.test_efactura_documents import Day


def settings(sandbox: SandboxServer, home: Path, **extra: str) -> dict[str, str]:
    """Every outside service at the sandbox; ANAF enabled with the sandbox's app."""
    url = sandbox.url
    return {
        **SELLER,
        "INVOICESYNC_HOME": str(home),
        "STRIPE_API_KEY": "sk_test_filing",
        "STRIPE_API_BASE": url,
        "ANAF_API_BASE": url,
        "ANAF_OAUTH_BASE": url,
        "ANAF_PUBLIC_API_BASE": url,
        "SMARTBILL_API_BASE": url,
        "BNR_RATES_URL": f"{url}/bnr/nbrfxrates.xml",
        "ANAF_ENABLED": "true",
        "ANAF_CLIENT_ID": SANDBOX_CLIENT.client_id,
        "ANAF_CLIENT_SECRET": SANDBOX_CLIENT.client_secret,
        **extra,
    }


def configure(
    monkeypatch: pytest.MonkeyPatch, sandbox: SandboxServer, folder: Path, **extra: str
) -> Path:
    monkeypatch.chdir(folder)  # no .env of a developer's checkout; downloads land here
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # runs go to a throw-away instance
    home = folder / "home"
    for name, value in settings(sandbox, home, **extra).items():
        monkeypatch.setenv(name, value)
    return home


def login(sandbox: SandboxServer, home: Path) -> None:
    sandbox_login(sandbox.url, SANDBOX_CLIENT, home / "anaf_tokens.json")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def rows(home: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(home / "invoicesync.duckdb"), read_only=True) as connection:
        return connection.execute(sql).fetchall()


# -- process: two seeded days, filed and answered --------------------------------------------


@dataclass
class Filed:
    sandbox: SandboxServer
    home: Path
    folder: Path
    first: tuple[int, str]
    second: tuple[int, str]
    items: list[dict[str, Any]]
    ledger_after_first: list[dict[str, Any]]


@pytest.fixture(scope="module")
def filed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filed]:
    """`process --provider anaf --days 2` on a fresh sandbox whose ANAF answers at once, then
    the same command again."""
    folder = tmp_path_factory.mktemp("filed")
    with SandboxServer() as sandbox, pytest.MonkeyPatch.context() as monkeypatch:
        home = configure(monkeypatch, sandbox, folder)
        sandbox.anaf_efactura.processing_seconds = 0
        sandbox.stripe.load(list(seed.generate(2, invoices_per_day=4, charges_per_day=2)))
        login(sandbox, home)
        first = invoke("process", "--provider", "anaf", "--days", "2", "--output", "items.json")
        ledger = sandbox.anaf_efactura.ledger_entries()
        second = invoke("process", "--provider", "anaf", "--days", "2")
        items = json.loads((folder / "items.json").read_text())
        yield Filed(sandbox, home, folder, first, second, items, ledger)


def test_process_files_every_numbered_document_and_waits_for_anaf(filed: Filed) -> None:
    code, output = filed.first
    assert code == 0, output
    numbered = [item for item in filed.items if item["number"]]
    assert len(numbered) >= 4
    assert {item["filing_state"] for item in numbered} == {"accepted"}
    assert all(item["sent_now"] and item["upload_index"] for item in numbered)
    assert sorted(e["invoice_number"] for e in filed.ledger_after_first) == sorted(
        item["number"] for item in numbered
    )  # each document reached ANAF exactly once
    assert {e["state"] for e in filed.ledger_after_first} == {"ok"}
    assert rows(
        filed.home,
        "SELECT count(*) FROM efactura_documents WHERE invoice_number IS NOT NULL "
        "AND status <> 'accepted'",
    ) == [(0,)]
    days = sorted({item["day"] for item in filed.items})
    assert len(days) == 2 and all(day in output for day in days)
    assert "accepted" in output and f"{len(filed.items)} documents written" in output


def test_processing_again_sends_nothing(filed: Filed) -> None:
    code, output = filed.second
    assert code == 0, output
    assert filed.sandbox.anaf_efactura.ledger_entries() == filed.ledger_after_first


# -- status and download ---------------------------------------------------------------------


def test_status_lists_the_document_and_its_attempts(
    filed: Filed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(filed.folder)
    item = next(i for i in filed.items if i["number"])
    stripe_id = item["document_id"].split(":")[1]
    for key in (stripe_id, item["document_id"], item["number"].lower()):
        code, output = invoke("status", key)
        assert code == 0, output
        assert item["number"] in output and item["upload_index"] in output
        assert "accepted" in output
    code, output = invoke("status", item["number"], "--output", "status.json")
    assert code == 0, output
    (row,) = json.loads((filed.folder / "status.json").read_text())
    assert (row["provider"], row["attempt"], row["state"]) == ("anaf", "1", "accepted")
    assert row["archive"].startswith("archive/") and row["final_at"]

    code, output = invoke("status", "in_doesNotExist")
    assert code == 1 and "no document for in_doesNotExist" in output


def test_download_xml_is_the_copy_anaf_accepted_byte_for_byte(
    filed: Filed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    item = next(i for i in filed.items if i["number"])
    number = item["number"]
    code, output = invoke("download", number, "--format", "xml")
    assert code == 0, output
    written = (tmp_path / f"{number}.xml").read_bytes()
    (sent,) = [e for e in filed.ledger_after_first if e["invoice_number"] == number]
    assert hashlib.sha256(written).hexdigest() == sent["xml_sha256"]
    assert "ANAF accepted" in output

    (tmp_path / f"{number}.xml").write_bytes(b"mine")
    code, output = invoke("download", item["document_id"], "--format", "xml")
    assert code == 1 and "--force" in output
    assert (tmp_path / f"{number}.xml").read_bytes() == b"mine"  # never overwritten silently
    code, output = invoke("download", number, "--format", "xml", "--force")
    assert code == 0 and (tmp_path / f"{number}.xml").read_bytes() == written


def test_download_pdf_archived_or_rendered_by_anaf(
    filed: Filed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = [i for i in filed.items if i["number"] and i["kind"] == "invoice"][:2]
    code, output = invoke("download", first["number"], "--format", "pdf", "-o", "a.pdf")
    assert code == 0, output
    assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
    assert "ANAF's PDF of the accepted XML, from" in output  # archived by the status job

    # Without the archived PDF, ANAF's public service renders the accepted XML again.
    for archived in (filed.home / "archive").rglob(f"{second['number']}_*.pdf"):
        archived.unlink()
    calls = filed.sandbox.requests.count("POST", "/prod/FCTEL/rest/transformare/FACT1/DA")
    code, output = invoke("download", second["number"], "--format", "pdf")
    assert code == 0, output
    assert (tmp_path / f"{second['number']}.pdf").read_bytes().startswith(b"%PDF")
    assert "transformare" in output
    assert filed.sandbox.requests.count("POST", "/prod/FCTEL/rest/transformare/FACT1/DA") == (
        calls + 1
    )


# -- process: waiting, rejections, dry runs ---------------------------------------------------


def test_uploads_still_processing_are_followed_by_the_next_run(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = configure(monkeypatch, sandbox, tmp_path)
    now = sandbox.clock.now()
    sandbox.clock.set(now)  # ANAF's clock stands still: its answers stay "in prelucrare"
    sandbox.anaf_efactura.processing_seconds = 300
    sandbox.stripe.load(list(seed.generate(1, invoices_per_day=3, charges_per_day=1)))
    login(sandbox, home)

    code, output = invoke("process", "--provider", "anaf", "--days", "1", "--wait-minutes", "0")
    assert code == 0, output
    assert "still being processed by ANAF" in output
    sent = sandbox.anaf_efactura.ledger_entries()
    assert sent and {e["state"] for e in sent} == {"in prelucrare"}
    assert {s for (s,) in rows(home, "SELECT DISTINCT state FROM efactura_submissions")} == {"sent"}
    number = sent[0]["invoice_number"]
    code, output = invoke("download", number, "--format", "xml")
    assert code == 0 and "as built, not accepted yet (sent)" in output

    sandbox.clock.set(now + 600)  # ten minutes later ANAF has answered
    code, output = invoke("process", "--provider", "anaf", "--days", "1", "--wait-minutes", "0")
    assert code == 0, output
    assert [e["index"] for e in sandbox.anaf_efactura.ledger_entries()] == [
        e["index"] for e in sent
    ]  # nothing sent again
    assert {s for (s,) in rows(home, "SELECT DISTINCT state FROM efactura_submissions")} == {
        "accepted"
    }


def test_dry_run_sends_nothing_and_rejections_fail_the_command(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = configure(monkeypatch, sandbox, tmp_path)
    sandbox.anaf_efactura.processing_seconds = 0
    sandbox.stripe.load(list(seed.generate(1, invoices_per_day=3, charges_per_day=1)))
    login(sandbox, home)

    code, output = invoke(
        "process", "--provider", "anaf", "--days", "1", "--dry-run", "-o", "dry.csv"
    )
    assert code == 0, output
    assert "Dry run: nothing was submitted" in output
    assert sandbox.anaf_efactura.ledger_entries() == []
    assert sandbox.requests.count("POST", "/test/FCTEL/rest/upload") == 0
    with open(tmp_path / "dry.csv", newline="", encoding="utf-8") as source:
        built = list(csv.DictReader(source))
    assert built and {row["filing_state"] for row in built} == {"not_sent"}
    assert rows(home, "SELECT count(*) FROM efactura_submissions") == [(0,)]

    # ANAF does not know this seller: every upload comes back `nok`.
    sandbox.anaf_efactura.known_sellers = {"13548146"}
    code, output = invoke("process", "--provider", "anaf", "--type", "invoices", "--days", "1")
    assert code == 1
    assert "rejected by ANAF" in output and "rejected: INV-" in output
    ledger = sandbox.anaf_efactura.ledger_entries()
    invoices = [r for r in built if r["document_id"].startswith("stripe_invoice:") and r["number"]]
    assert sorted(e["invoice_number"] for e in ledger) == sorted(r["number"] for r in invoices)
    assert {e["state"] for e in ledger} == {"nok"}


def test_process_refuses_a_provider_that_is_not_enabled(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configure(monkeypatch, sandbox, tmp_path, ANAF_ENABLED="false")
    code, output = invoke("process", "--provider", "anaf", "--days", "1")
    assert code == 1 and "ANAF_ENABLED is not true" in output
    code, output = invoke("process", "--provider", "smartbill", "--days", "1")
    assert code == 1 and "SMARTBILL_ENABLED is not true" in output
    monkeypatch.setenv("ANAF_ENABLED", "true")
    code, output = invoke("process", "--provider", "anaf", "--days", "1")
    assert code == 1 and "run `invoicesync anaf login`" in output  # no tokens yet
    code, output = invoke("process", "--provider", "anaf", "--days", "2", "--start-date", "x")
    assert code == 2  # click refuses the date


# -- SmartBill ---------------------------------------------------------------------------------


def test_process_with_smartbill_creates_each_invoice(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    smartbill = {
        "ANAF_ENABLED": "false",
        "SMARTBILL_ENABLED": "true",
        "SMARTBILL_USERNAME": "facturare@exemplu.ro",
        "SMARTBILL_TOKEN": "sandbox-smartbill-token",
        "SMARTBILL_SERIES": "FCT",
    }
    configure(monkeypatch, sandbox, tmp_path, **smartbill)
    day = Day(sandbox)
    alfa = day.company("Alfa Soft S.R.L.", "office@alfa.ro", 1_234_561)
    day.invoice_for(alfa, 9)
    day.invoice_for(alfa, 10)
    window = ("--start-date", DAY.isoformat(), "--end-date", DAY.isoformat())

    code, output = invoke("process", "--provider", "smartbill", *window, "-o", "sb.json")
    assert code == 0, output
    filed = json.loads((tmp_path / "sb.json").read_text())
    assert [(r["filing_state"], r["upload_index"]) for r in filed] == [
        ("accepted", "FCT0001"),
        ("accepted", "FCT0002"),
    ]
    assert len(sandbox.smartbill.ledger_entries()) == 2

    code, output = invoke("download", filed[0]["number"], "--format", "pdf")
    assert code == 0 and "SmartBill's PDF of FCT0001" in output
    assert (tmp_path / f"{filed[0]['number']}.pdf").read_bytes().startswith(b"%PDF")
    code, output = invoke("providers", "check", "smartbill")
    assert code == 0, output
    assert "OK   smartbill series: invoice series FCT" in output


# -- process-one -----------------------------------------------------------------------------


def test_process_one_adds_the_tax_id_checks_the_number_and_files_only_that_document(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = configure(monkeypatch, sandbox, tmp_path)
    sandbox.anaf_efactura.processing_seconds = 0
    login(sandbox, home)
    day = Day(sandbox)
    alfa = day.company("Alfa Soft S.R.L.", "office@alfa.ro", 1_234_561)
    beta = day.company("Beta Consult S.R.L.", "contabil@beta.ro", 0)  # no CUI in Stripe
    day.invoice_for(alfa, 9)
    wanted = day.invoice_for(beta, 10)
    beta_cui = cui(2_345_672)
    sandbox.registry.add_records([{"date_generale": {"cui": int(beta_cui)}}])
    one = ("process-one", "--source-type", "stripe_invoice", "--source-id", wanted["id"],
           "--provider", "anaf")  # fmt: skip

    code, output = invoke(*one, "--customer-tax-id", "RO1234567")
    assert code == 1 and "check digit" in output and "nothing was changed" in output
    assert not (home / "customers.csv").exists()

    number = f"INV-{DAY.year}-000002"  # numbered after alfa's invoice of the same day
    code, output = invoke(*one, "--customer-tax-id", beta_cui, "--invoice-number", "INV-9")
    assert code == 1 and f"was numbered {number}, not INV-9" in output
    assert (home / "customers.csv").read_text() == f"email,cui\ncontabil@beta.ro,{beta_cui}\n"
    assert sandbox.anaf_efactura.ledger_entries() == []  # a wrong number stops before filing

    code, output = invoke(*one, "--invoice-number", number, "--output", "one.json")
    assert code == 0, output
    assert f"{number} (stripe_invoice:{wanted['id']}): accepted" in output
    (entry,) = sandbox.anaf_efactura.ledger_entries()  # only that document, alfa's waits
    assert (entry["invoice_number"], entry["state"], entry["b2c"]) == (number, "ok", False)
    buyer = f"SELECT buyer_cui FROM efactura_documents WHERE invoice_number = '{number}'"
    assert rows(home, buyer) == [(beta_cui,)]


# -- providers check ---------------------------------------------------------------------------


def test_providers_check_passes_with_a_login_and_names_the_fix_without(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = configure(monkeypatch, sandbox, tmp_path)
    code, output = invoke("providers", "check", "--output", "checks.json")
    assert code == 1
    assert "FAIL anaf tokens: no token store" in output
    assert "fix: run `invoicesync anaf login`" in output
    checks = json.loads((tmp_path / "checks.json").read_text())
    assert {(c["provider"], c["check"], c["result"]) for c in checks} >= {
        ("anaf", "settings", "OK"),
        ("anaf", "tokens", "FAIL"),
        ("anaf", "e-Factura API", "SKIP"),
        ("anaf", "public services", "OK"),
        ("smartbill", "settings", "SKIP"),
    }

    login(sandbox, home)
    code, output = invoke("providers", "check", "anaf")
    assert code == 0, output
    assert "OK   anaf e-Factura API" in output and "OK   anaf tokens" in output
    pair = json.loads((home / "anaf_tokens.json").read_text())
    assert pair["access_token"] not in output and pair["refresh_token"] not in output

    code, output = invoke("providers", "check", "smartbill")
    assert code == 1 and "FAIL smartbill settings: missing SMARTBILL_USERNAME" in output


def test_a_failed_job_stops_the_days_after_it_and_says_why(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = configure(monkeypatch, sandbox, tmp_path)
    login(sandbox, home)
    sandbox.faults.configure(
        {"rules": [{"path_prefix": "/v1/", "status": 401, "message": "Invalid API Key provided"}]}
    )
    code, output = invoke("process", "--provider", "anaf", "--days", "2")
    assert code == 1
    assert "daily_invoice_job failed" in output and "Invalid API Key" in output
    first = seed.yesterday_in_bucharest() - timedelta(days=1)
    assert f"{first}  daily_invoice_job  FAILED" in output
    assert "stripe_charges: StripeAuthError: GET /v1/charges: Stripe rejected" in output
    assert "2 more steps failed" in output
    assert f"{first + timedelta(days=1)}  daily_invoice_job" not in output  # not the next day
    assert sandbox.anaf_efactura.ledger_entries() == []
