"""The ANAF status follow-up: sensor ticks over a test instance's event log, the status job over
the sandbox (OAuth + e-Factura fakes, loopback) into a real DuckDB file, the failed-runs log."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import dagster as dg
import pytest

from invoicesync_dagster.clients.anaf.efactura import EfacturaClient
from invoicesync_dagster.defs.efactura import status
from invoicesync_dagster.defs.resources import AnafResource, WarehouseResource
from invoicesync_dagster.efactura.model import build_document
from invoicesync_dagster.efactura.ubl import xml_bytes
from invoicesync_dagster.sandbox.anaf_oauth_fake import SANDBOX_CLIENT, sandbox_login
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster.warehouse import submissions
from invoicesync_dagster.warehouse.database import connect
from invoicesync_dagster_tests.efactura import samples

# Near real time: the token provider judges the sandbox's token expiry by the real clock.
T0 = datetime.now(UTC).replace(second=0, microsecond=0)
SELLER_CUI = "12345674"  # the seller of the samples
KNOWN_BUYER = "8486152"
UNKNOWN_BUYER = samples.RO_COMPANY.model_copy(
    update={"vat_id": "RO18547290", "tax_registration_id": "18547290"}
)
PARTITION = "2025-08-05"
COMPANY = {
    "COMPANY_NAME": "Exemplu Software S.R.L.",
    "COMPANY_CUI": f"RO{SELLER_CUI}",
    "COMPANY_ADDRESS_STREET": "Strada Exemplului 10",
    "COMPANY_ADDRESS_CITY": "SECTOR1",
    "COMPANY_ADDRESS_COUNTY": "RO-B",
}


@dataclass
class World:
    sandbox: SandboxServer
    home: Path
    database: Path
    instance: dg.DagsterInstance
    resources: dict[str, Any]
    client: EfacturaClient  # for what the submission asset would upload
    monkeypatch: pytest.MonkeyPatch

    def at(self, moment: datetime) -> None:
        """Both clocks: ANAF's (processing) and the sensor's (back-off)."""
        self.sandbox.clock.set(int(moment.timestamp()))
        self.monkeypatch.setattr(status, "_now", lambda: moment)

    def requests(self, operation: str) -> list[str]:
        """The ids asked for in each call of `operation` (stareMesaj, descarcare)."""
        log = self.sandbox.requests.snapshot()["log"]
        return [
            next(iter(parse_qs(entry["query"]).values()))[0]
            for entry in log
            if entry["path"] == f"/test/FCTEL/rest/{operation}"
        ]


@pytest.fixture
def world(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox: SandboxServer
) -> Iterator[World]:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    settings = {
        **COMPANY,
        "INVOICESYNC_HOME": str(home),
        "ANAF_CLIENT_ID": SANDBOX_CLIENT.client_id,
        "ANAF_CLIENT_SECRET": SANDBOX_CLIENT.client_secret,
        "ANAF_REDIRECT_URI": SANDBOX_CLIENT.redirect_uri,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    sandbox.clock.set(int(T0.timestamp()))
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
    with dg.instance_for_test() as instance, resources["anaf"].client() as client:
        world = World(
            sandbox, home, tmp_path / "w.duckdb", instance, resources, client, monkeypatch
        )
        world.at(T0)
        yield world


def file_with_anaf(
    world: World, number: str, *, buyer: Any = None, xml: bytes | None = None
) -> dict[str, Any]:
    """Upload one document as the submission asset does, and return its `anaf_uploads` entry."""
    fields = {"number": number} | ({"buyer": buyer} if buyer else {})
    document = build_document(samples.draft(**fields))
    body = xml if xml is not None else xml_bytes(document)
    document_id = f"stripe_invoice:in_{number}"
    with connect(world.database) as connection:
        connection.execute(
            "INSERT INTO efactura_documents (document_id, source_type, source_id, partition_date, "
            "kind, invoice_number, issue_date, currency, status, stripe_amount, errors, warnings, "
            "notes, built_at) VALUES (?, 'stripe_invoice', ?, ?, 'invoice', ?, ?, 'RON', "
            "'submitting', 121, '[]', '[]', '[]', now())",
            [document_id, f"in_{number}", PARTITION, number, document.issue_date],
        )
        submissions.begin(connection, document_id, "anaf", 1, number, None)
    receipt = world.client.upload(body, cif=SELLER_CUI)
    with connect(world.database) as connection:
        submissions.mark_sent(connection, document_id, "anaf", 1, receipt.index)
        connection.execute(
            "UPDATE efactura_documents SET status = 'submitted' WHERE document_id = ?",
            [document_id],
        )
    return {
        "index": receipt.index,
        "document_id": document_id,
        "attempt": 1,
        "invoice_number": number,
        "issue_date": document.issue_date.isoformat(),
        "uploaded_at": datetime.fromtimestamp(world.sandbox.clock.now(), UTC).isoformat(),
    }


def report_uploads(world: World, uploads: list[dict[str, Any]]) -> None:
    world.instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "efactura_submissions",
            partition=PARTITION,
            metadata={"anaf_uploads": dg.MetadataValue.json(uploads)},
        )
    )


def tick(world: World, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=world.instance, cursor=cursor)
    result = status.anaf_status_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def requested(result: dg.SensorResult) -> list[str]:
    """The upload indexes of the tick's run request ([] when it skipped)."""
    assert len(result.run_requests or []) <= 1
    if not result.run_requests:
        return []
    config = result.run_requests[0].run_config["ops"][status.OP_NAME]["config"]
    return [upload["index"] for upload in config["uploads"]]


def execute(world: World, run_config: Any) -> dg.ExecuteInProcessResult:
    return status.efactura_status_job.execute_in_process(
        run_config=run_config,
        instance=world.instance,
        resources=world.resources,
        raise_on_error=False,
    )


def observed(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [event] = result.get_asset_observation_events()
    observation = event.asset_observation_data.asset_observation
    assert observation.asset_key == status.STATUS
    return {name: value.value for name, value in observation.metadata.items()}


def outbox(world: World) -> dict[str, tuple[Any, ...]]:
    """invoice number → (attempt state, document status, download id, errors, archive path)."""
    with connect(world.database) as connection:
        rows = connection.execute(
            "SELECT s.invoice_number, s.state, d.status, s.download_id, s.errors, s.archive_path "
            "FROM efactura_submissions s JOIN efactura_documents d USING (document_id)"
        ).fetchall()
    return {row[0]: (row[1], row[2], row[3], json.loads(row[4]), row[5]) for row in rows}


def pending(cursor: str) -> dict[str, Any]:
    return json.loads(cursor)["pending"]


# -- the whole follow-up ------------------------------------------------------------------------


def test_follow_up_from_processing_to_accepted_and_rejected(world: World) -> None:
    good = file_with_anaf(world, "FCT-2025-000201")
    bad = file_with_anaf(world, "FCT-2025-000202", buyer=UNKNOWN_BUYER)
    broken = file_with_anaf(world, "FCT-2025-000203", xml=b"<Invoice>not closed")
    report_uploads(world, [good, bad, broken])
    indexes = [good["index"], bad["index"], broken["index"]]

    world.at(T0 + timedelta(seconds=30))  # nothing is due before a minute has passed
    first = tick(world, None)
    assert requested(first) == [] and sorted(pending(first.cursor)) == sorted(indexes)

    world.at(T0 + timedelta(minutes=1))
    second = tick(world, first.cursor)
    assert sorted(requested(second)) == sorted(indexes)
    run = execute(world, second.run_requests[0].run_config)
    assert run.success
    seen = observed(run)
    assert sorted(seen["still_processing"]) == sorted([good["index"], bad["index"]])
    assert [(f["index"], f["state"], f["anaf"]) for f in seen["final"]] == [
        (broken["index"], "rejected", "rejected_xml")
    ]
    states = outbox(world)
    assert states["FCT-2025-000201"][:2] == ("sent", "submitted")
    assert states["FCT-2025-000203"][:2] == ("rejected", "rejected")
    assert "nepreluat de sistem" in states["FCT-2025-000203"][3][0]
    stare = world.home / states["FCT-2025-000203"][4]
    assert stare.name == f"FCT-2025-000203_{broken['index']}_stare.xml" and stare.exists()

    # The back-off: checked at +1 min, next at +3 min, then +8 min.
    world.at(T0 + timedelta(minutes=2))
    third = tick(world, second.cursor)
    assert requested(third) == []
    assert sorted(pending(third.cursor)) == sorted([good["index"], bad["index"]])
    world.at(T0 + timedelta(minutes=3))
    fourth = tick(world, third.cursor)
    assert sorted(requested(fourth)) == sorted([good["index"], bad["index"]])
    assert observed(execute(world, fourth.run_requests[0].run_config))["final"] == []
    world.at(T0 + timedelta(minutes=7, seconds=59))
    assert requested(tick(world, fourth.cursor)) == []

    world.at(T0 + timedelta(minutes=8))  # ANAF has answered (processing takes 5 minutes)
    fifth = tick(world, fourth.cursor)
    run = execute(world, fifth.run_requests[0].run_config)
    assert run.success
    assert {(f["index"], f["state"], f["anaf"]) for f in observed(run)["final"]} == {
        (good["index"], "accepted", "ok"),
        (bad["index"], "rejected", "nok"),
    }
    states = outbox(world)
    accepted, rejected = states["FCT-2025-000201"], states["FCT-2025-000202"]
    assert accepted[:2] == ("accepted", "accepted") and accepted[2] and accepted[3] == []
    assert rejected[:2] == ("rejected", "rejected") and rejected[2]
    assert any("18547290" in error for error in rejected[3]), rejected[3]
    month = world.home / "archive" / "2025" / "08"
    assert accepted[4] == f"archive/2025/08/FCT-2025-000201_{good['index']}.zip"
    assert sorted(p.name for p in month.iterdir()) == sorted(
        [
            f"FCT-2025-000201_{good['index']}.zip",
            f"FCT-2025-000201_{good['index']}.pdf",
            f"FCT-2025-000202_{bad['index']}.zip",
            f"FCT-2025-000203_{broken['index']}_stare.xml",
        ]
    )
    assert (month / f"FCT-2025-000201_{good['index']}.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(world.requests("descarcare")) == sorted([accepted[2], rejected[2]])

    # The next tick reads the finals from the event log: nothing is left to check.
    world.at(T0 + timedelta(hours=3))
    last = tick(world, fifth.cursor)
    assert requested(last) == [] and pending(last.cursor) == {}

    # Checking again (a repeated run) records nothing twice and asks ANAF nothing.
    status_calls = len(world.requests("stareMesaj"))
    again = execute(world, fifth.run_requests[0].run_config)
    assert again.success
    assert {f["anaf"] for f in observed(again)["final"]} == {"recorded earlier"}
    assert len(world.requests("stareMesaj")) == status_calls
    assert len(world.requests("descarcare")) == 2
    assert outbox(world) == states


def test_an_upload_listed_twice_keeps_its_back_off(world: World) -> None:
    entry = {
        "index": "5000000999",
        "document_id": "stripe_invoice:in_x",
        "attempt": 1,
        "invoice_number": "FCT-2025-000300",
        "issue_date": "2025-08-05",
        "uploaded_at": T0.isoformat(),
    }
    report_uploads(world, [entry, entry])
    world.at(T0 + timedelta(minutes=1))
    first = tick(world, None)
    assert requested(first) == ["5000000999"]
    report_uploads(world, [entry])  # e.g. a re-run that reconciled it again
    second = tick(world, first.cursor)
    assert requested(second) == []
    assert pending(second.cursor)["5000000999"]["checks"] == 1


def test_no_new_status_run_while_one_is_still_queued(world: World) -> None:
    entry = {
        "index": "5000000998",
        "document_id": "stripe_invoice:in_q",
        "attempt": 1,
        "invoice_number": "FCT-2025-000301",
        "issue_date": "2025-08-05",
        "uploaded_at": T0.isoformat(),
    }
    report_uploads(world, [entry])
    world.at(T0 + timedelta(minutes=1))
    queued = world.instance.create_run_for_job(  # waiting behind a backfill's writer runs
        status.efactura_status_job,
        run_config=status.run_config_for([entry]),
        status=dg.DagsterRunStatus.NOT_STARTED,
    )
    context = dg.build_sensor_context(instance=world.instance, cursor=None)
    skipped = status.anaf_status_sensor(context)
    assert isinstance(skipped, dg.SkipReason)
    assert queued.run_id in (skipped.skip_message or "")
    world.instance.report_run_canceled(queued)  # the queue moves on: the next tick asks again
    assert requested(tick(world, None)) == ["5000000998"]


def test_a_tick_requests_at_most_n_checks_the_longest_waiting_first(world: World) -> None:
    uploads = [
        {
            "index": str(5000001000 + n),
            "document_id": f"stripe_invoice:in_{n}",
            "attempt": 1,
            "invoice_number": f"FCT-2025-{n:06d}",
            "issue_date": "2025-08-05",
            "uploaded_at": (T0 + timedelta(seconds=n)).isoformat(),
        }
        for n in range(status.MAX_CHECKS_PER_RUN + 5)
    ]
    report_uploads(world, uploads)
    world.at(T0 + timedelta(minutes=2))
    first = tick(world, None)
    assert requested(first) == [u["index"] for u in uploads[: status.MAX_CHECKS_PER_RUN]]
    second = tick(world, first.cursor)
    assert requested(second) == [u["index"] for u in uploads[status.MAX_CHECKS_PER_RUN :]]
    assert requested(tick(world, second.cursor)) == []
    assert first.run_requests[0].run_key != second.run_requests[0].run_key
    assert len(pending(second.cursor)) == len(uploads)


def test_a_limit_stops_the_run_and_a_failed_check_does_not(world: World) -> None:
    uploads = [file_with_anaf(world, f"FCT-2025-00040{n}") for n in range(3)]
    world.at(T0 + timedelta(minutes=6))  # all processed
    config = status.run_config_for(uploads)

    world.sandbox.anaf_efactura.faults.update({"http_429": 1, "operation": "stareMesaj"})
    limited = execute(world, config)
    assert limited.success  # a limit is expected: reported, retried later by the sensor
    seen = observed(limited)
    assert seen["not_checked"] == [u["index"] for u in uploads] and seen["final"] == []
    assert "limit" in seen["stopped"]
    assert len(world.requests("stareMesaj")) == 1

    world.sandbox.anaf_efactura.faults.update({"waf": 1})
    partial = execute(world, config)
    assert not partial.success  # the failed check fails the run, after the others were done
    seen = observed(partial)
    assert [f["index"] for f in seen["failed"]] == [uploads[0]["index"]]
    assert "firewall" in seen["failed"][0]["error"]
    assert sorted(f["index"] for f in seen["final"]) == sorted(u["index"] for u in uploads[1:])
    states = outbox(world)
    assert [states[u["invoice_number"]][0] for u in uploads] == ["sent", "accepted", "accepted"]

    # The failed-runs sensor keeps a line for it, without secrets.
    run = world.instance.get_run_by_id(partial.run_id)
    assert run is not None
    context = dg.build_run_status_sensor_context(
        sensor_name="failed_runs_sensor",
        dagster_event=partial.get_run_failure_event(),
        dagster_instance=world.instance,
        dagster_run=run,
    ).for_run_failure()
    status.failed_runs_sensor(context)
    lines = (world.home / "failed_runs.jsonl").read_text().splitlines()
    [line] = [json.loads(text) for text in lines]
    assert line["run_id"] == partial.run_id and line["job"] == "efactura_status_job"
    assert uploads[0]["index"] in line["error"] and "check_anaf_status" in line["error"]
    tokens = json.loads((world.home / "anaf_tokens.json").read_text())
    assert all(str(secret) not in lines[0] for secret in tokens.values() if len(str(secret)) > 20)


def test_an_answer_already_archived_is_not_downloaded_again(world: World) -> None:
    upload = file_with_anaf(world, "FCT-2025-000500")
    world.at(T0 + timedelta(minutes=6))
    # A run that archived the zip and died before recording it.
    answer = world.client.download(world.client.status(upload["index"]).download_id or "")
    month = world.home / "archive" / "2025" / "08"
    month.mkdir(parents=True)
    (month / f"FCT-2025-000500_{upload['index']}.zip").write_bytes(answer.content)

    run = execute(world, status.run_config_for([upload], render_pdf=False))
    assert run.success
    assert [f["state"] for f in observed(run)["final"]] == ["accepted"]
    assert len(world.requests("descarcare")) == 1
    assert outbox(world)["FCT-2025-000500"][:2] == ("accepted", "accepted")


def test_an_upload_unknown_to_the_warehouse_is_reported_and_dropped(world: World) -> None:
    file_with_anaf(world, "FCT-2025-000600")  # creates the warehouse
    stranger = {
        "index": "5000009999",
        "document_id": "stripe_invoice:in_nobody",
        "attempt": 1,
        "invoice_number": "FCT-2025-000601",
        "issue_date": "2025-08-05",
        "uploaded_at": T0.isoformat(),
    }
    report_uploads(world, [stranger])
    world.at(T0 + timedelta(minutes=1))
    first = tick(world, None)
    run = execute(world, first.run_requests[0].run_config)
    assert run.success
    assert [u["index"] for u in observed(run)["unknown"]] == ["5000009999"]
    assert world.requests("stareMesaj") == []
    assert pending(tick(world, first.cursor).cursor) == {}


def test_redact_removes_tokens_and_keys() -> None:
    text = (
        "Authorization: Bearer abc.def-ghi refresh_token=r3fr3sh client_secret: s3cr3t "
        "key sk_live_123abc jwt eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl kept"
    )
    cleaned = status.redact(text)
    for secret in ("abc.def-ghi", "r3fr3sh", "s3cr3t", "sk_live_123abc", "eyJhbGciOi"):
        assert secret not in cleaned
    assert cleaned.endswith("kept")


def test_failed_runs_sensor_names_the_cause_of_a_crashed_step(world: World) -> None:
    upload = file_with_anaf(world, "FCT-2025-000700")
    world.monkeypatch.delenv("ANAF_CLIENT_SECRET")
    crashed = execute(world, status.run_config_for([upload]))
    assert not crashed.success
    run = world.instance.get_run_by_id(crashed.run_id)
    assert run is not None
    context = dg.build_run_status_sensor_context(
        sensor_name="failed_runs_sensor",
        dagster_event=crashed.get_run_failure_event(),
        dagster_instance=world.instance,
        dagster_run=run,
    ).for_run_failure()
    status.failed_runs_sensor(context)
    [line] = (world.home / "failed_runs.jsonl").read_text().splitlines()
    error = json.loads(line)["error"]
    assert error.startswith("check_anaf_status: ") and "ANAF_CLIENT_SECRET" in error
