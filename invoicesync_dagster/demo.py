"""`make demo`: the pipeline end to end on the local sandbox, with no credentials and no network.

Seeds realistic Stripe data for the last DAYS days, serves it on 127.0.0.1, runs the Stripe
sync job for every seeded day (the runs are recorded in DAGSTER_HOME, so `make dev` shows them)
and prints what landed in DuckDB.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from dotenv import dotenv_values
from tabulate import tabulate

SANDBOX_ENV = Path(__file__).resolve().parent.parent / "sandbox.dotenv"
# The demo prints its own summary; Dagster's step-by-step debug log stays in the run history.
# In order: the customers' profiles need the day's Stripe data.
DAILY_JOBS = ("stripe_sync_job", "customer_profiles_job", "efactura_job")
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m invoicesync_dagster.demo")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--invoices-per-day", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    # The sandbox settings win over any .env: the demo must never reach a real service.
    for name, value in dotenv_values(SANDBOX_ENV).items():
        os.environ[name] = value or ""
    home = Path(os.environ.setdefault("INVOICESYNC_HOME", ".invoicesync")).resolve()
    os.environ["INVOICESYNC_HOME"] = str(home)

    import dagster as dg

    from invoicesync_dagster.definitions import defs
    from invoicesync_dagster.sandbox import seed
    from invoicesync_dagster.sandbox.anaf_oauth_fake import RegisteredClient, sandbox_login
    from invoicesync_dagster.sandbox.server import SandboxServer
    from invoicesync_dagster.settings import load_settings

    fixtures = home / "sandbox" / "stripe.jsonl"
    fixtures.parent.mkdir(parents=True, exist_ok=True)
    counts = seed.write_jsonl(
        fixtures, seed.generate(args.days, seed=args.seed, invoices_per_day=args.invoices_per_day)
    )
    print(
        f"Seeded {args.days} days into {fixtures}: "
        + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    )

    started = time.monotonic()
    with SandboxServer(stripe_fixtures=fixtures) as server:
        # Every outside service goes to the sandbox: nothing leaves 127.0.0.1.
        os.environ["STRIPE_API_BASE"] = server.url
        os.environ["ANAF_PUBLIC_API_BASE"] = server.url
        os.environ["BNR_RATES_URL"] = f"{server.url}/bnr/nbrfxrates.xml"
        os.environ["ANAF_API_BASE"] = server.url
        os.environ["ANAF_OAUTH_BASE"] = server.url
        settings = load_settings(need=["anaf"])
        assert settings.anaf_client_secret is not None  # checked by load_settings
        sandbox_login(
            server.url,
            RegisteredClient(
                settings.anaf_client_id or "",
                settings.anaf_client_secret.get_secret_value(),
                settings.anaf_redirect_uri,
            ),
            settings.anaf_token_store_path,
        )
        print(f"Sandbox serving Stripe, ANAF (registry, OAuth, e-Factura) and BNR on {server.url}")
        definitions = defs()
        jobs = [definitions.resolve_job_def(name) for name in DAILY_JOBS]
        # The seeder's last day: yesterday in Bucharest (not the machine's date: near midnight
        # Bucharest is already a day ahead of UTC).
        last_day = seed.yesterday_in_bucharest()
        days = [last_day - timedelta(days=n) for n in reversed(range(args.days))]
        instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
        with instance or dg.DagsterInstance.ephemeral() as dagster_instance:
            for day in days:
                for job in jobs:
                    result = job.execute_in_process(
                        partition_key=day.isoformat(),
                        instance=dagster_instance,
                        raise_on_error=False,
                        run_config=_QUIET,
                    )
                    state = "ok" if result.success else "FAILED"
                    print(f"  {day}  {job.name:<22} {state}  (run {result.run_id[:8]})")
                    if not result.success:
                        return 1
    print(f"Synced {len(days)} days in {time.monotonic() - started:.1f} s")
    _summary(load_settings().duckdb_path)
    return 0


def _summary(database: Path) -> None:
    from invoicesync_dagster.warehouse.database import connect

    with connect(database, read_only=True) as connection:
        rows = connection.execute(
            """
            SELECT created_date AS day,
                   count(*) AS invoices,
                   count(*) FILTER (WHERE status = 'paid') AS paid,
                   string_agg(DISTINCT currency, ' ' ORDER BY currency) AS currencies,
                   (SELECT count(*) FROM stripe_charges c WHERE c.created_date = i.created_date)
                       AS charges,
                   (SELECT count(*) FROM stripe_refunds r WHERE r.created_date = i.created_date)
                       AS refunds
            FROM stripe_invoices i GROUP BY created_date ORDER BY created_date
            """
        ).fetchall()
        classes = connection.execute(
            "SELECT classification, count(*), count(*) FILTER (WHERE submission_blocked), "
            "count(*) FILTER (WHERE inactive) FROM customer_tax_profiles GROUP BY 1 ORDER BY 1"
        ).fetchall()
        blocked = connection.execute(
            "SELECT stripe_name, block_reason FROM customer_tax_profiles "
            "WHERE submission_blocked ORDER BY stripe_name LIMIT 3"
        ).fetchall()
        documents = connection.execute(
            """
            SELECT partition_date AS day,
                   count(*) FILTER (WHERE number IS NOT NULL AND kind = 'invoice') AS invoices,
                   count(*) FILTER (WHERE number IS NOT NULL AND kind = 'credit_note')
                       AS credit_notes,
                   count(*) FILTER (WHERE status = 'held') AS held,
                   count(*) FILTER (WHERE status = 'blocked') AS blocked,
                   min(invoice_number) || ' .. ' || max(invoice_number) AS numbers
            FROM efactura_documents GROUP BY partition_date ORDER BY partition_date
            """
        ).fetchall()
        filed = connection.execute(
            "SELECT provider, state, count(*) FROM efactura_submissions GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        names = connection.execute(
            "SELECT table_name FROM duckdb_tables() ORDER BY table_name"
        ).fetchall()
        totals = [
            (name, connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])  # type: ignore[index]
            for (name,) in names
        ]
    print()
    print(tabulate(rows, headers=["day", "invoices", "paid", "currencies", "charges", "refunds"]))
    print()
    print(tabulate(classes, headers=["buyer", "customers", "blocked (invalid CUI)", "inactive"]))
    for name, reason in blocked:
        print(f"  blocked: {name}: {reason}")
    print()
    print(
        tabulate(
            documents,
            headers=["day", "invoices", "credit notes", "held", "blocked", "numbers"],
        )
    )
    print("  held/blocked documents and what to fix: SELECT * FROM v_documents_to_fix")
    print(
        "Filed: "
        + (", ".join(f"{n} {state} ({provider})" for provider, state, n in filed) or "nothing")
        + "   (per document: SELECT * FROM v_invoice_status)"
    )
    print()
    print("Tables: " + ", ".join(f"{name} ({count})" for name, count in totals))
    print(f"DuckDB file: {database}")
    query = "SELECT status, count(*) FROM stripe_invoices GROUP BY 1"
    print(f'Query it:    .venv/bin/duckdb -readonly {database} "{query}"')
    print(
        f"XML files:   .venv/bin/invoicesync export --start-date {documents[0][0]} "
        f"--end-date {documents[-1][0]} --dir ./einvoices"
        if documents
        else ""
    )
    print("Open the UI: make dev   (then http://127.0.0.1:3000)")


if __name__ == "__main__":
    sys.exit(main())
