"""`make demo`'s program end to end, as a subprocess, on a throw-away data folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb


def test_demo_runs_end_to_end_offline(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "STRIPE_API_BASE")}
    env["INVOICESYNC_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoicesync_dagster.demo",
            "--days",
            "3",
            "--invoices-per-day",
            "6",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Synced 3 days" in done.stdout
    assert "DuckDB file:" in done.stdout
    database = tmp_path / "home" / "invoicesync.duckdb"
    with duckdb.connect(str(database), read_only=True) as connection:
        days = connection.execute(
            "SELECT count(DISTINCT created_date) FROM stripe_invoices"
        ).fetchone()
        orphans = connection.execute(
            "SELECT count(*) FROM stripe_invoices i LEFT JOIN stripe_customers c "
            "ON c.id = i.customer WHERE c.id IS NULL"
        ).fetchone()
        ready, unnumbered = connection.execute(  # type: ignore[misc]
            "SELECT count(*) FILTER (WHERE status = 'submitted' AND invoice_number IS NOT NULL), "
            "count(*) FILTER (WHERE xml IS NOT NULL AND invoice_number IS NULL) "
            "FROM efactura_documents"
        ).fetchone()
        (documents, filed) = connection.execute(  # type: ignore[misc]
            "SELECT (SELECT count(*) FROM efactura_documents WHERE xml IS NOT NULL), "
            "(SELECT count(DISTINCT document_id) FROM efactura_submissions "
            "WHERE provider = 'anaf' AND state = 'sent' AND upload_index IS NOT NULL)"
        ).fetchone()
    assert ready > 0 and unnumbered == 0
    assert filed == documents  # every numbered document went to ANAF's sandbox, once
    assert "Filed: " in done.stdout
    assert "v_documents_to_fix" in done.stdout and "invoicesync export" in done.stdout
    assert days == (3,)
    assert orphans == (0,)  # every invoice's buyer was fetched
