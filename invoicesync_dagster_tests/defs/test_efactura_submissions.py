"""`efactura_submissions` against the ANAF fakes over loopback: every ready document filed once,
a lost answer reconciled from ANAF's list instead of sent again, a refusal sent again later."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import duckdb
import httpx
import pytest

from invoicesync_dagster.clients.anaf.oauth import AnafOAuthClient, TokenStore
from invoicesync_dagster.defs.efactura.deadlines import (
    BUCHAREST,
    open_documents,
    submission_deadline,
)
from invoicesync_dagster.defs.efactura.ledger_checks import (
    duplicate_submissions,
    no_duplicate_submissions,
    numbering_gapless,
    numbering_problems,
)
from invoicesync_dagster.defs.efactura.status import efactura_status_job, run_config_for
from invoicesync_dagster.defs.efactura.submissions import efactura_submissions
from invoicesync_dagster.defs.resources import AnafResource, WarehouseResource
from invoicesync_dagster.efactura.deadlines import Urgency
from invoicesync_dagster.sandbox.anaf_oauth_fake import SANDBOX_CLIENT
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster_tests.defs.buyers import DAY
from invoicesync_dagster_tests.defs.test_efactura_documents import DAY_ASSETS, STRIPE, Day

Materialize = Callable[..., dg.ExecuteInProcessResult]
SUBMIT = [efactura_submissions]


@pytest.fixture
def anaf_ready(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox: SandboxServer) -> Path:
    """ANAF enabled with the sandbox's OAuth app, and logged in once (the token store)."""
    home = tmp_path / "home"
    monkeypatch.setenv("INVOICESYNC_HOME", str(home))
    monkeypatch.setenv("ANAF_ENABLED", "true")
    monkeypatch.setenv("ANAF_CLIENT_ID", SANDBOX_CLIENT.client_id)
    monkeypatch.setenv("ANAF_CLIENT_SECRET", SANDBOX_CLIENT.client_secret)
    client = AnafOAuthClient(
        sandbox.url, SANDBOX_CLIENT.client_id, SANDBOX_CLIENT.client_secret,
        SANDBOX_CLIENT.redirect_uri,
    )  # fmt: skip
    answer = httpx.get(client.authorize_url("state-1"), follow_redirects=False)
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    TokenStore(home / "anaf_tokens.json").save(client.exchange_code(code))
    return home


def rows(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def day_of_documents(day: Day, materialize: Materialize, count: int = 3) -> None:
    alfa = day.company("Alfa Soft S.R.L.", "office@alfa.ro", 1_234_561)
    for hour in range(9, 9 + count):
        day.invoice_for(alfa, hour)
    assert materialize(STRIPE).success
    assert materialize(DAY_ASSETS).success


def uploads(result: dg.ExecuteInProcessResult) -> list[dict[str, Any]]:
    (event,) = result.asset_materializations_for_node("efactura_submissions")
    return list(event.metadata["anaf_uploads"].value)  # type: ignore[arg-type]


def test_every_ready_document_is_filed_once_and_a_rerun_sends_nothing(
    materialize: Materialize, sandbox: SandboxServer, anaf_ready: Path, tmp_path: Path
) -> None:
    day_of_documents(Day(sandbox), materialize)
    database = tmp_path / "w.duckdb"

    first = materialize(SUBMIT)
    assert first.success
    sent = uploads(first)
    ledger = sandbox.anaf_efactura.ledger_entries()
    assert sorted(e["index"] for e in ledger) == sorted(u["index"] for u in sent)
    assert len(ledger) == 3 and {e["standard"] for e in ledger} == {"UBL"}
    assert {e["cif"] for e in ledger} == {"4221306"}  # ANAF's cif: digits, no RO
    numbers = rows(database, "SELECT invoice_number FROM efactura_documents ORDER BY 1")
    assert sorted(e["invoice_number"] for e in ledger) == [n for (n,) in numbers]
    assert rows(database, "SELECT DISTINCT state FROM efactura_submissions") == [("sent",)]
    assert rows(database, "SELECT DISTINCT status FROM efactura_documents") == [("submitted",)]

    again = materialize(SUBMIT)
    assert again.success and uploads(again) == []
    (event,) = again.asset_materializations_for_node("efactura_submissions")
    assert event.metadata["waiting_for_anaf"].value == 3
    assert len(sandbox.anaf_efactura.ledger_entries()) == 3


def test_a_lost_answer_is_found_in_anafs_list_not_sent_again(
    materialize: Materialize, sandbox: SandboxServer, anaf_ready: Path, tmp_path: Path
) -> None:
    day_of_documents(Day(sandbox), materialize, count=2)
    fake = sandbox.anaf_efactura
    # ANAF takes the first upload, but its answer never comes back in time.
    fake.faults.update({"timeout_after_accept": 1, "accept_delay_s": 3.0})
    sandbox.clock.set(int(time.time()) - 300)  # uploaded five minutes ago, in ANAF's eyes
    impatient = AnafResource(api_base=sandbox.url, public_base=sandbox.url,
                             oauth_base=sandbox.url, staging=True, timeout_s=0.5)  # fmt: skip
    first = materialize(SUBMIT, anaf=impatient)
    assert first.success
    assert len(uploads(first)) == 1 and len(fake.ledger_entries()) == 2
    database = tmp_path / "w.duckdb"
    states = rows(database, "SELECT state FROM efactura_submissions ORDER BY state")
    assert states == [("sent",), ("unknown",)]

    sandbox.clock.set(None)  # now: ANAF has processed and listed it
    second = materialize(SUBMIT)
    assert second.success
    (found,) = uploads(second)
    lost = next(e for e in fake.ledger_entries() if e["index"] == found["index"])
    assert lost["invoice_number"] == found["invoice_number"]
    assert len(fake.ledger_entries()) == 2  # exactly once: nothing was sent again
    assert rows(database, "SELECT DISTINCT state FROM efactura_submissions") == [("sent",)]
    fake.reset()  # release the late answer still held by the fake


def test_a_refused_upload_is_sent_again_by_the_next_run(
    materialize: Materialize, sandbox: SandboxServer, anaf_ready: Path, tmp_path: Path
) -> None:
    day_of_documents(Day(sandbox), materialize, count=1)
    sandbox.anaf_efactura.faults.update({"waf": 1, "operation": "upload"})
    first = materialize(SUBMIT)
    assert first.success and uploads(first) == []
    database = tmp_path / "w.duckdb"
    assert rows(database, "SELECT attempt, state FROM efactura_submissions") == [(1, "failed")]
    assert rows(database, "SELECT status FROM efactura_documents") == [("ready",)]

    second = materialize(SUBMIT)
    assert len(uploads(second)) == 1
    assert rows(database, "SELECT attempt, state FROM efactura_submissions ORDER BY 1") == [
        (1, "failed"), (2, "sent"),
    ]  # fmt: skip
    assert len(sandbox.anaf_efactura.ledger_entries()) == 1


def test_nothing_is_filed_while_anaf_is_disabled(
    materialize: Materialize, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    day_of_documents(Day(sandbox), materialize, count=1)
    monkeypatch.setenv("ANAF_ENABLED", "false")
    result = materialize(SUBMIT)
    assert result.success
    (event,) = result.asset_materializations_for_node("efactura_submissions")
    assert "ANAF_ENABLED" in str(event.metadata["skipped"].value)
    assert sandbox.anaf_efactura.ledger_entries() == []


def test_a_rejected_document_keeps_its_errors_and_is_sent_again_with_its_number(
    materialize: Materialize, sandbox: SandboxServer, anaf_ready: Path, tmp_path: Path
) -> None:
    day_of_documents(Day(sandbox), materialize, count=1)
    fake = sandbox.anaf_efactura
    fake.known_sellers = {"1"}  # ANAF does not know our seller yet: nok (R6.1)
    database = tmp_path / "w.duckdb"
    resources = {
        "warehouse": WarehouseResource(database=str(database)),
        "anaf": AnafResource(api_base=sandbox.url, public_base=sandbox.url,
                             oauth_base=sandbox.url, staging=True),
    }  # fmt: skip

    def follow(sent: list[dict[str, Any]]) -> None:
        sandbox.clock.set(sandbox.clock.now() + 600)  # ANAF has processed them
        run = efactura_status_job.execute_in_process(
            run_config=run_config_for(sent, render_pdf=False), resources=resources
        )
        assert run.success

    first = materialize(SUBMIT)
    follow(uploads(first))
    ((state, errors),) = rows(database, "SELECT state, errors FROM efactura_submissions")
    assert state == "rejected" and "R6.1" in errors
    assert rows(database, "SELECT status FROM efactura_documents") == [("rejected",)]
    assert uploads(materialize(SUBMIT)) == []  # unchanged: not sent again by itself

    fake.known_sellers = None  # the seller's registration was fixed at ANAF
    again = {"ops": {"efactura_submissions": {"config": {"resend_rejected": True}}}}
    second = materialize(SUBMIT, run_config=again)
    follow(uploads(second))
    assert rows(database, "SELECT attempt, state FROM efactura_submissions ORDER BY 1") == [
        (1, "rejected"), (2, "accepted"),
    ]  # fmt: skip
    ledger = fake.ledger_entries()
    assert len(ledger) == 2 and len({e["invoice_number"] for e in ledger}) == 1  # same number
    assert rows(database, "SELECT status FROM efactura_documents") == [("accepted",)]


def test_the_deadline_check_flags_documents_anaf_has_not_accepted(
    materialize: Materialize, sandbox: SandboxServer, anaf_ready: Path, tmp_path: Path
) -> None:
    day_of_documents(Day(sandbox), materialize, count=2)
    result = materialize([efactura_submissions, submission_deadline])
    (check,) = result.get_asset_check_evaluations()
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
        issued_today = open_documents(connection, DAY)
        a_month_later = open_documents(connection, DAY + timedelta(days=30))
        now = open_documents(connection, datetime.now(BUCHAREST).date())
    # Sent, but no status run followed: ANAF has accepted nothing yet.
    assert len(issued_today) == 2 and {d["urgency"] for d in issued_today} == {Urgency.ON_TIME}
    assert {d["urgency"] for d in a_month_later} == {Urgency.LATE}
    late = sum(d["urgency"] is Urgency.LATE for d in now)
    soon = sum(d["urgency"] is Urgency.DUE_SOON for d in now)
    assert (check.metadata["late"].value, check.metadata["due_soon"].value) == (late, soon)
    assert check.passed == (late + soon == 0)
    expected = dg.AssetCheckSeverity.ERROR if late else dg.AssetCheckSeverity.WARN
    assert check.severity is expected


def test_the_books_checks_pass_and_name_a_gap_or_a_double_filing(
    materialize: Materialize, sandbox: SandboxServer, anaf_ready: Path, tmp_path: Path
) -> None:
    day_of_documents(Day(sandbox), materialize, count=3)
    result = materialize([efactura_submissions, numbering_gapless, no_duplicate_submissions])
    assert {c.check_name: c.passed for c in result.get_asset_check_evaluations()} == {
        "numbering_gapless": True, "no_duplicate_submissions": True,
    }  # fmt: skip
    database = tmp_path / "w.duckdb"
    with duckdb.connect(str(database)) as connection:
        # What only a hand edit could do: a number gone, an upload recorded twice.
        connection.execute("DELETE FROM invoice_number_allocations WHERE number = 2")
        connection.execute(
            "INSERT INTO efactura_submissions SELECT document_id, provider, attempt + 1, "
            "invoice_number, xml_sha256, state, upload_index, download_id, errors, created_at, "
            "sent_at, final_at, archive_path FROM efactura_submissions ORDER BY document_id LIMIT 1"
        )
        missing, orphans = numbering_problems(connection)
        duplicates = duplicate_submissions(connection)
    year = DAY.year
    assert missing == [f"INV-{year}: 2"] and orphans == []
    assert len(duplicates) == 1 and duplicates[0][1] == "2"
    result = materialize([efactura_submissions, numbering_gapless, no_duplicate_submissions])
    failed = {c.check_name for c in result.get_asset_check_evaluations() if not c.passed}
    assert failed == {"numbering_gapless", "no_duplicate_submissions"}
