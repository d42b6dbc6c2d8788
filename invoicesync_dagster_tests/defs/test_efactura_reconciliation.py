"""The monthly reconciliation against the sandbox's ANAF (OAuth + e-Factura fakes, loopback) into
a real DuckDB file, on the sandbox's pinned clock: October 2026 filed during the month and
reconciled on 1 November 04:00 Bucharest, as the schedule would."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest

from invoicesync_dagster.clients.anaf.efactura import EfacturaClient
from invoicesync_dagster.definitions import defs
from invoicesync_dagster.defs.efactura import reconciliation, status
from invoicesync_dagster.defs.resources import AnafResource, WarehouseResource
from invoicesync_dagster.efactura.model import build_document
from invoicesync_dagster.efactura.ubl import xml_bytes
from invoicesync_dagster.sandbox.anaf_oauth_fake import SANDBOX_CLIENT, sandbox_login
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster.warehouse import submissions
from invoicesync_dagster.warehouse.database import connect
from invoicesync_dagster_tests.defs.test_efactura_status import (
    COMPANY,
    KNOWN_BUYER,
    SELLER_CUI,
    UNKNOWN_BUYER,
)
from invoicesync_dagster_tests.efactura import samples

BUCHAREST = ZoneInfo("Europe/Bucharest")
MONTH = "2026-10-01"
LOGGED_IN = datetime(2026, 10, 1, 0, 0, tzinfo=BUCHAREST)
FILED = datetime(2026, 10, 20, 10, 0, tzinfo=BUCHAREST)
RECONCILED = datetime(2026, 11, 1, 4, 0, tzinfo=BUCHAREST)  # the schedule's tick for October
ISSUED = date(2026, 10, 20)


@dataclass
class World:
    sandbox: SandboxServer
    home: Path
    database: Path
    resources: dict[str, Any]
    client: EfacturaClient  # what the submission asset would upload with
    monkeypatch: pytest.MonkeyPatch

    def at(self, moment: datetime) -> None:
        self.sandbox.clock.set(int(moment.timestamp()))

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.sandbox.clock.now(), UTC)

    def calls(self, operation: str) -> int:
        log = self.sandbox.requests.snapshot()["log"]
        return sum(entry["path"] == f"/test/FCTEL/rest/{operation}" for entry in log)

    def sql(self, query: str, parameters: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.database)) as connection:
            return connection.execute(query, parameters or []).fetchall()


@pytest.fixture
def world(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox: SandboxServer
) -> Iterator[World]:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    settings = {
        **COMPANY,
        "INVOICESYNC_HOME": str(home),
        "ANAF_ENABLED": "true",
        "ANAF_CLIENT_ID": SANDBOX_CLIENT.client_id,
        "ANAF_CLIENT_SECRET": SANDBOX_CLIENT.client_secret,
        "ANAF_REDIRECT_URI": SANDBOX_CLIENT.redirect_uri,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    sandbox.clock.set(int(LOGGED_IN.timestamp()))  # the fake's tokens last 90 days from here
    sandbox.anaf_efactura.processing_seconds = 300
    sandbox.registry.add_records([{"date_generale": {"cui": int(KNOWN_BUYER)}}])
    sandbox_login(sandbox.url, SANDBOX_CLIENT, home / "anaf_tokens.json")
    url = sandbox.url
    resources = {
        "warehouse": WarehouseResource(database=str(tmp_path / "w.duckdb")),
        "anaf": AnafResource(
            api_base=url, public_base=url, oauth_base=url, staging=True, timeout_s=5
        ),
    }
    with resources["anaf"].client() as client:
        yield World(sandbox, home, tmp_path / "w.duckdb", resources, client, monkeypatch)


def upload(
    world: World, number: str, issued: date = ISSUED, xml: bytes | None = None, **fields: Any
) -> str:
    """Upload a sample document (or `xml`) to the fake; its index. The books are not told."""
    due = issued + timedelta(days=30)
    document = build_document(
        samples.draft(number=number, issue_date=issued, due_date=due, **fields)
    )
    return world.client.upload(xml or xml_bytes(document), cif=SELLER_CUI).index


def file(
    world: World, number: str, issued: date = ISSUED, xml: bytes | None = None, **fields: Any
) -> dict[str, Any]:
    """What efactura_submissions does: the attempt recorded, uploaded, its index recorded (with
    the sandbox's time as `sent_at`). Returns its `anaf_uploads` entry."""
    document_id = f"stripe_invoice:in_{number}"
    with connect(world.database) as connection:
        connection.execute(
            "INSERT INTO efactura_documents (document_id, source_type, source_id, partition_date, "
            "kind, invoice_number, issue_date, currency, status, stripe_amount, errors, warnings, "
            "notes, built_at) VALUES (?, 'stripe_invoice', ?, ?, 'invoice', ?, ?, 'RON', "
            "'submitting', 121, '[]', '[]', '[]', now())",
            [document_id, f"in_{number}", issued, number, issued],
        )
        submissions.begin(connection, document_id, "anaf", 1, number, None)
    index = upload(world, number, issued, xml, **fields)
    with connect(world.database) as connection:
        submissions.mark_sent(connection, document_id, "anaf", 1, index)
        connection.execute(
            "UPDATE efactura_submissions SET sent_at = ? WHERE upload_index = ?",
            [world.now(), index],
        )
        connection.execute(
            "UPDATE efactura_documents SET status = 'submitted' WHERE document_id = ?",
            [document_id],
        )
    return {
        "index": index,
        "document_id": document_id,
        "attempt": 1,
        "invoice_number": number,
        "issue_date": issued.isoformat(),
        "uploaded_at": world.now().isoformat(),
    }


def follow(world: World, uploads: list[dict[str, Any]]) -> None:
    """The status job records ANAF's answers ten minutes later (five of processing)."""
    world.at(datetime.fromisoformat(uploads[-1]["uploaded_at"]) + timedelta(minutes=10))
    run = status.efactura_status_job.execute_in_process(
        run_config=status.run_config_for(uploads, render_pdf=False), resources=world.resources
    )
    assert run.success
    with connect(world.database) as connection:  # the books' clock is the sandbox's
        connection.execute(
            "UPDATE efactura_submissions SET final_at = ? WHERE final_at IS NOT NULL "
            "AND upload_index IN (SELECT unnest(?::VARCHAR[]))",
            [world.now(), [u["index"] for u in uploads]],
        )


def reconcile(world: World, when: datetime = RECONCILED) -> dg.ExecuteInProcessResult:
    world.at(when)
    world.monkeypatch.setattr(reconciliation, "_now", lambda: when.astimezone(UTC))
    return dg.materialize(
        [reconciliation.efactura_reconciliation],
        partition_key=MONTH,
        resources=world.resources,
        raise_on_error=False,
    )


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = result.asset_materializations_for_node("efactura_reconciliation")
    return {name: value.value for name, value in event.metadata.items()}


def check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "reconciliation_clean"
    return evaluation


def findings(world: World) -> list[dict[str, Any]]:
    columns = ("document_id", "invoice_number", "upload_index", "our_state", "anaf_state",
               "finding", "fix", "repaired")  # fmt: skip
    rows = world.sql(
        f"SELECT {', '.join(columns)} FROM efactura_reconciliation WHERE month = DATE '{MONTH}' "
        "ORDER BY finding, upload_index"
    )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def books(world: World, number: str) -> tuple[str, str, str | None]:
    """(attempt state, document status, archive path) of the document numbered `number`."""
    ((state, document_status, path),) = world.sql(
        "SELECT s.state, d.status, s.archive_path FROM efactura_submissions s "
        "JOIN efactura_documents d USING (document_id) WHERE s.invoice_number = ?",
        [number],
    )
    return state, document_status, path


# -- the reconciliation ---------------------------------------------------------------------------


def test_a_clean_month_has_no_findings_and_every_page_is_read(world: World) -> None:
    world.sandbox.anaf_efactura.page_size = 2  # four messages: two pages
    world.at(datetime(2026, 10, 1, 2, 15, tzinfo=BUCHAREST))  # September's last day, filed
    september = file(world, "FCT-2026-000090", date(2026, 9, 30))  # on 1 October: not ours
    world.at(FILED)
    october = [
        september,
        file(world, "FCT-2026-000101"),
        file(world, "FCT-2026-000102"),
        file(world, "FCT-2026-000103", buyer=UNKNOWN_BUYER),  # nok: ERORI FACTURA
        file(world, "FCT-2026-000104", xml=b"<Invoice>not closed"),  # never listed
    ]
    follow(world, october)
    assert [books(world, f"FCT-2026-00010{n}")[0] for n in range(1, 5)] == [
        "accepted", "accepted", "rejected", "rejected",
    ]  # fmt: skip
    downloads = world.calls("descarcare")

    result = reconcile(world)
    assert result.success
    seen = metadata(result)
    assert seen["findings"] == {} and seen["open_findings"] == 0
    assert (seen["uploads"], seen["verified"], seen["unverifiable"]) == (4, 4, 0)
    assert (seen["messages_read"], seen["anaf_list_calls"]) == (4, 2)
    assert (seen["anaf_status_calls"], seen["anaf_downloads"]) == (0, 0)
    assert seen["anaf_window"] == "2026-10-01 00:00 to 2026-11-01 03:59 Europe/Bucharest"
    assert world.calls("listaMesajePaginatieFactura") == 2
    assert world.calls("descarcare") == downloads
    assert check(result).passed
    assert findings(world) == []


def test_an_answer_the_books_missed_is_recorded_and_archived(world: World) -> None:
    world.at(FILED)
    missed = file(world, "FCT-2026-000201")  # the status follow-up never ran for these
    unreadable = file(world, "FCT-2026-000202", xml=b"<Invoice>not closed")  # never listed
    world.at(RECONCILED - timedelta(hours=2))
    late = file(world, "FCT-2026-000203", date(2026, 10, 31))  # filed on the 1st at 02:00
    world.at(RECONCILED - timedelta(minutes=2))
    processing = file(world, "FCT-2026-000204", date(2026, 10, 31))  # ANAF not done yet

    result = reconcile(world)
    assert result.success and check(result).passed
    assert books(world, "FCT-2026-000201") == (
        "accepted",
        "accepted",
        f"archive/2026/10/FCT-2026-000201_{missed['index']}.zip",
    )
    zip_path = world.home / "archive/2026/10" / f"FCT-2026-000201_{missed['index']}.zip"
    assert zip_path.read_bytes().startswith(b"PK")
    assert zip_path.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
    assert books(world, "FCT-2026-000202")[:2] == ("rejected", "rejected")
    assert books(world, "FCT-2026-000203")[:2] == ("accepted", "accepted")
    assert books(world, "FCT-2026-000204")[:2] == ("sent", "submitted")
    rows = findings(world)
    assert [(r["upload_index"], r["anaf_state"], r["finding"], r["repaired"]) for r in rows] == [
        (missed["index"], "ok", "answer_recorded", True),
        (unreadable["index"], "rejected_xml", "answer_recorded", True),
        (late["index"], "ok", "answer_recorded", True),
    ]
    assert rows[0]["fix"].startswith("Recorded accepted from ANAF's answer (ok)")
    seen = metadata(result)
    assert (seen["answers_recorded"], seen["waiting_for_anaf"]) == (3, 1)
    assert (seen["anaf_status_calls"], seen["anaf_downloads"]) == (3, 2)
    assert world.calls("stareMesaj") == 3 and world.calls("descarcare") == 2
    assert processing["index"] not in str(seen["findings_preview"])


def test_a_final_state_anaf_contradicts_is_a_finding_and_is_kept(world: World) -> None:
    world.at(FILED)
    entry = file(world, "FCT-2026-000301", buyer=UNKNOWN_BUYER)
    follow(world, [entry])
    assert books(world, "FCT-2026-000301")[:2] == ("rejected", "rejected")
    # Someone "fixes" the books by hand.
    world.sql("UPDATE efactura_submissions SET state = 'accepted'")
    world.sql("UPDATE efactura_documents SET status = 'accepted'")

    result = reconcile(world)
    assert result.success
    evaluation = check(result)
    assert not evaluation.passed and evaluation.severity is dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["open_findings"].value == 1
    assert evaluation.metadata["by_kind"].value == {"accepted_but_rejected_at_anaf": 1}
    assert "SPV" in str(evaluation.metadata["how_to_fix"].value)
    (row,) = findings(world)
    assert row == {
        "document_id": "stripe_invoice:in_FCT-2026-000301",
        "invoice_number": "FCT-2026-000301",
        "upload_index": entry["index"],
        "our_state": "accepted",
        "anaf_state": "ERORI FACTURA",
        "finding": "accepted_but_rejected_at_anaf",
        "fix": reconciliation.FIXES["accepted_but_rejected_at_anaf"],
        "repaired": False,
    }
    assert books(world, "FCT-2026-000301")[:2] == ("accepted", "accepted")  # never overwritten
    assert entry["index"] in str(metadata(result)["findings_preview"])

    again = reconcile(world)  # a re-run replaces the month's rows
    assert again.success and len(findings(world)) == 1


def test_an_upload_the_books_do_not_know_is_a_finding(world: World) -> None:
    world.at(FILED)
    file(world, "FCT-2026-000401")  # ours (and creates the warehouse)
    by_hand = upload(world, "FCT-2026-000402")  # made in SPV: the books never hear of it
    world.at(RECONCILED - timedelta(hours=3))
    upload(world, "FCT-2026-000403", date(2026, 11, 1))  # November's, for November's run

    result = reconcile(world)
    assert result.success and not check(result).passed
    unknown = [r for r in findings(world) if r["finding"] == "unknown_upload"]
    assert [(r["upload_index"], r["document_id"], r["our_state"], r["anaf_state"])
            for r in unknown] == [(by_hand, None, None, "FACTURA TRIMISA")]  # fmt: skip
    assert f"cif_emitent={SELLER_CUI}" in unknown[0]["fix"] and not unknown[0]["repaired"]
    assert metadata(result)["findings"]["unknown_upload"] == 1


def test_a_missing_archive_zip_is_downloaded_again_while_anaf_keeps_it(world: World) -> None:
    world.at(FILED)
    entry = file(world, "FCT-2026-000501")
    follow(world, [entry])
    path = world.home / books(world, "FCT-2026-000501")[2]  # type: ignore[operator]
    signed = path.read_bytes()
    path.unlink()
    downloads = world.calls("descarcare")

    result = reconcile(world)
    assert result.success and check(result).passed
    assert path.read_bytes() == signed
    assert world.calls("descarcare") == downloads + 1
    ((finding, repaired),) = [(r["finding"], r["repaired"]) for r in findings(world)]
    assert (finding, repaired) == ("archive_restored", True)

    # 66 days after the upload ANAF no longer has it, nor lists it: a finding for a person.
    path.unlink()
    late = reconcile(world, FILED + timedelta(days=66))
    assert late.success and not check(late).passed
    (row,) = findings(world)
    assert (row["finding"], row["anaf_state"], row["repaired"]) == (
        "archive_missing",
        "expired",
        False,
    )
    assert "60 de zile" in row["fix"] and not path.exists()
    seen = metadata(late)
    assert (seen["verified"], seen["unverifiable"]) == (0, 1)


def test_anaf_limits_are_reported_and_nothing_is_lost(world: World) -> None:
    world.at(FILED)
    first = file(world, "FCT-2026-000601")
    second = file(world, "FCT-2026-000602")
    faults = world.sandbox.anaf_efactura.faults

    faults.update({"http_429": 1, "operation": "listaMesajePaginatieFactura"})
    refused = reconcile(world)
    assert not refused.success
    (failure,) = [e for e in refused.all_events if e.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert "limit" in description and "re-run the partition tomorrow" in description
    assert findings(world) == [] and books(world, "FCT-2026-000601")[0] == "sent"

    faults.update({"http_429": 1, "operation": "stareMesaj"})
    limited = reconcile(world)
    assert limited.success and not check(limited).passed
    assert "limit" in metadata(limited)["stopped"]
    rows = {r["upload_index"]: r for r in findings(world)}
    assert rows[first["index"]]["finding"] == rows[second["index"]]["finding"] == "check_failed"
    assert "Not asked" in rows[second["index"]]["fix"]  # no call after the limit
    assert world.calls("stareMesaj") == 1
    assert [books(world, f"FCT-2026-00060{n}")[0] for n in (1, 2)] == ["sent", "sent"]

    assert reconcile(world).success  # once ANAF answers again
    assert [r["finding"] for r in findings(world)] == ["answer_recorded", "answer_recorded"]


# -- the schedule ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    return defs()


def tick(definitions: dg.Definitions, when: datetime) -> list[dg.RunRequest]:
    schedule = definitions.resolve_schedule_def("monthly_reconciliation_schedule")
    context = dg.build_schedule_context(
        scheduled_execution_time=when, repository_def=definitions.get_repository_def()
    )
    requests = list(schedule.evaluate_tick(context).run_requests or [])
    job = definitions.resolve_job_def("monthly_reconciliation_job")
    for request in requests:
        dg.validate_run_config(job, request.run_config)
    return requests


def test_the_monthly_schedule_reconciles_the_previous_month(definitions: dg.Definitions) -> None:
    schedule = definitions.resolve_schedule_def("monthly_reconciliation_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == (
        "0 4 1 * *",
        "Europe/Bucharest",
    )
    assert schedule.job_name == "monthly_reconciliation_job"
    assert schedule.default_status is dg.DefaultScheduleStatus.STOPPED
    job = definitions.resolve_job_def("monthly_reconciliation_job")
    assert job.tags["invoicesync/duckdb"] == "writer"
    (request,) = tick(definitions, datetime(2026, 12, 1, 4, 0, tzinfo=BUCHAREST))
    assert request.partition_key == "2026-11-01"
    # Around the DST changes: 1 November is the first tick on winter time (UTC+2) after the
    # change of 25 October, 1 April the first on summer time (UTC+3).
    (autumn,) = tick(definitions, datetime(2026, 11, 1, 2, 0, tzinfo=UTC))
    assert autumn.partition_key == "2026-10-01"
    (spring,) = tick(definitions, datetime(2026, 4, 1, 1, 0, tzinfo=UTC))
    assert spring.partition_key == "2026-03-01"
    # January reconciles December of the year before.
    (january,) = tick(definitions, datetime(2027, 1, 1, 4, 0, tzinfo=BUCHAREST))
    assert january.partition_key == "2026-12-01"


def test_the_asset_and_its_check_explain_themselves(definitions: dg.Definitions) -> None:
    assets = definitions.resolve_assets_def("efactura_reconciliation")
    spec = assets.specs_by_key[dg.AssetKey("efactura_reconciliation")]
    assert spec.group_name == "efactura_filing" and spec.owners == ["team:billing"]
    assert set(spec.kinds) == {"anaf", "duckdb"} and spec.description
    (check_spec,) = assets.check_specs
    assert check_spec.name == "reconciliation_clean"
    assert all(f"{kind}: {fix}" in (check_spec.description or "")
               for kind, fix in reconciliation.FIXES.items())  # fmt: skip
