"""The outbox table: attempts recorded before sending, answers after, on a real DuckDB file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from invoicesync_dagster.efactura.submission import AttemptState, NextStep, decide
from invoicesync_dagster.warehouse import submissions
from invoicesync_dagster.warehouse.database import connect

DOC = "stripe_invoice:in_1"


def test_an_attempt_is_on_disk_before_sending_and_answers_follow(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    with connect(database) as connection:
        submissions.begin(connection, DOC, "anaf", 1, "INV-2026-000001", "abc")
    # A crash here: a new process sees the attempt and must reconcile, not send.
    with connect(database) as connection:
        found = submissions.attempts(connection, [DOC], "anaf")[DOC]
        assert [(a.attempt, a.state) for a in found] == [(1, AttemptState.SENDING)]
        assert decide(found, "abc").step is NextStep.RECONCILE
        submissions.mark_sent(connection, DOC, "anaf", 1, "5001")
        submissions.mark_final(
            connection, DOC, "anaf", 1, accepted=False, download_id="9001",
            errors=["E: R6.1 CIF-ul cumparatorului nu figureaza"], archive_path="a/5001.zip",
        )  # fmt: skip
        submissions.begin(connection, DOC, "anaf", 2, "INV-2026-000001", "def")
        submissions.mark_sent(connection, DOC, "anaf", 2, "5002")
        submissions.mark_final(connection, DOC, "anaf", 2, accepted=True, download_id="9002")
        rows = connection.execute(
            "SELECT attempt, state, upload_index, errors FROM efactura_submissions ORDER BY 1"
        ).fetchall()
        status = connection.execute(
            "SELECT filing_state, attempt, upload_index FROM v_invoice_status"
        ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [(1, "rejected", "5001"), (2, "accepted", "5002")]
    assert json.loads(rows[0][3]) == ["E: R6.1 CIF-ul cumparatorului nu figureaza"]
    assert status == []  # the view lists documents; none was built in this test


def test_the_same_attempt_cannot_be_recorded_twice(tmp_path: Path) -> None:
    with connect(tmp_path / "w.duckdb") as connection:
        submissions.begin(connection, DOC, "anaf", 1, "INV-2026-000001", "abc")
        with pytest.raises(submissions.AttemptConflict, match="another run"):
            submissions.begin(connection, DOC, "anaf", 1, "INV-2026-000001", "abc")
        with pytest.raises(KeyError, match="no attempt 7"):
            submissions.mark_sent(connection, DOC, "anaf", 7, "1")
        submissions.mark_unknown(connection, DOC, "anaf", 1, "timeout after the upload was sent")
        (state,) = connection.execute("SELECT state FROM efactura_submissions").fetchone()  # type: ignore[misc]
    assert state == "unknown"
