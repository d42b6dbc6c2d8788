"""The `invoicesync` command line (ARCHITECTURE.md §3).

Every command exits non-zero on failure, prints a short human summary, and `--output FILE`
writes JSON or CSV, chosen by the file's extension.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click
from pydantic import ValidationError
from tabulate import tabulate

from invoicesync_dagster.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:  # imported lazily below: the CLI starts fast
    from invoicesync_dagster.clients.anaf.oauth import AnafOAuthClient
    from invoicesync_dagster.clients.anaf_registry import RegistryAnswer
    from invoicesync_dagster.efactura.customers import BuyerProfile, StripeCustomer
    from invoicesync_dagster.efactura.mappings import Mappings
    from invoicesync_dagster.warehouse.customers import BilledCustomer
    from invoicesync_dagster.warehouse.registry import CachedAnswer

BUCHAREST = ZoneInfo("Europe/Bucharest")
_SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,199}$")
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
    """Local fakes of Stripe, ANAF (registry, OAuth, e-Factura), SmartBill and BNR on 127.0.0.1,
    and test data."""


@sandbox.command("serve")
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option(
    "--stripe-fixtures",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Stripe objects to load, one JSON object per line.",
)
@click.option(
    "--registry-fixtures",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="ANAF registry records to serve (a JSON list of v9 `found` records), besides those "
    "derived from the Stripe customers.",
)
@click.option(
    "--latency-ms",
    type=int,
    default=0,
    show_default=True,
    help="Delay added to every request, to make benchmarks realistic.",
)
@click.option(
    "--faults",
    help='Fault rules for this run, as JSON or @FILE.json, e.g. \'{"rules": [{"path_prefix": '
    '"/v1/invoices", "status": 429, "retry_after": 2, "times": 3}]}\' (status 500, delay_ms, '
    "every_nth, probability also work; POST /_sandbox/faults changes them while running).",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the chosen port to this file once listening (for scripts).",
)
def sandbox_serve(
    port: int,
    stripe_fixtures: Path | None,
    registry_fixtures: Path | None,
    latency_ms: int,
    faults: str | None,
    port_file: Path | None,
) -> None:
    """Serve the sandbox until interrupted (Ctrl-C)."""
    from invoicesync_dagster.sandbox.server import SandboxServer
    from invoicesync_dagster.sandbox.stripe_fake import FixtureError

    try:
        text = Path(faults[1:]).read_text() if faults and faults.startswith("@") else faults
        fault_config = json.loads(text) if text else {}
        server = SandboxServer(
            port=port,
            latency_ms=latency_ms,
            stripe_fixtures=stripe_fixtures,
            registry_fixtures=registry_fixtures,
            faults=fault_config.get("rules"),
            fault_seed=fault_config.get("seed", 0),
        )
    except (FixtureError, ValueError, OSError) as error:
        raise CliError(f"sandbox not started: {error}") from None
    bases = ("STRIPE_API_BASE", "ANAF_PUBLIC_API_BASE", "ANAF_API_BASE", "ANAF_OAUTH_BASE",
             "SMARTBILL_API_BASE")  # fmt: skip
    click.echo(
        f"Sandbox listening on {server.url}  ("
        + " ".join(f"{name}={server.url}" for name in bases)
        + f" BNR_RATES_URL={server.url}/bnr/nbrfxrates.xml)",
        err=True,
    )
    if port_file:
        port_file.write_text(str(server.port))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@sandbox.command("anaf-login")
def sandbox_anaf_login() -> None:
    """Log in to the sandbox's ANAF OAuth (it approves at once, no certificate) and store the
    tokens as `invoicesync anaf login` does. Refuses anything but 127.0.0.1."""
    from invoicesync_dagster.clients.anaf.oauth import AnafOAuthError
    from invoicesync_dagster.sandbox.anaf_oauth_fake import RegisteredClient, sandbox_login

    settings = _settings("anaf")
    assert settings.anaf_client_secret is not None  # checked by _settings
    registered = RegisteredClient(
        settings.anaf_client_id or "",
        settings.anaf_client_secret.get_secret_value(),
        settings.anaf_redirect_uri,
    )
    try:
        store = settings.anaf_token_store_path
        expires = sandbox_login(settings.anaf_oauth_base, registered, store)
    except (ValueError, AnafOAuthError, OSError) as error:
        raise CliError(f"sandbox ANAF login failed: {error}") from None
    click.echo(f"Logged in to the sandbox's ANAF; the refresh token expires {expires:%Y-%m-%d}")


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


# --- customers -------------------------------------------------------------------------------


@cli.command("sync-customers")
@click.option(
    "--mappings",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The accountant's email,cui CSV (default: CUSTOMER_MAPPINGS_CSV, else "
    "$INVOICESYNC_HOME/customers.csv when it exists).",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3660),
    default=30,
    show_default=True,
    help="Customers billed (invoices or charges created) in the last N days, today included.",
)
@click.option(
    "--validate",
    is_flag=True,
    help="Also look every CUI up in ANAF's registry (legal name, address, VAT payer, "
    "inactive); without it only the check digits are checked.",
)
@_output_option
def sync_customers(mappings: Path | None, days: int, validate: bool, output: Path | None) -> None:
    """Merge the tax identity of every recently billed Stripe customer; list who lacks a CUI.

    The merged result goes to --output FILE.json|FILE.csv (or a table); the customers still
    without a valid CUI go beside it to FILE.missing.json|csv, in the mappings format: fill in
    the `cui` column and add those lines to the mappings CSV. Exits 1 when the mappings file has
    problems (each named with its line; the good lines are used).
    """
    from invoicesync_dagster.clients.stripe import StripeError
    from invoicesync_dagster.efactura.customers import (
        cui_to_look_up,
        merge_profile,
        tax_id_entries,
    )
    from invoicesync_dagster.warehouse.customers import registry_facts

    settings = _settings("stripe")
    table = _load_mappings(mappings or settings.mappings_csv_path, explicit=mappings is not None)
    today = datetime.now(BUCHAREST).date()
    first = today - timedelta(days=days - 1)
    try:
        billed, customers = _billed_customers(settings, _day_window(first, today))
    except StripeError as error:
        raise CliError(str(error)) from None
    wanted = {c.id: cui_to_look_up(c, table.for_email(c.email)) for c in customers}
    answer, fresh = _registry_answer(settings, {c for c in wanted.values() if c}, today, validate)
    profiles = [
        merge_profile(
            customer,
            table.for_email(customer.email),
            registry_facts(answer, fresh, wanted[customer.id], today),
            invoice_tax_ids=tax_id_entries(billed[customer.id].invoice_tax_ids),
        )
        for customer in customers
    ]
    rows = [
        _profile_row(p, billed[p.customer_id].invoices, full=output is not None) for p in profiles
    ]
    emit(rows, output, title=f"customers billed from {first} to {today}")
    missing = [row for p in profiles if (row := _missing_row(p, billed[p.customer_id].invoices))]
    missing_output = output.with_suffix(".missing" + output.suffix) if output else None
    emit(missing, missing_output, title="customers still without a valid CUI")
    classes = Counter(str(p.classification) for p in profiles)
    click.echo("By classification: " + ", ".join(f"{n} {k}" for k, n in sorted(classes.items())))
    if table.problems:
        count = len(table.problems)
        raise CliError(
            f"{table.file} has {count} problem{'s' if count > 1 else ''} (listed above): fix "
            f"the lines named; the {len(table.entries)} good mappings were applied"
        )


def _load_mappings(path: Path, *, explicit: bool) -> Mappings:
    from invoicesync_dagster.efactura.mappings import Mappings, parse_mappings

    if not path.exists():
        click.echo(f"No mappings file at {path}: using Stripe's tax ids only.", err=True)
        return Mappings.empty(str(path))
    table = parse_mappings(path.read_bytes(), str(path))
    how = "" if explicit else " (CUSTOMER_MAPPINGS_CSV / $INVOICESYNC_HOME)"
    click.echo(f"Read {len(table.entries)} mappings from {path}{how}.", err=True)
    for problem in table.problems:
        click.echo(f"  {problem}", err=True)
    return table


def _billed_customers(
    settings: Settings, window: tuple[int, int]
) -> tuple[dict[str, BilledCustomer], list[StripeCustomer]]:
    """The customers with a (non-draft) invoice or a charge created in the window."""
    from invoicesync_dagster.clients.stripe import StripeReader
    from invoicesync_dagster.efactura.customers import StripeCustomer
    from invoicesync_dagster.warehouse.customers import BilledCustomer

    assert settings.stripe_api_key is not None
    reader = StripeReader(
        settings.stripe_api_key.get_secret_value(),
        settings.stripe_api_base,
        concurrency=settings.stripe_fetch_concurrency,
    )
    billed: dict[str, BilledCustomer] = {}
    for page in reader.list_window("invoices", *window):
        for invoice in page:
            if invoice.get("customer") and invoice.get("status") != "draft":
                entry = billed.setdefault(
                    invoice["customer"], BilledCustomer(invoice["customer"], None)
                )
                entry.invoices.append(invoice.get("number") or invoice["id"])
                entry.invoice_tax_ids.extend(invoice.get("customer_tax_ids") or [])
    for page in reader.list_window("charges", *window):
        for charge in page:
            if charge.get("customer"):
                billed.setdefault(charge["customer"], BilledCustomer(charge["customer"], None))
                billed[charge["customer"]].charges += 1
    gone: list[str] = []
    customers = [
        StripeCustomer.from_stripe(raw)
        for raw in reader.retrieve_many(
            "customers", sorted(billed), expand=["tax_ids"], missing=gone
        )
    ]
    if gone:
        click.echo(
            f"Skipped {len(gone)} customers Stripe does not know: {', '.join(gone)}", err=True
        )
    return billed, customers


def _registry_answer(
    settings: Settings, cuis: set[str], on: date, validate: bool
) -> tuple[RegistryAnswer, dict[str, CachedAnswer]]:
    """The registry's answers (the warehouse cache, read-only, then ANAF), or none."""
    from invoicesync_dagster.clients.anaf_registry import (
        AnafRegistryClient,
        RegistryAnswer,
        RegistryError,
    )
    from invoicesync_dagster.warehouse.database import WarehouseLocked, connect
    from invoicesync_dagster.warehouse.registry import as_answer, cached

    if not validate or not cuis:
        return RegistryAnswer(), {}
    fresh: dict[str, CachedAnswer] = {}
    if settings.duckdb_path.exists():
        try:
            with connect(settings.duckdb_path, read_only=True) as connection:
                fresh = cached(connection, cuis, settings.anaf_registry_max_age_days, today=on)
        except WarehouseLocked as error:
            click.echo(f"Not using the registry cache: {error}", err=True)
    answer = as_answer(fresh.values())
    to_ask = sorted(cuis - fresh.keys())
    if to_ask:
        click.echo(
            f"Asking ANAF's registry about {len(to_ask)} CUIs ({len(fresh)} cached; at most "
            "100 per request, one request per second)…",
            err=True,
        )
        try:
            with AnafRegistryClient(settings.anaf_public_api_base) as client:
                asked = client.lookup(to_ask, on)
        except RegistryError as error:
            raise CliError(str(error)) from None
        answer.found.update(asked.found)
        answer.not_found.update(asked.not_found)
    return answer, fresh


def _profile_row(profile: BuyerProfile, invoices: list[str], *, full: bool) -> dict[str, Any]:
    if not full:
        registry = str(profile.registry_status).replace("_", " ")
        if profile.submission_blocked:
            registry += " — BLOCKED"
        return {
            "customer_id": profile.customer_id,
            "email": profile.email or "",
            "classification": str(profile.classification),
            "tax_id": profile.cui or profile.vat_number or profile.cnp or "",
            "legal_name": profile.legal_name or "",
            "registry": registry,
        }
    row = profile.model_dump(mode="json")
    row["invoices"] = invoices
    return {k: "; ".join(v) if isinstance(v, list) else v for k, v in row.items()}


def _missing_row(profile: BuyerProfile, invoices: list[str]) -> dict[str, Any] | None:
    """A line for the accountant (mappings format first: email, cui), or None if complete."""
    if profile.invalid_cui:
        problem = f"CUI {profile.cui} is invalid or unknown to ANAF"
        fix = profile.block_reason or ""
    elif profile.missing_cui:
        problem = "no CUI, but looks like a business: " + "; ".join(profile.business_signals)
        fix = "fill in the cui column and add this line to the mappings CSV"
    else:
        return None
    return {
        "email": profile.email or "",
        "cui": "",
        "name": profile.stripe_name or "",
        "customer_id": profile.customer_id,
        "invoices": "; ".join(invoices),
        "problem": problem,
        "what_to_do": fix,
    }


@cli.group()
def cui() -> None:
    """Check a CUI (Romanian company tax id) locally, or look it up in ANAF's registry."""


@cui.command("validate")
@click.argument("value", metavar="CUI")
@_output_option
def cui_validate(value: str, output: Path | None) -> None:
    """Check a CUI's format and check digit, without the network (`RO 4221306` is valid)."""
    from invoicesync_dagster.efactura.identifiers import (
        InvalidCui,
        is_valid_cnp,
        normalize_person_id,
        validate_cui,
    )

    try:
        cui_digits = validate_cui(value)
        row = {"input": value, "valid": True, "cui": cui_digits, "vat_number": f"RO{cui_digits}"}
        row["error"] = ""
    except InvalidCui as error:
        message = str(error)
        if is_valid_cnp(value):
            message += f"; {normalize_person_id(value)} is a valid CNP (a person's id), not a CUI"
        row = {"input": value, "valid": False, "cui": "", "vat_number": "", "error": message}
    if output is not None:
        emit([row], output, title="CUI checked")
    if not row["valid"]:
        raise CliError(str(row["error"]))
    click.echo(
        f"CUI {row['cui']} is valid (as a VAT number: {row['vat_number']}). Whether it exists: "
        f"invoicesync cui lookup {row['cui']}"
    )


@cui.command("lookup")
@click.argument("value", metavar="CUI")
@click.option(
    "--date",
    "on",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The day the answer is for (default: today, Europe/Bucharest); VAT status changes.",
)
@_output_option
def cui_lookup(value: str, on: datetime | None, output: Path | None) -> None:
    """What ANAF's public registry says about a company: name, address, registration number,
    VAT payer and since when, e-Factura registration, inactive."""
    from invoicesync_dagster.clients.anaf_registry import (
        AnafRegistryClient,
        RegistryError,
        registry_cui,
    )
    from invoicesync_dagster.efactura.identifiers import InvalidCui, validate_cui

    settings = _settings()
    try:
        # A bad check digit is caught here: the registry would only answer "not found".
        cui_digits = registry_cui(validate_cui(value))
    except InvalidCui as error:
        raise CliError(f"{error}; ANAF's registry was not asked") from None
    day = on.date() if on else datetime.now(BUCHAREST).date()
    try:
        with AnafRegistryClient(settings.anaf_public_api_base) as client:
            answer = client.lookup([cui_digits], day)
    except RegistryError as error:
        raise CliError(str(error)) from None
    record = answer.found.get(cui_digits)
    if record is None:
        raise CliError(
            f"ANAF's registry does not know CUI {cui_digits} on {day}: check the number with "
            "the company (its registration certificate)"
        )
    row: dict[str, Any] = {
        "cui": record.cui,
        "name": record.name,
        "address": record.address,
        "county_code": record.county_code or "",
        "registration_number": record.registration_number,
        "vat_payer": record.vat_payer,
        "vat_registered_on": record.vat_registered_on,
        "efactura_registered": record.efactura_registered,
        "inactive": record.inactive,
        "registration_status": record.registration_status,
        "phone": record.phone,
        "as_of": day,
    }
    if output is not None:
        emit([row], output, title=f"registry record for CUI {cui_digits}")
        return
    shown = [(k, _yes_no(v)) for k, v in row.items()]
    click.echo(tabulate(shown, tablefmt="plain", disable_numparse=True))


def _yes_no(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


# --- anaf ------------------------------------------------------------------------------------


@cli.group()
def anaf() -> None:
    """ANAF e-Factura access: log in once with the company's certificate, check token expiry."""


def _anaf_oauth_client(settings: Settings) -> AnafOAuthClient:
    from invoicesync_dagster.clients.anaf.oauth import AnafOAuthClient

    assert settings.anaf_client_id is not None and settings.anaf_client_secret is not None
    return AnafOAuthClient(
        settings.anaf_oauth_base,
        settings.anaf_client_id,
        settings.anaf_client_secret.get_secret_value(),
        settings.anaf_redirect_uri,
    )


def _authorization_code(pasted: str, state: str | None) -> str:
    """The code from what the user pasted: the code itself or the whole callback address."""
    from urllib.parse import parse_qs, urlsplit

    text = pasted.strip()
    if "code=" not in text and "error=" not in text:
        if not text:
            raise CliError("no authorization code given; run `invoicesync anaf login` again")
        return text
    query = {k: v[0] for k, v in parse_qs(urlsplit(text).query or text).items()}
    if "error" in query:
        raise CliError(
            f"ANAF refused the authorization ({query['error']}): check that the certificate "
            "has SPV rights for the company and that the app is registered for e-Factura"
        )
    # ANAF hands the state back; an address without one is let through (nothing to compare).
    if state is not None and query.get("state", state) != state:
        raise CliError(
            "that callback address belongs to another login attempt (its state differs); "
            "open the address printed above and paste the new one"
        )
    if not query.get("code"):
        raise CliError("the pasted address has no code; paste the whole address ANAF sent to")
    return query["code"]


def _expiry_text(expires_at: datetime) -> str:
    days = (expires_at - datetime.now(UTC)).days
    return f"{_when(int(expires_at.timestamp()))} (Europe/Bucharest, {days} days left)"


@anaf.command("login")
@click.option(
    "--code",
    help="The authorization code (or the whole callback address) from ANAF, if you already "
    "have one; it is valid for about a minute.",
)
def anaf_login(code: str | None) -> None:
    """Authorize invoicesync to file e-invoices for the company, once a year.

    Prints ANAF's authorize address: open it in a browser that holds the company's qualified
    certificate (the one registered in SPV), pick the certificate, and ANAF sends the browser to
    ANAF_REDIRECT_URI?code=…; paste that whole address (or just the code) here within a minute.
    The tokens are saved in $INVOICESYNC_HOME/anaf_tokens.json (mode 0600) and refreshed
    automatically; only the expiry dates are printed.
    """
    import secrets

    from invoicesync_dagster.clients.anaf.oauth import AnafOAuthError, TokenStore

    settings = _settings("anaf")
    client = _anaf_oauth_client(settings)
    state = None
    if code is None:
        state = secrets.token_urlsafe(16)
        click.echo("Open this address in a browser holding the company's certificate:\n")
        click.echo(f"  {client.authorize_url(state)}\n")
        click.echo(
            f"ANAF then sends the browser to {settings.anaf_redirect_uri}?code=… (the page may "
            "not load: that is expected). Copy the address from the address bar."
        )
        code = click.prompt("Paste the address (or the code)", prompt_suffix=": ")
    try:
        pair = client.exchange_code(_authorization_code(code, state))
    except AnafOAuthError as error:
        raise CliError(
            f"ANAF login failed: {error}. Codes expire after about a minute and work once: "
            "run `invoicesync anaf login` again"
        ) from None
    store = TokenStore(settings.anaf_token_store_path)
    try:
        store.save(pair)
    except OSError as error:
        raise CliError(f"could not save the ANAF tokens in {store.path}: {error}") from None
    click.echo(f"Logged in to ANAF. Tokens saved in {store.path} (readable only by you).")
    click.echo(f"  access token valid until  {_expiry_text(pair.access_expires_at)}")
    click.echo(f"  refresh token valid until {_expiry_text(pair.refresh_expires_at)}")
    click.echo("The access token is refreshed automatically; log in again before the refresh date.")


@anaf.command("token")
@_output_option
def anaf_token(output: Path | None) -> None:
    """When the stored ANAF tokens expire (never the tokens themselves)."""
    from invoicesync_dagster.clients.anaf.oauth import AnafOAuthError, TokenStore

    settings = _settings()
    store = TokenStore(settings.anaf_token_store_path)
    try:
        pair = store.load()
    except AnafOAuthError as error:
        raise CliError(str(error)) from None
    if pair is None:
        raise CliError(f"no ANAF tokens in {store.path}: run `invoicesync anaf login`")
    now = datetime.now(UTC)
    rows = [
        {
            "token": name,
            "expires_at": _when(int(expires_at.timestamp())),
            "days_left": (expires_at - now).days,
            "state": "valid" if expires_at > now else "expired",
            "obtained_at": _when(int(pair.obtained_at.timestamp())),
        }
        for name, expires_at in (
            ("access", pair.access_expires_at),
            ("refresh", pair.refresh_expires_at),
        )
    ]
    emit(rows, output, title=f"ANAF tokens in {store.path}")
    if pair.refresh_expires_at <= now:
        raise CliError(
            "the ANAF refresh token has expired: run `invoicesync anaf login` with the "
            "company's certificate"
        )
    if pair.access_expires_at <= now:
        click.echo("The access token has expired; it is refreshed at the next ANAF call.")


# --- doctor ----------------------------------------------------------------------------------


@cli.command()
@click.option("--start-date", type=click.DateTime(["%Y-%m-%d"]), required=True)
@click.option("--end-date", type=click.DateTime(["%Y-%m-%d"]), required=True)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write SERIES-YEAR-NUMBER.xml files into (created if missing).",
)
@_output_option
def export(start_date: datetime, end_date: datetime, directory: Path, output: Path | None) -> None:
    """Write each numbered document of the days as SERIES-YEAR-NUMBER.xml (e.g.
    INV-2026-000123.xml), the XML exactly as it is filed. Held and blocked documents have no
    number and no XML yet: they are listed with what to fix."""
    import duckdb

    from invoicesync_dagster.warehouse.database import WarehouseLocked, connect
    from invoicesync_dagster.warehouse.documents import documents_between

    start, end = start_date.date(), end_date.date()
    if end < start:
        raise CliError(f"--end-date {end} is before --start-date {start}")
    settings = _settings()
    try:
        with connect(settings.duckdb_path, read_only=True) as connection:
            found = documents_between(connection, start, end)
    except (WarehouseLocked, FileNotFoundError) as error:
        raise CliError(str(error)) from None
    except duckdb.CatalogException as error:
        raise CliError(
            f"{settings.duckdb_path} has no documents table yet: materialize efactura_documents "
            f"first ({error.__class__.__name__})"
        ) from None
    directory.mkdir(parents=True, exist_ok=True)
    rows, written, waiting = [], 0, 0
    for document in found:
        name = document["invoice_number"]
        path = None
        if document["xml"] is not None and _SAFE_FILE_NAME.match(name or ""):
            path = directory / f"{name}.xml"
            partial = path.with_name(path.name + ".partial")
            partial.write_bytes(document["xml"].encode("utf-8"))
            partial.replace(path)
            written += 1
        else:
            waiting += 1
        errors = json.loads(document["errors"] or "[]")
        rows.append(
            {
                "document_id": document["document_id"],
                "day": str(document["partition_date"]),
                "kind": document["kind"],
                "status": document["status"],
                "number": name or "",
                "currency": document["currency"],
                "total": "" if document["total"] is None else str(document["total"]),
                "file": str(path) if path else "",
                "to_fix": errors[0] if errors else "",
            }
        )
    if output is not None:
        emit(rows, output, title="documents")
    click.echo(f"{written} documents of {start}..{end} written to {directory}")
    if waiting:
        click.echo(
            f"{waiting} documents are held or blocked and were not exported; see the to_fix "
            "column (--output), or query the v_documents_to_fix view"
        )
        for row in [r for r in rows if not r["file"]][:10]:
            click.echo(f"  {row['document_id']} ({row['status']}): {row['to_fix'][:160]}")


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


# process, process-one, status, download and providers live in cli_filing.py, which adds them to
# `cli` when imported (it needs the helpers above, so it comes last).
import invoicesync_dagster.cli_filing  # noqa: E402, F401

if __name__ == "__main__":
    main()
