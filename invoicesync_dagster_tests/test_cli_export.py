"""`invoicesync export`: numbered documents from DuckDB into SERIES-YEAR-NUMBER.xml files."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from invoicesync_dagster.cli import cli
from invoicesync_dagster.efactura.documents import DocumentStatus
from invoicesync_dagster.sandbox import seed
from invoicesync_dagster.sandbox.offline_documents import build_documents
from invoicesync_dagster.warehouse.database import connect
from invoicesync_dagster.warehouse.documents import document_row, replace_documents

LAST_DAY = date(2025, 8, 6)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A warehouse holding the documents of three seeded days (ready, held and blocked)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INVOICESYNC_HOME", str(tmp_path / "home"))
    outcomes = list(
        build_documents(seed.generate(3, end_date=LAST_DAY, invoices_per_day=20, charges_per_day=3))
    )
    by_day: dict[date, list[dict[str, object]]] = {}
    for outcome in outcomes:
        by_day.setdefault(outcome.issue_date, []).append(
            document_row(outcome, outcome.issue_date, classification=None,
                         built_at=datetime.now(UTC))
        )  # fmt: skip
    with connect(tmp_path / "home" / "invoicesync.duckdb") as connection:
        for day, rows in by_day.items():
            replace_documents(connection, day, rows)
    assert set(DocumentStatus) == {o.status for o in outcomes}
    return tmp_path / "home"


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_export_writes_each_numbered_document_and_lists_the_rest(
    home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    report = tmp_path / "report.json"
    output = run(
        "export", "--start-date", "2025-08-04", "--end-date", str(LAST_DAY), "--dir", str(out),
        "--output", str(report),
    )  # fmt: skip

    with connect(home / "invoicesync.duckdb", read_only=True) as connection:
        expected = dict(
            connection.execute(
                "SELECT invoice_number, xml FROM efactura_documents WHERE status = 'ready'"
            ).fetchall()
        )
        waiting = connection.execute(
            "SELECT document_id FROM efactura_documents WHERE status <> 'ready'"
        ).fetchall()
    files = {path.stem: path.read_bytes() for path in out.glob("*.xml")}
    assert files == {name: xml.encode("utf-8") for name, xml in expected.items()}
    assert all(name.startswith("INV-2025-") for name in files)
    assert f"{len(files)} documents of 2025-08-04..{LAST_DAY} written" in output
    assert f"{len(waiting)} documents are held or blocked" in output
    rows = json.loads(report.read_text())
    assert len(rows) == len(files) + len(waiting)
    unexported = [r for r in rows if not r["file"]]
    assert unexported and all(r["to_fix"] for r in unexported)


def test_export_of_days_without_documents_writes_nothing(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    output = run("export", "--start-date", "2024-01-01", "--end-date", "2024-01-31",
                 "--dir", str(out))  # fmt: skip
    assert "0 documents of 2024-01-01..2024-01-31 written" in output
    assert list(out.iterdir()) == []


def test_export_names_a_missing_warehouse_and_bad_dates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INVOICESYNC_HOME", str(tmp_path / "nowhere"))
    args = ["export", "--start-date", "2025-08-02", "--end-date", "2025-08-01", "--dir", "o"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "before --start-date" in result.output
    args[4] = "2025-08-03"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "No warehouse at" in result.output
