"""The `invoicesync` command line (ARCHITECTURE.md §3).

Every command exits non-zero on failure, prints a short human summary, and `--output FILE`
writes JSON or CSV, chosen by the file's extension.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from pydantic import ValidationError
from tabulate import tabulate

from invoicesync_dagster.settings import Settings, SettingsError, load_settings

BUCHAREST = ZoneInfo("Europe/Bucharest")
# Stripe amounts are in the currency's minor unit; these currencies have none.
_ZERO_DECIMAL = {
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "JPY",
    "KMF",
    "KRW",
    "MGA",
    "PYG",
    "RWF",
    "UGX",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
}


class CliError(click.ClickException):
    """An expected failure: printed as one clear message, exit status 1."""


def main() -> None:
    cli(prog_name="invoicesync")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Stripe billing → Romanian e-Factura (ANAF) and SmartBill, with a DuckDB warehouse."""


# --- helpers -------------------------------------------------------------------------------


def _settings(*need: str) -> Settings:
    try:
        return load_settings(need=need)
    except SettingsError as error:
        raise CliError(str(error)) from None


def _yesterday() -> date:
    return datetime.now(BUCHAREST).date() - timedelta(days=1)


def _day_window(start: date, end: date) -> tuple[int, int]:
    """Bucharest days start..end inclusive, as unix seconds (DST days are 23 h or 25 h)."""
    if end < start:
        raise CliError(f"--end-date {end} is before --start-date {start}")
    first = datetime.combine(start, datetime.min.time(), BUCHAREST)
    after = datetime.combine(end + timedelta(days=1), datetime.min.time(), BUCHAREST)
    return int(first.timestamp()), int(after.timestamp())


def _money(minor: int | None, currency: str) -> str:
    if minor is None:
        return ""
    if currency.upper() in _ZERO_DECIMAL:
        return f"{minor}"
    return f"{minor / 100:.2f}"


def _when(unix: int | None) -> str:
    return datetime.fromtimestamp(unix, BUCHAREST).strftime("%Y-%m-%d %H:%M") if unix else ""


def emit(rows: Sequence[dict[str, Any]], output: Path | None, *, title: str) -> None:
    """Rows as a table on stdout, or as JSON/CSV in `output` (by extension)."""
    if output is None:
        if rows:
            click.echo(tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True))
        click.echo(f"{len(rows)} {title}")
        return
    suffix = output.suffix.lower()
    if suffix == ".json":
        output.write_text(json.dumps(list(rows), indent=2, ensure_ascii=False, default=str) + "\n")
    elif suffix == ".csv":
        with output.open("w", newline="", encoding="utf-8") as sink:
            writer = csv.DictWriter(sink, fieldnames=list(rows[0]) if rows else [])
            writer.writeheader()
            writer.writerows(rows)
    else:
        raise CliError(f"--output {output}: use a .json or .csv file name")
    click.echo(f"{len(rows)} {title} written to {output}")


_output_option = click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result to FILE.json or FILE.csv instead of printing a table.",
)


# --- stripe ----------------------------------------------------------------------------------


@cli.group()
def stripe() -> None:
    """Look at Stripe data directly (read-only)."""


def _stripe_listing(
    resource: str, row: Callable[[dict[str, Any]], dict[str, Any]]
) -> Callable[..., None]:
    def command(
        start_date: datetime | None,
        end_date: datetime | None,
        status: str | None,
        customer_id: str | None,
        output: Path | None,
    ) -> None:
        from invoicesync_dagster.clients.stripe import StripeError, StripeReader

        settings = _settings("stripe")
        end = end_date.date() if end_date else _yesterday()
        start = start_date.date() if start_date else end
        window = _day_window(start, end)
        params = {k: v for k, v in (("status", status), ("customer", customer_id)) if v}
        assert settings.stripe_api_key is not None
        reader = StripeReader(
            settings.stripe_api_key.get_secret_value(),
            settings.stripe_api_base,
            concurrency=settings.stripe_fetch_concurrency,
        )
        objects: list[dict[str, Any]] = []
        try:
            with click.progressbar(
                length=0, label=f"Fetching {resource}", file=sys.stderr, show_pos=True
            ) as bar:
                for page in reader.list_window(resource, *window, params=params):
                    objects.extend(page)
                    bar.update(len(page))
        except StripeError as error:
            raise CliError(str(error)) from None
        objects.sort(key=lambda obj: (obj["created"], obj["id"]), reverse=True)
        emit([row(obj) for obj in objects], output, title=f"{resource} from {start} to {end}")

    return command


def _invoice_row(invoice: dict[str, Any]) -> dict[str, Any]:
    currency = invoice["currency"].upper()
    transitions = invoice.get("status_transitions") or {}
    return {
        "id": invoice["id"],
        "number": invoice.get("number"),
        "created": _when(invoice["created"]),
        "status": invoice.get("status"),
        "customer": invoice.get("customer"),
        "customer_name": invoice.get("customer_name"),
        "currency": currency,
        "total": _money(invoice.get("total"), currency),
        "paid_at": _when(transitions.get("paid_at")),
    }


def _charge_row(charge: dict[str, Any]) -> dict[str, Any]:
    currency = charge["currency"].upper()
    return {
        "id": charge["id"],
        "created": _when(charge["created"]),
        "status": charge.get("status"),
        "customer": charge.get("customer"),
        "description": charge.get("description"),
        "currency": currency,
        "amount": _money(charge.get("amount"), currency),
        "refunded": _money(charge.get("amount_refunded"), currency),
    }


def _listing_options(statuses: Iterable[str]) -> Callable[[Callable[..., None]], Any]:
    def decorate(function: Callable[..., None]) -> Any:
        options = [
            click.option(
                "--start-date",
                type=click.DateTime(["%Y-%m-%d"]),
                help="First day (Europe/Bucharest), default: --end-date.",
            ),
            click.option(
                "--end-date",
                type=click.DateTime(["%Y-%m-%d"]),
                help="Last day, inclusive (default: yesterday).",
            ),
            click.option("--status", type=click.Choice(list(statuses))),
            click.option("--customer-id", help="Only this Stripe customer (cus_…)."),
            _output_option,
        ]
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


stripe.command("invoices", help="Stripe invoices created in a date range.")(
    _listing_options(["draft", "open", "paid", "uncollectible", "void"])(
        _stripe_listing("invoices", _invoice_row)
    )
)
stripe.command("charges", help="Stripe charges created in a date range.")(
    _listing_options(["succeeded", "pending", "failed"])(_stripe_listing("charges", _charge_row))
)


# --- sandbox ---------------------------------------------------------------------------------


@cli.group()
def sandbox() -> None:
    """Local fakes of Stripe (and later ANAF, SmartBill, BNR) on 127.0.0.1, and test data."""


@sandbox.command("serve")
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option(
    "--stripe-fixtures",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Stripe objects to load, one JSON object per line.",
)
@click.option(
    "--latency-ms",
    type=int,
    default=0,
    show_default=True,
    help="Delay added to every request, to make benchmarks realistic.",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the chosen port to this file once listening (for scripts).",
)
def sandbox_serve(
    port: int, stripe_fixtures: Path | None, latency_ms: int, port_file: Path | None
) -> None:
    """Serve the sandbox until interrupted (Ctrl-C)."""
    from invoicesync_dagster.sandbox.server import SandboxServer
    from invoicesync_dagster.sandbox.stripe_fake import FixtureError

    try:
        server = SandboxServer(port=port, latency_ms=latency_ms, stripe_fixtures=stripe_fixtures)
    except (FixtureError, OSError) as error:
        raise CliError(f"sandbox not started: {error}") from None
    click.echo(f"Sandbox listening on {server.url}  (STRIPE_API_BASE={server.url})", err=True)
    if port_file:
        port_file.write_text(str(server.port))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@sandbox.command("seed")
@click.option("--days", type=click.IntRange(1, 3660), required=True)
@click.option("--seed", "seed_value", type=int, default=7, show_default=True)
@click.option("--invoices-per-day", type=click.IntRange(0), default=20, show_default=True)
@click.option("--charges-per-day", type=click.IntRange(0), default=5, show_default=True)
@click.option(
    "--end-date",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Last seeded day (default: yesterday, Europe/Bucharest).",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
def sandbox_seed(
    days: int,
    seed_value: int,
    invoices_per_day: int,
    charges_per_day: int,
    end_date: datetime | None,
    output: Path,
) -> None:
    """Write realistic Stripe fixtures (JSONL) for the DAYS days ending yesterday."""
    from invoicesync_dagster.sandbox import seed

    objects = seed.generate(
        days,
        seed=seed_value,
        invoices_per_day=invoices_per_day,
        charges_per_day=charges_per_day,
        end_date=end_date.date() if end_date else None,
    )
    counts = seed.write_jsonl(output, objects)
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    click.echo(f"Wrote {output}: {summary}")


# --- doctor ----------------------------------------------------------------------------------


@cli.command()
def doctor() -> None:
    """Check configuration, the DuckDB warehouse and that Stripe answers."""
    from invoicesync_dagster.clients.stripe import StripeError, StripeReader
    from invoicesync_dagster.warehouse.database import WarehouseLocked, connect

    failures = 0

    def report(ok: bool, what: str, detail: str) -> None:
        nonlocal failures
        failures += not ok
        click.echo(f"[{'ok' if ok else 'FAIL'}] {what}: {detail}")

    settings: Settings | None
    try:
        settings = load_settings(need=["stripe", "company"])
        report(
            True, "configuration", f"company {settings.company_name} (CUI {settings.company_cui})"
        )
    except SettingsError as error:
        report(
            False,
            "configuration",
            "\n" + "\n".join(f"    {name}: {message}" for name, message in error.problems.items()),
        )
        try:
            settings = Settings()
        except ValidationError:
            settings = None
    if settings is None:
        click.echo("Fix the configuration first: the other checks need it.")
        raise SystemExit(1)

    path = settings.duckdb_path
    if not path.exists():
        report(True, "warehouse", f"{path} does not exist yet (created by the first run)")
    else:
        try:
            with connect(path, read_only=True) as connection:
                tables = connection.execute(
                    "SELECT table_name, estimated_size FROM duckdb_tables() ORDER BY table_name"
                ).fetchall()
            report(True, "warehouse", f"{path}: " + ", ".join(f"{t} ({n})" for t, n in tables))
        except WarehouseLocked as error:
            report(False, "warehouse", str(error))

    if settings.stripe_api_key is not None:
        reader = StripeReader(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)
        try:
            next(iter(reader.list_all("customers", limit=1)), None)
            report(True, "stripe", f"{settings.stripe_api_base} answers")
        except StripeError as error:
            report(False, "stripe", str(error))
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
