"""`make demo`: the whole product on the local sandbox, with no credentials and no network.

Seeds realistic Stripe data for the last DAYS days, serves Stripe, ANAF (registry, OAuth,
e-Factura), SmartBill and BNR on 127.0.0.1, logs in to the sandbox's ANAF, runs
`daily_invoice_job` for every seeded day (Stripe → buyer profiles → documents → filing), then
follows ANAF's answers the way `anaf_status_sensor` does until every upload is final, and prints
a summary. The runs are recorded in DAGSTER_HOME, so `make dev` shows them.

Time is the one thing the demo bends: the sandbox's ANAF takes 60 s of *its* clock to process an
upload and the sensor waits 1, 2, 5 ... minutes between checks, so the follow-up moves the
sandbox clock and the sensor's clock forward one sensor interval per tick instead of waiting.
To show a rejection, the sandbox's ANAF refuses the first company buyer it is asked about, as if
that company had just been struck off the register.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from tabulate import tabulate

SANDBOX_ENV = Path(__file__).resolve().parent.parent / "sandbox.dotenv"
# The demo prints its own summary; Dagster's step-by-step debug log stays in the run history.
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SENSOR_INTERVAL = timedelta(seconds=60)  # anaf_status_sensor's minimum_interval_seconds
MAX_TICKS = 240  # four hours of sensor ticks: far more than the sandbox ever needs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m invoicesync_dagster.demo")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--invoices-per-day", type=int, default=15)
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
        for name in ("STRIPE_API_BASE", "ANAF_PUBLIC_API_BASE", "ANAF_API_BASE", "ANAF_OAUTH_BASE"):
            os.environ[name] = server.url
        os.environ["SMARTBILL_API_BASE"] = server.url
        os.environ["BNR_RATES_URL"] = f"{server.url}/bnr/nbrfxrates.xml"
        # The sandbox clock stands still while the days are filed and moves with the sensor ticks.
        server.clock.set(int(time.time()))
        refused = _refuse_first_company_buyer(server)
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
        print(f"Sandbox serving Stripe, ANAF, SmartBill and BNR on {server.url}")
        definitions = defs()
        job = definitions.resolve_job_def("daily_invoice_job")
        # The seeder's last day: yesterday in Bucharest (not the machine's date: near midnight
        # Bucharest is already a day ahead of UTC).
        last_day = seed.yesterday_in_bucharest()
        days = [last_day - timedelta(days=n) for n in reversed(range(args.days))]
        instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
        with instance or dg.DagsterInstance.ephemeral() as dagster_instance:
            print("daily_invoice_job (Stripe → buyers → documents → ANAF), oldest day first")
            for day in days:
                result = job.execute_in_process(
                    partition_key=day.isoformat(),
                    instance=dagster_instance,
                    raise_on_error=False,
                    run_config=_QUIET,
                )
                state = "ok" if result.success else "FAILED"
                print(f"  {day}  {state}  (run {result.run_id[:8]})")
                if not result.success:
                    return 1
            filed = time.monotonic()
            print(f"Filed {len(days)} days in {filed - started:.0f} s; following ANAF's answers")
            ticks, runs = _follow_answers(definitions, dagster_instance, server, settings)
            print(
                f"  {ticks} sensor ticks ({ticks} sandbox minutes), {runs} efactura_status_job "
                f"runs, {time.monotonic() - filed:.0f} s"
            )
    print(f"Done in {time.monotonic() - started:.0f} s")
    database = load_settings().duckdb_path
    _summary(database, home, refused[0] if refused else None)
    return 1 if _waiting_at_anaf(database) else 0


def _refuse_first_company_buyer(server: Any) -> list[str]:
    """Make the sandbox's ANAF reject every document for the first company buyer it checks."""
    anaf = server.anaf_efactura
    refused: list[str] = []

    def buyer_known(cui: str) -> bool:
        if not refused:
            refused.append(cui)
        if cui in refused:
            return False
        today = datetime.fromtimestamp(server.clock.now(), UTC).date()
        return server.registry.record_for(int(cui), today) is not None

    anaf.buyer_known = buyer_known
    return refused


def _follow_answers(definitions: Any, instance: Any, server: Any, settings: Any) -> tuple[int, int]:
    """anaf_status_sensor's ticks on the sandbox clock until no upload is waiting at ANAF."""
    from invoicesync_dagster.defs.efactura.status import plan_tick, run_config_for

    job = definitions.resolve_job_def("efactura_status_job")
    log = _PrintLog()
    cursor: str | None = None
    now = datetime.now(UTC)  # the uploads were stamped with the real time
    runs = 0
    for tick in range(1, MAX_TICKS + 1):
        now += SENSOR_INTERVAL
        server.clock.set(int(now.timestamp()))
        to_check, cursor = plan_tick(instance, cursor, now, log)  # type: ignore[arg-type]
        if to_check:
            runs += 1
            result = job.execute_in_process(
                instance=instance,
                raise_on_error=False,
                run_config=_QUIET | run_config_for(t.as_upload() for t in to_check),
            )
            if not result.success:
                print(f"  efactura_status_job run {result.run_id[:8]} FAILED")
        if not _waiting_at_anaf(settings.duckdb_path):
            return tick, runs
    print(f"  still waiting after {MAX_TICKS} ticks: see SELECT * FROM v_invoice_status")
    return MAX_TICKS, runs


class _PrintLog:
    """The few logger methods plan_tick uses, printed."""

    def error(self, message: str) -> None:
        print(f"  sensor: {message}")

    warning = info = error


def _waiting_at_anaf(database: Path) -> int:
    from invoicesync_dagster.warehouse.database import connect

    with connect(database, read_only=True) as connection:
        (count,) = connection.execute(  # type: ignore[misc]
            "SELECT count(*) FROM efactura_submissions WHERE provider = 'anaf' AND state = 'sent'"
        ).fetchone()
    return int(count)


def _summary(database: Path, home: Path, refused_cui: str | None) -> None:
    from invoicesync_dagster.warehouse.database import connect

    with connect(database, read_only=True) as connection:
        per_day = connection.execute(
            """
            SELECT s.partition_date AS day,
                   (SELECT count(*) FROM stripe_invoices i WHERE i.created_date = s.partition_date),
                   (SELECT count(*) FROM stripe_charges c WHERE c.created_date = s.partition_date),
                   count(*) FILTER (WHERE s.invoice_number IS NOT NULL AND s.kind = 'invoice'),
                   count(*) FILTER (WHERE s.invoice_number IS NOT NULL
                                    AND s.kind = 'credit_note'),
                   count(*) FILTER (WHERE s.filing_state = 'accepted'),
                   count(*) FILTER (WHERE s.filing_state = 'rejected'),
                   count(*) FILTER (WHERE s.filing_state NOT IN ('accepted', 'rejected')
                                    AND s.invoice_number IS NOT NULL),
                   count(*) FILTER (WHERE s.document_status IN ('held', 'blocked')),
                   min(s.invoice_number) || ' .. ' || max(s.invoice_number)
            FROM v_invoice_status s
            GROUP BY s.partition_date ORDER BY s.partition_date
            """
        ).fetchall()
        rejected = connection.execute(
            """
            SELECT s.invoice_number, d.buyer_name, d.buyer_cui, s.errors
            FROM efactura_submissions s JOIN efactura_documents d USING (document_id)
            WHERE s.provider = 'anaf' AND s.state = 'rejected'
            ORDER BY s.invoice_number LIMIT 1
            """
        ).fetchone()
        held = connection.execute("SELECT count(*) FROM v_documents_to_fix").fetchone()
    totals = [sum(row[i] or 0 for row in per_day) for i in range(1, 9)]
    print()
    print(
        tabulate(
            [*per_day, ["total", *totals, ""]],
            headers=[
                "day",
                "Stripe invoices",
                "Stripe charges",
                "e-invoices",
                "credit notes",
                "accepted",
                "rejected",
                "not final",
                "held/blocked",
                "numbers",
            ],
        )
    )
    print()
    if rejected:
        number, buyer, cui, errors = rejected
        print(f"Rejected by ANAF, for example {number} to {buyer} (CUI {cui}):")
        for error in _json_list(errors):
            print("  " + " ".join(error.split()))
        print(
            "  (the sandbox's ANAF refused this buyer on purpose. For a real rejection: fix the "
            "cause, rebuild the day; the document is filed again with the same number)"
        )
    elif refused_cui:
        print(f"The sandbox's ANAF refused buyer CUI {refused_cui}, but no document was rejected")
    if held and held[0]:
        print(f"{held[0]} documents held or blocked locally: SELECT * FROM v_documents_to_fix")
    archive = home / "archive"
    zips = sorted(archive.rglob("*.zip")) if archive.exists() else []
    pdfs = sorted(archive.rglob("*.pdf")) if archive.exists() else []
    print()
    print(f"Archive:     {archive}  ({len(zips)} ANAF zips, {len(pdfs)} PDFs, by issue month)")
    if zips:
        print(f"             e.g. {zips[0].relative_to(home)}")
    print(f"DuckDB file: {database}")
    query = "SELECT filing_state, count(*) FROM v_invoice_status GROUP BY 1"
    print(f'Query it:    .venv/bin/duckdb -readonly {database} "{query}"')
    if per_day:
        print(
            f"XML files:   .venv/bin/invoicesync export --start-date {per_day[0][0]} "
            f"--end-date {per_day[-1][0]} --dir ./einvoices"
        )
    print("Open the UI: make dev   (then http://127.0.0.1:3000)")


def _json_list(value: Any) -> list[str]:
    items = json.loads(value) if isinstance(value, str) else value
    return [str(item) for item in items or []]


if __name__ == "__main__":
    sys.exit(main())
