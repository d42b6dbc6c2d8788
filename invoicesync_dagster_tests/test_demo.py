"""`make demo` end to end (smaller: DEMO_ARGS), as a subprocess, on throw-away data folders."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_end_to_end_offline(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("STRIPE_API_BASE", "MAKEFLAGS")}
    env["INVOICESYNC_HOME"] = str(tmp_path / "home")
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    done = subprocess.run(
        ["make", "--no-print-directory", "demo", "DEMO_ARGS=--days 3 --invoices-per-day 6"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Filed 3 days" in done.stdout
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
            "SELECT count(*) FILTER (WHERE status = 'accepted' AND invoice_number IS NOT NULL), "
            "count(*) FILTER (WHERE xml IS NOT NULL AND invoice_number IS NULL) "
            "FROM efactura_documents"
        ).fetchone()
        (documents, accepted, rejected, waiting) = connection.execute(  # type: ignore[misc]
            "SELECT (SELECT count(*) FROM efactura_documents WHERE xml IS NOT NULL), "
            "count(*) FILTER (WHERE state = 'accepted'), "
            "count(*) FILTER (WHERE state = 'rejected'), "
            "count(*) FILTER (WHERE state NOT IN ('accepted', 'rejected')) "
            "FROM efactura_submissions WHERE provider = 'anaf'"
        ).fetchone()
        archived = connection.execute(
            "SELECT archive_path FROM efactura_submissions WHERE state IN ('accepted', 'rejected')"
        ).fetchall()
    assert ready > 0 and unnumbered == 0
    # Every numbered document went to the sandbox's ANAF once and its answer was followed to the
    # end: the refused buyer's documents rejected, the rest accepted, each answer archived.
    assert accepted + rejected == documents and waiting == 0
    assert accepted > 0 and rejected > 0
    assert all(path and (tmp_path / "home" / path).is_file() for (path,) in archived)
    assert "Rejected by ANAF, for example" in done.stdout
    assert "R6.2: CIF-ul cumparatorului nu figureaza" in done.stdout
    assert f"{len(archived)} ANAF zips" in done.stdout
    assert "v_documents_to_fix" in done.stdout and "invoicesync export" in done.stdout
    assert "make dev" in done.stdout and "duckdb -readonly" in done.stdout
    # The runs are in DAGSTER_HOME, where `make dev` shows them: one per day, then the status job.
    runs = sorted((tmp_path / "dagster_home" / "history" / "runs").glob("*.db"))
    assert len(runs) >= 4
    assert days == (3,)
    assert orphans == (0,)  # every invoice's buyer was fetched
