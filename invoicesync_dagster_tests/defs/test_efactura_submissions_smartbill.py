"""`efactura_submissions` with SmartBill as the provider, against its fake over loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from invoicesync_dagster.defs.resources import SmartBillResource
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster_tests.defs.test_efactura_documents import Day
from invoicesync_dagster_tests.defs.test_efactura_submissions import SUBMIT, day_of_documents

Materialize = Callable[..., dg.ExecuteInProcessResult]


@pytest.fixture
def smartbill_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTBILL_ENABLED", "true")
    monkeypatch.setenv("SMARTBILL_USERNAME", "facturare@exemplu.ro")
    monkeypatch.setenv("SMARTBILL_TOKEN", "sandbox-smartbill-token")
    monkeypatch.setenv("SMARTBILL_SERIES", "FCT")


def states(database: Path) -> list[tuple[object, ...]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute(
            "SELECT provider, attempt, state, upload_index FROM efactura_submissions ORDER BY 4"
        ).fetchall()


@pytest.mark.usefixtures("smartbill_on")
def test_each_document_becomes_one_smartbill_invoice(
    materialize: Materialize, sandbox: SandboxServer, tmp_path: Path
) -> None:
    day_of_documents(Day(sandbox), materialize, count=2)
    first = materialize(SUBMIT)
    assert first.success
    (event,) = first.asset_materializations_for_node("efactura_submissions")
    assert event.metadata["smartbill_invoices"].value == ["FCT0001", "FCT0002"]
    ledger = sandbox.smartbill.ledger_entries()
    assert [(e["series"], e["number"], e["kind"]) for e in ledger] == [
        ("FCT", "0001", "invoice"), ("FCT", "0002", "invoice"),
    ]  # fmt: skip
    database = tmp_path / "w.duckdb"
    assert states(database) == [
        ("smartbill", 1, "accepted", "FCT0001"), ("smartbill", 1, "accepted", "FCT0002"),
    ]  # fmt: skip
    assert materialize(SUBMIT).success
    assert len(sandbox.smartbill.ledger_entries()) == 2  # never created twice


@pytest.mark.usefixtures("smartbill_on")
def test_a_lost_answer_is_matched_by_the_number_smartbill_gave(
    materialize: Materialize, sandbox: SandboxServer, tmp_path: Path
) -> None:
    day_of_documents(Day(sandbox), materialize, count=1)
    sandbox.smartbill.delay_create_answers(3.0)
    impatient = SmartBillResource(api_base=sandbox.url, timeout_s=0.5)
    result = materialize(SUBMIT, smartbill=impatient)
    assert result.success
    database = tmp_path / "w.duckdb"
    assert states(database) == [("smartbill", 1, "unknown", "FCT0001")]
    assert len(sandbox.smartbill.ledger_entries()) == 1

    assert materialize(SUBMIT).success
    assert states(database) == [("smartbill", 1, "accepted", "FCT0001")]
    assert len(sandbox.smartbill.ledger_entries()) == 1  # found, not created again


@pytest.mark.usefixtures("smartbill_on")
def test_both_providers_at_once_is_refused(
    materialize: Materialize, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    day_of_documents(Day(sandbox), materialize, count=1)
    monkeypatch.setenv("ANAF_ENABLED", "true")
    result = materialize(SUBMIT)
    assert not result.success
    assert sandbox.smartbill.ledger_entries() == []
