"""The filing commands of `invoicesync` (ARCHITECTURE.md §3): `process`, `process-one`,
`status`, `download` and `providers check`.

`process` runs daily_invoice_job in this process, as `make demo` does (one run per Bucharest
day, oldest first), then follows the new ANAF
uploads with efactura_status_job until each is final or `--wait-minutes` pass. Sending is the
efactura_submissions asset's job alone: its outbox makes a re-run send nothing twice. The
readers (`status`, `download`) open DuckDB read-only. Imported by cli.py, which it extends.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from tabulate import tabulate

from invoicesync_dagster.cli import (
    _SAFE_FILE_NAME,
    BUCHAREST,
    CliError,
    _expiry_text,
    _output_option,
    _settings,
    _yesterday,
    cli,
    emit,
)
from invoicesync_dagster.settings import Settings

if TYPE_CHECKING:  # imported lazily below: the CLI starts fast
    import dagster as dg
    import duckdb

DAILY_JOB = "daily_invoice_job"  # Stripe → buyer profiles → documents → filing, one day
SUBMISSIONS = "efactura_submissions"
SOURCE_TYPES = {
    "invoices": ["stripe_invoice"],
    "charges": ["stripe_charge"],
    "both": [],  # everything, refunds without a known charge included
}
FIRST_DAY = date(2025, 1, 1)  # the first daily partition (defs/partitions.py)
# Status polling: 5 s, 10 s, 20 s ... then every minute. Each round is one stareMesaj per
# upload; ten minutes cost ~12 of ANAF's 100 calls per message a day.
FIRST_POLL_S = 5.0
MAX_POLL_S = 60.0
# Dagster's step-by-step log stays in the run history; warnings and errors still show.
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


_items_option = click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write each document's result to FILE.json or FILE.csv.",
)


# --- shared helpers ----------------------------------------------------------------------------


@contextmanager
def _warehouse(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse, read-only; its problems as CLI errors. Keep only SQL in the block."""
    import duckdb

    from invoicesync_dagster.warehouse.database import WarehouseLocked, connect

    try:
        with connect(settings.duckdb_path, read_only=True) as connection:
            yield connection
    except (WarehouseLocked, FileNotFoundError) as error:
        raise CliError(str(error)) from None
    except duckdb.CatalogException as error:
        raise CliError(
            f"{settings.duckdb_path} has no e-Factura tables yet: run `invoicesync process` "
            f"first ({str(error).splitlines()[0]})"
        ) from None


@contextmanager
def _dagster() -> Iterator[tuple[Any, dg.DagsterInstance]]:
    """The code location's definitions and the instance runs are recorded in: DAGSTER_HOME's
    when set (they show in the UI), else a throw-away one."""
    import dagster as dg

    from invoicesync_dagster.definitions import defs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        definitions = defs()
    home = os.environ.get("DAGSTER_HOME")
    with dg.DagsterInstance.get() if home else dg.DagsterInstance.ephemeral() as instance:
        yield definitions, instance


def _failure(result: dg.ExecuteInProcessResult) -> str:
    """Why a run failed: each distinct root cause once, with its steps; secrets removed."""
    from invoicesync_dagster.defs.efactura.status import redact

    causes: dict[str, list[str]] = {}
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        message = data.user_failure_data.description if data.user_failure_data else None
        error = data.error
        while error is not None and error.cause is not None:  # Dagster wraps the real error
            error = error.cause
        if not message and error is not None:
            # "package.module.StripeAuthError: text" → "StripeAuthError: text"
            message = re.sub(r"^(?:\w+\.)+(\w+): ", r"\1: ", error.message.strip())
        causes.setdefault(message or event.message or "failed", []).append(event.step_key or "")
    parts = [f"{', '.join(steps)}: {cause}" for cause, steps in causes.items()]
    if len(parts) > 2:  # the rest usually repeats the first (the same key, another endpoint)
        parts[2:] = [f"{len(parts) - 2} more steps failed (see the run's log)"]
    text = " | ".join(parts)
    return redact(text or "the run failed")[:1500]


def _json_metadata(event: Any, name: str) -> Any:
    value = event.metadata.get(name) if event is not None else None
    return getattr(value, "value", value)


def _bucharest_day(unix: int | None) -> date | None:
    return datetime.fromtimestamp(unix, BUCHAREST).date() if unix else None


# --- process -----------------------------------------------------------------------------------


@dataclass
class _Day:
    day: date
    failed: str = ""  # why a job failed
    filed: dict[str, Any] = field(default_factory=dict)  # the submissions' metadata
    uploads: list[dict[str, Any]] = field(default_factory=list)  # new ANAF uploads


@dataclass
class _FollowUp:
    pending: list[str] = field(default_factory=list)  # upload indexes without a final answer
    problems: list[str] = field(default_factory=list)


def _days(days: int | None, start: datetime | None, end: datetime | None) -> list[date]:
    yesterday = _yesterday()
    if days is not None:
        if start or end:
            raise CliError("give either --days N or --start-date D --end-date D, not both")
        first, last = yesterday - timedelta(days=days - 1), yesterday
    elif start and end:
        first, last = start.date(), end.date()
    else:
        raise CliError(
            "which days? give --days N (ending yesterday) or --start-date D --end-date D"
        )
    if last < first:
        raise CliError(f"--end-date {last} is before --start-date {first}")
    if last > yesterday:
        raise CliError(
            f"{last} is not over yet in Bucharest: the last day that can be processed is "
            f"{yesterday} (a day is documented once it has ended)"
        )
    if first < FIRST_DAY:
        raise CliError(f"{first} is before {FIRST_DAY}, the first day invoicesync documents")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _check_provider(settings: Settings, provider: str) -> None:
    """The provider must be the one filing is enabled for, and reachable with credentials."""
    from invoicesync_dagster.clients.anaf.oauth import AnafOAuthError, TokenStore

    if settings.anaf_enabled and settings.smartbill_enabled:
        raise CliError(
            "ANAF_ENABLED and SMARTBILL_ENABLED are both true: SmartBill files its invoices with "
            "ANAF itself, so every document would reach ANAF twice. Set one of them to false"
        )
    if provider == "smartbill":
        if not settings.smartbill_enabled:
            raise CliError(
                "SMARTBILL_ENABLED is not true: set SMARTBILL_ENABLED=true (with "
                "SMARTBILL_USERNAME, SMARTBILL_TOKEN, SMARTBILL_SERIES) to file with SmartBill, "
                "or use --provider anaf"
            )
        return
    if not settings.anaf_enabled:
        raise CliError(
            "ANAF_ENABLED is not true: set ANAF_ENABLED=true (with ANAF_CLIENT_ID and "
            "ANAF_CLIENT_SECRET) to file with ANAF e-Factura"
            + (", or use --provider smartbill" if settings.smartbill_enabled else "")
            + "; --dry-run builds the documents without filing them"
        )
    store = TokenStore(settings.anaf_token_store_path)
    try:
        pair = store.load()
    except AnafOAuthError as error:
        raise CliError(str(error)) from None
    if pair is None:
        raise CliError(f"no ANAF tokens in {store.path}: run `invoicesync anaf login` first")
    if pair.refresh_expires_at <= datetime.now(pair.refresh_expires_at.tzinfo):
        raise CliError(
            "the ANAF refresh token has expired: run `invoicesync anaf login` with the "
            "company's certificate"
        )


def _run_day(
    definitions: Any,
    instance: dg.DagsterInstance,
    day: date,
    source_types: list[str],
    dry_run: bool,
) -> _Day:
    outcome = _Day(day)
    job = definitions.resolve_job_def(DAILY_JOB)
    run_config: dict[str, Any] = dict(_QUIET)
    selection = None
    if dry_run:  # the same job without its filing asset: nothing can be sent
        keys = job.asset_layer.executable_asset_keys
        selection = sorted(k for k in keys if k.to_user_string() != SUBMISSIONS)
    else:
        run_config["ops"] = {SUBMISSIONS: {"config": {"source_types": source_types}}}
    result = job.execute_in_process(
        partition_key=day.isoformat(),
        instance=instance,
        raise_on_error=False,
        run_config=run_config,
        asset_selection=selection,
    )
    click.echo(
        f"  {day}  {DAILY_JOB}  {'ok' if result.success else 'FAILED'}  (run {result.run_id[:8]})",
        err=True,
    )
    if not dry_run:
        for event in result.asset_materializations_for_node(SUBMISSIONS):
            outcome.filed = {k: _json_metadata(event, k) for k in event.metadata}
            outcome.uploads = list(outcome.filed.get("anaf_uploads") or [])
    if not result.success:
        outcome.failed = f"{DAILY_JOB} failed: {_failure(result)}"
    return outcome


def _follow_up(
    definitions: Any,
    instance: dg.DagsterInstance,
    uploads: Sequence[dict[str, Any]],
    wait_minutes: float,
) -> _FollowUp:
    """Run efactura_status_job over the uploads until each is final or the time is up."""
    from invoicesync_dagster.defs.efactura.status import (
        MAX_CHECKS_PER_RUN,
        OP_NAME,
        run_config_for,
    )

    job = definitions.resolve_job_def("efactura_status_job")
    pending = {str(upload["index"]): upload for upload in uploads}
    outcome = _FollowUp()
    check_errors: dict[str, str] = {}
    deadline = time.monotonic() + wait_minutes * 60
    delay = FIRST_POLL_S
    while pending:
        batch = list(pending.values())
        for start in range(0, len(batch), MAX_CHECKS_PER_RUN):
            chunk = batch[start : start + MAX_CHECKS_PER_RUN]
            result = job.execute_in_process(
                instance=instance, raise_on_error=False, run_config=_QUIET | run_config_for(chunk)
            )
            observed = result.asset_observations_for_node(OP_NAME)
            if not observed:  # the run stopped before asking ANAF anything
                outcome.problems.append(f"efactura_status_job failed: {_failure(result)}")
                outcome.pending = sorted(pending)
                return outcome
            report = observed[-1]
            for entry in _json_metadata(report, "final") or []:
                pending.pop(str(entry["index"]), None)
                check_errors.pop(str(entry["index"]), None)
            for entry in _json_metadata(report, "unknown") or []:
                outcome.problems.append(f"upload {entry['index']}: {entry['reason']}")
                pending.pop(str(entry["index"]), None)
            for entry in _json_metadata(report, "failed") or []:
                check_errors[str(entry["index"])] = str(entry["error"])
            stopped = _json_metadata(report, "stopped")
            if stopped:  # a limit or refused credentials: asking again now would not help
                outcome.problems.append(f"ANAF status checks stopped: {stopped}")
                outcome.pending = sorted(pending)
                return outcome
        if not pending or time.monotonic() + delay > deadline:
            break
        click.echo(f"  waiting {delay:.0f} s: {len(pending)} uploads still at ANAF", err=True)
        time.sleep(delay)
        delay = min(delay * 2, MAX_POLL_S)
    outcome.problems += [f"upload {i}: status check failed: {e}" for i, e in check_errors.items()]
    outcome.pending = sorted(pending)
    return outcome


def _item_row(item: dict[str, Any], provider: str, uploaded_now: set[str]) -> dict[str, Any]:
    errors = item["filing_errors"] or (
        item["document_errors"] if item["document_status"] in ("held", "blocked") else []
    )
    return {
        "day": str(item["day"]),
        "document_id": item["document_id"],
        "kind": item["kind"],
        "number": item["number"] or "",
        "status": item["document_status"],
        "provider": provider if item["attempt"] else "",
        "attempt": item["attempt"] or "",
        "filing_state": item["filing_state"] or "not_sent",
        "upload_index": item["upload_index"] or "",
        "sent_now": (item["upload_index"] or "") in uploaded_now,
        "errors": "; ".join(str(e) for e in errors),
    }


def _day_summary(outcomes: Sequence[_Day], rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    table = []
    for outcome in outcomes:
        mine = [r for r in rows if r["day"] == str(outcome.day)]
        states = Counter(r["filing_state"] for r in mine)
        sent = outcome.filed.get("uploaded", 0) or outcome.filed.get("created", 0) or 0
        table.append(
            [
                outcome.day,
                sum(1 for r in mine if r["number"]),
                sent,
                states["accepted"],
                states["rejected"],
                states["sent"],
                sum(1 for r in mine if r["status"] in ("held", "blocked")),
                "FAILED" if outcome.failed else "ok",
            ]
        )
    return table


@click.command("process")
@click.option("--provider", type=click.Choice(["anaf", "smartbill"]), required=True)
@click.option(
    "--type",
    "source_kind",
    type=click.Choice(list(SOURCE_TYPES)),
    default="both",
    show_default=True,
    help="File the documents of Stripe invoices, of charges (with their refunds), or both.",
)
@click.option("--days", type=click.IntRange(1, 3660), help="The N days ending yesterday.")
@click.option("--start-date", type=click.DateTime(["%Y-%m-%d"]), help="First day (Bucharest).")
@click.option("--end-date", type=click.DateTime(["%Y-%m-%d"]), help="Last day, inclusive.")
@click.option("--dry-run", is_flag=True, help="Fetch and build the documents, submit nothing.")
@click.option(
    "--wait-minutes",
    type=click.FloatRange(0, 1440),
    default=10,
    show_default=True,
    help="How long to wait for ANAF's answers to the uploads (the anaf_status_sensor follows "
    "up whatever is still processing then).",
)
@_items_option
def process(
    provider: str,
    source_kind: str,
    days: int | None,
    start_date: datetime | None,
    end_date: datetime | None,
    dry_run: bool,
    wait_minutes: float,
    output: Path | None,
) -> None:
    """Fetch, build and file the documents of each day, oldest first, then wait for ANAF.

    Runs daily_invoice_job for every day in this process
    (recorded in DAGSTER_HOME when set), then asks ANAF about the new uploads until each is
    accepted or rejected. Running it again sends nothing already sent: only documents never
    filed, or rejected and since fixed, go out. Exits 1 when a job failed, an upload was refused
    or lost, or a document was rejected; --output FILE.json|csv lists every document.
    """
    settings = _settings("stripe", "company")
    window = _days(days, start_date, end_date)
    if not dry_run:
        _check_provider(settings, provider)
    source_types = SOURCE_TYPES[source_kind]
    outcomes: list[_Day] = []
    follow = _FollowUp()
    with _dagster() as (definitions, instance):
        for day in window:
            outcomes.append(_run_day(definitions, instance, day, source_types, dry_run))
            if outcomes[-1].failed:
                break  # later days would take numbers before this day's documents
        last = outcomes[-1].day
        items, awaiting = _items(settings, window[0], last, source_types, provider)
        new = [upload for outcome in outcomes for upload in outcome.uploads]
        # Uploads of earlier runs still without an answer are followed up too.
        uploads = new + [u for u in awaiting if u["index"] not in {n["index"] for n in new}]
        if uploads and provider == "anaf" and not dry_run:
            click.echo(f"Asking ANAF about {len(uploads)} uploads …", err=True)
            follow = _follow_up(definitions, instance, uploads, wait_minutes)
            items, _ = _items(settings, window[0], last, source_types, provider)
    sent_now = {str(upload["index"]) for upload in new} | {
        str(name) for outcome in outcomes for name in outcome.filed.get("smartbill_invoices") or []
    }
    rows = [_item_row(item, provider, sent_now) for item in items]
    _report(outcomes, rows, follow, provider, dry_run, output)


def _items(
    settings: Settings, start: date, end: date, source_types: list[str], provider: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The documents of the days with their filing state, and their uploads awaiting ANAF's
    answer; none when no run got as far as creating the warehouse."""
    from invoicesync_dagster.warehouse import status

    if not settings.duckdb_path.exists():
        return [], []
    with _warehouse(settings) as connection:
        items = status.day_items(connection, start, end, source_types, provider)
        ids = [item["document_id"] for item in items]
        return items, status.uploads_awaiting_answer(connection, ids)


def _report(
    outcomes: Sequence[_Day],
    rows: Sequence[dict[str, Any]],
    follow: _FollowUp,
    provider: str,
    dry_run: bool,
    output: Path | None,
) -> None:
    headers = ["day", "built", "sent", "accepted", "rejected", "processing", "held", "jobs"]
    click.echo(tabulate(_day_summary(outcomes, rows), headers=headers, disable_numparse=True))
    if output is not None:
        emit(rows, output, title="documents")
    problems = [outcome.failed for outcome in outcomes if outcome.failed]
    for outcome in outcomes:
        filed = outcome.filed
        if filed.get("refused"):
            problems.append(f"{outcome.day}: {filed['refused']} uploads refused by {provider}")
        if filed.get("answer_lost"):
            problems.append(
                f"{outcome.day}: the answer to {filed['answer_lost']} uploads was lost; run "
                "`invoicesync process` again later: it looks them up before sending anything"
            )
        if filed.get("stopped"):
            problems.append(f"{outcome.day}: filing stopped: {filed['stopped']}")
    problems += follow.problems
    refused = [r for r in rows if r["filing_state"] in ("rejected", "failed")]
    for row in refused[:20]:
        click.echo(f"  {row['filing_state']}: {row['number']} ({row['document_id']}): "
                   f"{row['errors'][:300]}")  # fmt: skip
    held = sum(1 for r in rows if r["status"] in ("held", "blocked"))
    if held:
        click.echo(
            f"{held} documents are held or blocked (no number, not filed): see the errors "
            "column of --output, or SELECT * FROM v_documents_to_fix"
        )
    if dry_run:
        click.echo("Dry run: nothing was submitted.")
    elif follow.pending:
        click.echo(
            f"{len(follow.pending)} uploads are still being processed by ANAF; the "
            "anaf_status_sensor (or `invoicesync process` again) records their answers"
        )
    rejected = sum(r["filing_state"] == "rejected" for r in rows)
    if rejected:
        problems.append(
            f"{rejected} documents were rejected by ANAF: fix what the errors say (customer "
            "data in Stripe or the mappings CSV), then run process again for their day: each is "
            "rebuilt and, its XML changed, sent again with the same number (a fix outside the "
            "document, e.g. the seller's registration: efactura_job with resend_rejected: true)"
        )
    if problems:
        raise CliError("\n".join(problems))


# --- process-one -------------------------------------------------------------------------------


@click.command("process-one")
@click.option(
    "--source-type", type=click.Choice(["stripe_invoice", "stripe_charge"]), required=True
)
@click.option("--source-id", required=True, help="The Stripe id (in_… or ch_…).")
@click.option("--provider", type=click.Choice(["anaf", "smartbill"]), required=True)
@click.option(
    "--customer-tax-id",
    help="The buyer's CUI (or CNP): added for the customer's e-mail to the mappings CSV first.",
)
@click.option(
    "--invoice-number",
    help="Only a check: the number the document was given must be this one (e.g. "
    "INV-2026-000123), else nothing is filed. Numbers are gapless and never chosen by hand.",
)
@click.option("--wait-minutes", type=click.FloatRange(0, 1440), default=10, show_default=True)
@_items_option
def process_one(
    source_type: str,
    source_id: str,
    provider: str,
    customer_tax_id: str | None,
    invoice_number: str | None,
    wait_minutes: float,
    output: Path | None,
) -> None:
    """File one Stripe invoice or charge: sync and build its day, then submit only it.

    The day is the one its trigger fell on (paid or finalized invoice, succeeded charge), read
    from the warehouse or else from Stripe. --invoice-number never forces a number (invoice
    numbers are allocated in order, without gaps): it stops before filing when the document got
    another one, e.g. because the numbers moved on since you wrote it down.
    """
    settings = _settings("stripe", "company")
    _check_provider(settings, provider)
    document_id = f"{source_type}:{source_id}"
    day = _trigger_day(settings, source_type, source_id)
    if customer_tax_id:
        _add_mapping(settings, source_type, source_id, customer_tax_id)
    with _dagster() as (definitions, instance):
        built = _run_day(definitions, instance, day, [], dry_run=True)
        if built.failed:
            raise CliError(built.failed)
        items, _ = _items(settings, day, day, [], provider)
        item = next((i for i in items if i["document_id"] == document_id), None)
        if item is None:
            raise CliError(f"{day} has no document {document_id}: {_why_none(settings, source_id)}")
        if item["document_status"] in ("held", "blocked"):
            reasons = "; ".join(str(e) for e in item["document_errors"])
            raise CliError(f"{document_id} is {item['document_status']}, not filed: {reasons}")
        if invoice_number and item["number"] != invoice_number:
            raise CliError(
                f"{document_id} was numbered {item['number']}, not {invoice_number}; nothing was "
                "filed. Numbers are allocated in order without gaps and are never chosen by "
                "hand: file it with --invoice-number omitted to accept that number"
            )
        uploads = _submit_one(definitions, instance, day, document_id)
        _, awaiting = _items(settings, day, day, [], provider)
        # An earlier upload of it still without an answer is followed up as well.
        sent = {upload["index"] for upload in uploads}
        earlier = [
            u for u in awaiting if u["document_id"] == document_id and u["index"] not in sent
        ]
        follow = _FollowUp()
        if uploads or earlier:
            follow = _follow_up(definitions, instance, uploads + earlier, wait_minutes)
        items, _ = _items(settings, day, day, [], provider)
    row = next(
        _item_row(i, provider, {u["index"] for u in uploads})
        for i in items
        if i["document_id"] == document_id
    )
    if output is not None:
        emit([row], output, title="document")
    click.echo(
        f"{row['number']} ({document_id}): {row['filing_state']}"
        + (f", upload {row['upload_index']}" if row["upload_index"] else "")
        + (f": {row['errors']}" if row["errors"] else "")
    )
    problems = list(follow.problems)
    if row["filing_state"] in ("rejected", "failed", "unknown", "sending"):
        problems.append(f"{row['number']} is {row['filing_state']}: {row['errors'] or 'see above'}")
    if follow.pending:
        click.echo("ANAF is still processing it; the anaf_status_sensor records its answer.")
    if problems:
        raise CliError("\n".join(problems))


def _submit_one(
    definitions: Any, instance: dg.DagsterInstance, day: date, document_id: str
) -> list[dict[str, Any]]:
    import dagster as dg

    job = definitions.resolve_job_def("efactura_job")
    result = job.execute_in_process(
        partition_key=day.isoformat(),
        instance=instance,
        raise_on_error=False,
        run_config=_QUIET | {"ops": {SUBMISSIONS: {"config": {"document_ids": [document_id]}}}},
        asset_selection=[dg.AssetKey(SUBMISSIONS)],
    )
    if not result.success:
        raise CliError(f"{SUBMISSIONS} failed: {_failure(result)}")
    uploads: list[dict[str, Any]] = []
    for event in result.asset_materializations_for_node(SUBMISSIONS):
        uploads += list(_json_metadata(event, "anaf_uploads") or [])
    return uploads


def _trigger_day(settings: Settings, source_type: str, source_id: str) -> date:
    """The partition that documents the object: from the warehouse, else from Stripe."""
    from invoicesync_dagster.clients.stripe import StripeError, StripeReader
    from invoicesync_dagster.warehouse import status

    if settings.duckdb_path.exists():
        with _warehouse(settings) as connection:
            known = status.trigger_day(connection, source_type, source_id)
        if known is not None:
            return known
    assert settings.stripe_api_key is not None  # checked by _settings
    reader = StripeReader(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)
    resource = "invoices" if source_type == "stripe_invoice" else "charges"
    try:
        found = reader.retrieve(resource, source_id)
    except StripeError as error:
        raise CliError(str(error)) from None
    if source_type == "stripe_charge":
        moment = found.get("created")
    else:
        trigger = "finalized_at" if settings.invoice_on == "finalized" else "paid_at"
        moment = (found.get("status_transitions") or {}).get(trigger)
    day = _bucharest_day(moment)
    if day is None:
        raise CliError(
            f"Stripe {resource[:-1]} {source_id} has not been "
            f"{'paid' if settings.invoice_on == 'paid' else 'finalized'} yet: nothing to document "
            f"(INVOICE_ON={settings.invoice_on})"
        )
    if day > _yesterday():
        raise CliError(
            f"{source_id} belongs to {day}, which is not over yet in Bucharest; it is filed "
            "with that day (tomorrow's run)"
        )
    return day


def _why_none(settings: Settings, source_id: str) -> str:
    from invoicesync_dagster.warehouse import status

    with _warehouse(settings) as connection:
        skipped = status.skipped_source(connection, source_id)
    if skipped:
        return f"it was not documented: {skipped['reason']}"
    return "Stripe's data for that day does not make it a document (see billable_events)"


def _add_mapping(settings: Settings, source_type: str, source_id: str, tax_id: str) -> None:
    """Add `email,cui` for the source's customer to the mappings CSV (checked first)."""
    from invoicesync_dagster.clients.stripe import StripeError, StripeReader
    from invoicesync_dagster.efactura.identifiers import (
        InvalidCnp,
        InvalidCui,
        validate_cnp,
        validate_cui,
    )
    from invoicesync_dagster.efactura.mappings import parse_mappings

    try:
        clean = validate_cui(tax_id)
    except InvalidCui as error:
        try:
            clean = validate_cnp(tax_id)
        except InvalidCnp:
            raise CliError(f"--customer-tax-id {tax_id}: {error}; nothing was changed") from None
    assert settings.stripe_api_key is not None
    reader = StripeReader(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)
    resource = "invoices" if source_type == "stripe_invoice" else "charges"
    try:
        source = reader.retrieve(resource, source_id)
        email = source.get("customer_email") or (source.get("billing_details") or {}).get("email")
        if not email and source.get("customer"):
            email = reader.retrieve("customers", str(source["customer"])).get("email")
    except StripeError as error:
        raise CliError(str(error)) from None
    if not email:
        raise CliError(
            f"{source_id}'s customer has no e-mail in Stripe, so the mappings CSV cannot name "
            "it: add the e-mail to the customer in Stripe, or its tax id there"
        )
    path = settings.mappings_csv_path
    existing = parse_mappings(path.read_bytes(), str(path)) if path.exists() else None
    current = existing.for_email(email) if existing else None
    if current is not None:
        if current.tax_id != clean:
            raise CliError(
                f"{path} already maps {email} to {current.tax_id} ({current.where}); correct "
                "that line by hand if the customer's tax id changed"
            )
        return
    text = path.read_text(encoding="utf-8-sig") if path.exists() else ""
    if not text.strip():
        text = "email,cui\n"
    header = text.splitlines()[0]
    separator = ";" if header.count(";") > header.count(",") else ","  # as the file has it
    if not text.endswith("\n"):
        text += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{text}{email.strip().lower()}{separator}{clean}\n", encoding="utf-8")
    partial.replace(path)
    click.echo(f"Added {email} → {clean} to {path}")


# --- status ------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(BUCHAREST).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


@click.command("status")
@click.argument("source_id", metavar="SOURCE_ID")
@_output_option
def status(source_id: str, output: Path | None) -> None:
    """Where a document stands and every attempt to file it.

    SOURCE_ID: a Stripe id (in_…, ch_…, re_…, cn_…), a document id (stripe_invoice:in_…) or an
    invoice number (INV-2026-000123). Credit notes correcting the document are listed with it.
    """
    from invoicesync_dagster.warehouse import status as queries

    settings = _settings()
    key = source_id.strip()
    with _warehouse(settings) as connection:
        documents = queries.find_documents(connection, key)
        tries = queries.attempts(connection, [d["document_id"] for d in documents])
        skipped = None if documents else queries.skipped_source(connection, key)
    if not documents:
        if skipped:
            raise CliError(
                f"{key} has no document: it was skipped on {skipped['partition_date']}: "
                f"{skipped['reason']}"
            )
        raise CliError(
            f"no document for {key} in {settings.duckdb_path}: check the id or number, or run "
            "`invoicesync process` for the day it was paid"
        )
    rows = []
    for document in documents:
        mine = [t for t in tries if t["document_id"] == document["document_id"]] or [{}]
        for attempt in mine:
            rows.append(
                {
                    "document_id": document["document_id"],
                    "number": _text(document["invoice_number"]),
                    "kind": document["kind"],
                    "day": _text(document["partition_date"]),
                    "total": f"{_text(document['total'])} {document['currency']}".strip(),
                    "buyer": _text(document["buyer_name"]),
                    "document_status": document["status"],
                    "provider": _text(attempt.get("provider")),
                    "attempt": _text(attempt.get("attempt")),
                    "state": _text(attempt.get("state")) or "not_sent",
                    "upload_index": _text(attempt.get("upload_index")),
                    "errors": _text(attempt.get("errors"))
                    or (_text(document["errors"]) if not attempt else ""),
                    "created_at": _text(attempt.get("created_at")),
                    "sent_at": _text(attempt.get("sent_at")),
                    "final_at": _text(attempt.get("final_at")),
                    "archive": _text(attempt.get("archive_path")),
                }
            )
    if output is not None:
        emit(rows, output, title="filing attempts")
        return
    for document in documents:
        click.echo(
            f"{document['invoice_number'] or '(no number)'}  {document['document_id']}  "
            f"{document['kind']} of {document['partition_date']}, "
            f"{_text(document['total'])} {document['currency']}, {document['buyer_name'] or ''}"
            f": {document['status']}"
        )
        if document["status"] in ("held", "blocked"):
            for error in document["errors"]:
                click.echo(f"    to fix: {error}")
        mine = [r for r in rows if r["document_id"] == document["document_id"] and r["attempt"]]
        shown = ["provider", "attempt", "state", "upload_index", "created_at", "final_at"]
        if mine:
            table = [[r[k] for k in shown] for r in mine]
            click.echo(tabulate(table, headers=shown, disable_numparse=True))
            for r in mine:
                if r["errors"]:
                    click.echo(f"    attempt {r['attempt']} ({r['state']}): {r['errors']}")
        else:
            click.echo("    not filed yet")


# --- download ----------------------------------------------------------------------------------


@click.command("download")
@click.argument("document")
@click.option("--format", "fmt", type=click.Choice(["pdf", "xml"]), required=True)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write it (default: <invoice number>.xml|.pdf in the current folder).",
)
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
def download(document: str, fmt: str, output: Path | None, force: bool) -> None:
    """Write a document's XML or PDF.

    DOCUMENT: an invoice number, a document id or a Stripe id. XML: the copy from ANAF's signed
    answer (archived) once ANAF accepted it, else the XML as built. PDF: the one archived by the
    status job, else ANAF's rendering of that XML (its public `transformare` service, no login).
    """
    from invoicesync_dagster.warehouse import status as queries

    settings = _settings()
    key = document.strip()
    with _warehouse(settings) as connection:
        found = [d for d in queries.find_documents(connection, key) if _names(d, key)]
        tries = queries.attempts(connection, [d["document_id"] for d in found])
        xml = queries.document_xml(connection, found[0]["document_id"]) if found else None
    if not found:
        raise CliError(f"no document for {key} in {settings.duckdb_path}: try `invoicesync status`")
    if len(found) > 1:
        names = ", ".join(f"{d['invoice_number']} ({d['document_id']})" for d in found)
        raise CliError(f"{key} names {len(found)} documents: {names}; give one number")
    chosen = found[0]
    number = chosen["invoice_number"]
    if xml is None or not number:
        reasons = "; ".join(str(e) for e in chosen["errors"]) or chosen["status"]
        raise CliError(f"{chosen['document_id']} has no XML yet ({chosen['status']}): {reasons}")
    target = output or Path(f"{number}.{fmt}")
    if output is None and not _SAFE_FILE_NAME.match(number):
        raise CliError(f"{number!r} is not usable as a file name: give -o FILE")
    if target.exists() and not force:
        raise CliError(f"{target} exists: give --force to replace it, or -o another file")
    accepted = next((t for t in reversed(tries) if t["state"] == "accepted"), None)
    if fmt == "xml":
        data, what = _xml(settings, chosen, accepted, xml, tries)
    else:
        data, what = _pdf(settings, chosen, accepted, xml)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    partial.replace(target)
    click.echo(f"{target}: {what}, {len(data)} bytes")


def _names(document: dict[str, Any], key: str) -> bool:
    """True for the document the key names itself (not a credit note correcting it)."""
    return key in (document["document_id"], document["source_id"]) or (
        (document["invoice_number"] or "").upper() == key.upper()
    )


def _xml(
    settings: Settings,
    document: dict[str, Any],
    accepted: dict[str, Any] | None,
    built: str,
    tries: Sequence[dict[str, Any]],
) -> tuple[bytes, str]:
    if accepted is None:
        state = str(tries[-1]["state"]) if tries else f"{document['status']}, never filed"
        return built.encode("utf-8"), f"the XML as built, not accepted yet ({state})"
    if accepted["provider"] == "smartbill":
        return built.encode("utf-8"), (
            f"the XML as built; SmartBill issued it as {accepted['upload_index']} and filed "
            "it with ANAF itself"
        )
    signed = _signed_copy(settings.invoicesync_home, accepted)
    return signed, f"the XML ANAF accepted (upload {accepted['upload_index']}), from its answer"


def _signed_copy(home: Path, accepted: dict[str, Any]) -> bytes:
    """The document as ANAF received it, from the archived signed zip (read in memory)."""
    from invoicesync_dagster.clients.anaf.efactura import AnafUnexpectedResponse, read_zip

    if not accepted.get("archive_path"):
        raise CliError(
            f"ANAF accepted upload {accepted['upload_index']} but its answer was not archived: "
            "run efactura_status_job for it (it downloads and archives the signed zip)"
        )
    path = home / accepted["archive_path"]
    try:
        members = read_zip(path.read_bytes())
    except FileNotFoundError:
        raise CliError(
            f"the archived answer {path} is missing: restore it from your backup (ANAF keeps "
            "its copy for 60 days only)"
        ) from None
    except AnafUnexpectedResponse as error:
        raise CliError(f"the archived answer {path} is unreadable: {error}") from None
    name = f"{accepted['upload_index']}.xml"
    if name not in members:
        raise CliError(f"{path} holds no {name} (it has {', '.join(sorted(members))})")
    return members[name]


def _pdf(
    settings: Settings, document: dict[str, Any], accepted: dict[str, Any] | None, built: str
) -> tuple[bytes, str]:
    from invoicesync_dagster.clients.anaf.efactura import AnafError, EfacturaClient

    if accepted and accepted["provider"] == "smartbill":
        return _smartbill_pdf(settings, str(accepted["upload_index"]))
    xml = built.encode("utf-8")
    if accepted:
        archived = (settings.invoicesync_home / accepted["archive_path"]).with_suffix(".pdf")
        if archived.exists():
            return archived.read_bytes(), f"ANAF's PDF of the accepted XML, from {archived}"
        xml = _signed_copy(settings.invoicesync_home, accepted)
    kind = "FCN" if document["kind"] == "credit_note" else "FACT1"
    client = EfacturaClient(
        settings.anaf_api_base,
        settings.anaf_public_api_base,
        lambda: "",  # the public services take no token
        staging=settings.anaf_use_staging,
    )
    try:
        with client:
            # An accepted document was validated by ANAF already; any other is checked now.
            pdf = client.to_pdf(xml, kind, validate=accepted is None)
    except AnafError as error:
        raise CliError(f"ANAF could not render {document['invoice_number']}: {error}") from None
    state = "accepted" if accepted else "not accepted yet: a preview"
    return pdf, f"rendered by ANAF's transformare service ({state})"


def _smartbill_pdf(settings: Settings, reference: str) -> tuple[bytes, str]:
    """SmartBill's own PDF of the invoice it issued (`reference`: series and number)."""
    from invoicesync_dagster.clients.smartbill import SmartBillClient, SmartBillError

    series = settings.smartbill_series or ""
    missing = settings.missing(["smartbill", "company"])
    if missing or not reference.startswith(series):
        raise CliError(
            f"SmartBill issued it as {reference}: download its PDF from SmartBill"
            + (f" (or set {', '.join(missing)})" if missing else "")
        )
    assert settings.smartbill_token is not None  # checked by settings.missing
    client = SmartBillClient(
        settings.smartbill_api_base,
        settings.smartbill_username or "",
        settings.smartbill_token,
        settings.company_cui or "",
    )
    try:
        with client:
            pdf = client.pdf(series, reference.removeprefix(series))
    except SmartBillError as error:
        raise CliError(f"SmartBill's PDF of {reference}: {error}") from None
    return pdf, f"SmartBill's PDF of {reference}, the invoice it issued"


# --- providers check ---------------------------------------------------------------------------


@dataclass
class _Checks:
    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, provider: str, check: str, result: str, detail: str, fix: str = "") -> None:
        self.rows.append(
            {"provider": provider, "check": check, "result": result, "detail": detail, "fix": fix}
        )
        line = f"{result:<4} {provider} {check}: {detail}"
        click.echo(line + (f"\n       fix: {fix}" if fix else ""))

    @property
    def failed(self) -> int:
        return sum(row["result"] == "FAIL" for row in self.rows)


@click.group("providers")
def providers() -> None:
    """The filing providers (ANAF e-Factura, SmartBill)."""


@providers.command("check")
@click.argument("provider", required=False, type=click.Choice(["anaf", "smartbill"]))
@_output_option
def providers_check(provider: str | None, output: Path | None) -> None:
    """Check that a provider can be used: settings, credentials and one cheap call.

    Without PROVIDER, checks both; one that is neither enabled nor configured is skipped.
    One line per check, with the fix for each FAIL; exits 1 if any check fails.
    """
    from invoicesync_dagster.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as error:
        raise CliError(str(error)) from None
    checks = _Checks()
    if settings.anaf_enabled and settings.smartbill_enabled:
        checks.add(
            "both", "settings", "FAIL", "ANAF_ENABLED and SMARTBILL_ENABLED are both true",
            "enable one: SmartBill files its invoices with ANAF itself",
        )  # fmt: skip
    for name, enabled, configured in (
        ("anaf", settings.anaf_enabled, settings.anaf_client_id is not None),
        ("smartbill", settings.smartbill_enabled, settings.smartbill_username is not None),
    ):
        if provider not in (None, name):
            continue
        if provider is None and not (enabled or configured):
            checks.add(name, "settings", "SKIP", f"{name.upper()}_ENABLED is false, not configured")
            continue
        (_check_anaf if name == "anaf" else _check_smartbill)(settings, checks)
    if output is not None:
        emit(checks.rows, output, title="checks")
    if checks.failed:
        raise CliError(f"{checks.failed} checks failed")


def _settings_check(settings: Settings, group: str, checks: _Checks) -> bool:
    missing = settings.missing([group, "company"])
    enabled = getattr(settings, f"{group}_enabled")
    if missing:
        checks.add(
            group, "settings", "FAIL", f"missing {', '.join(missing)}",
            f"set {', '.join(missing)} in the environment or .env (see .env.example)",
        )  # fmt: skip
        return False
    state = "enabled" if enabled else f"configured but {group.upper()}_ENABLED is false"
    checks.add(group, "settings", "OK", state)
    return True


def _check_anaf(settings: Settings, checks: _Checks) -> None:
    from invoicesync_dagster.clients.anaf.efactura import AnafAuthError, AnafError, EfacturaClient
    from invoicesync_dagster.clients.anaf.oauth import (
        AnafOAuthClient,
        AnafOAuthError,
        TokenProvider,
        TokenStore,
    )

    environment = "test" if settings.anaf_use_staging else "production"
    ready = _settings_check(settings, "anaf", checks)
    store = TokenStore(settings.anaf_token_store_path)
    pair = None
    try:
        pair = store.load()
    except AnafOAuthError as error:
        checks.add("anaf", "tokens", "FAIL", str(error), "run `invoicesync anaf login`")
    else:
        now = datetime.now(BUCHAREST)
        if pair is None:
            checks.add(
                "anaf", "tokens", "FAIL", f"no token store at {store.path}",
                "run `invoicesync anaf login` with the company's certificate at hand",
            )  # fmt: skip
        elif pair.refresh_expires_at <= now:
            checks.add(
                "anaf", "tokens", "FAIL", "the refresh token has expired",
                "run `invoicesync anaf login` with the company's certificate (once a year)",
            )  # fmt: skip
        else:
            soon = pair.refresh_expires_at - now < timedelta(days=30)
            checks.add(
                "anaf", "tokens", "OK",
                f"access token until {_expiry_text(pair.access_expires_at)}; refresh token "
                f"until {_expiry_text(pair.refresh_expires_at)}",
                "log in again soon: `invoicesync anaf login`" if soon else "",
            )  # fmt: skip
    if ready and pair is not None:
        assert settings.anaf_client_secret is not None  # checked by settings.missing
        oauth = AnafOAuthClient(
            settings.anaf_oauth_base, settings.anaf_client_id or "",
            settings.anaf_client_secret.get_secret_value(), settings.anaf_redirect_uri,
        )  # fmt: skip
        tokens = TokenProvider(oauth, store)
        client = EfacturaClient(
            settings.anaf_api_base, settings.anaf_public_api_base, tokens.access_token,
            staging=settings.anaf_use_staging, timeout=30, max_retries=0,
        )  # fmt: skip
        try:
            with client:
                page = client.list_recent(settings.company_cui or "", 1)
            checks.add(
                "anaf", "e-Factura API", "OK",
                f"{environment} API at {settings.anaf_api_base} answered the message list "
                f"({page.total_messages} messages in the last day)",
            )  # fmt: skip
        except (AnafAuthError, AnafOAuthError) as error:
            checks.add(
                "anaf", "e-Factura API", "FAIL", str(error),
                "run `invoicesync anaf login`; check that the certificate has SPV rights for "
                f"CUI {settings.company_cui} and the app is registered for e-Factura",
            )  # fmt: skip
        except (AnafError, ValueError) as error:
            checks.add(
                "anaf", "e-Factura API", "FAIL", str(error),
                f"check ANAF_API_BASE ({settings.anaf_api_base}) and the network; ANAF's "
                "status page: https://www.anaf.ro",
            )  # fmt: skip
    else:
        checks.add("anaf", "e-Factura API", "SKIP", "needs the settings and tokens above")
    public = EfacturaClient(
        settings.anaf_api_base, settings.anaf_public_api_base, lambda: "",
        staging=settings.anaf_use_staging, timeout=30, max_retries=0,
    )  # fmt: skip
    try:
        with public:
            public.validate(b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:'
                            b'Invoice-2"/>')  # fmt: skip
        checks.add(
            "anaf", "public services", "OK",
            f"validare at {settings.anaf_public_api_base} answered",
        )  # fmt: skip
    except AnafError as error:
        checks.add(
            "anaf", "public services", "FAIL", str(error),
            f"check ANAF_PUBLIC_API_BASE ({settings.anaf_public_api_base}) and the network",
        )  # fmt: skip


def _check_smartbill(settings: Settings, checks: _Checks) -> None:
    from invoicesync_dagster.clients.smartbill import (
        SmartBillAuthError,
        SmartBillClient,
        SmartBillError,
    )

    if not _settings_check(settings, "smartbill", checks):
        checks.add("smartbill", "API", "SKIP", "needs the settings above")
        return
    assert settings.smartbill_token is not None  # checked by settings.missing
    client = SmartBillClient(
        settings.smartbill_api_base, settings.smartbill_username or "", settings.smartbill_token,
        settings.company_cui or "", timeout_s=30, max_retries=0,
    )  # fmt: skip
    fix_login = (
        "check SMARTBILL_USERNAME (the account's e-mail) and SMARTBILL_TOKEN (SmartBill > "
        f"Contul meu > Integrari > API), and that company {settings.company_cui} is in it"
    )
    series = settings.smartbill_series or ""
    try:
        with client:
            taxes = client.taxes()
            rates = ", ".join(f"{t.name} {t.percentage} %" for t in taxes)
            checks.add("smartbill", "taxes", "OK", f"GET tax: {rates or 'no VAT rates'}")
            found = {s.name: s for s in client.series("f")}
        if series in found:
            checks.add(
                "smartbill", "series", "OK",
                f"invoice series {series}, next number {found[series].next_number}",
            )  # fmt: skip
        else:
            checks.add(
                "smartbill", "series", "FAIL",
                f"no invoice series {series!r} (the account has {', '.join(found) or 'none'})",
                "create it in SmartBill (Configurare > Serii documente) or fix SMARTBILL_SERIES",
            )  # fmt: skip
    except SmartBillAuthError as error:
        checks.add("smartbill", "API", "FAIL", str(error), fix_login)
    except SmartBillError as error:
        checks.add(
            "smartbill", "API", "FAIL", str(error),
            f"check SMARTBILL_API_BASE ({settings.smartbill_api_base}) and the network",
        )  # fmt: skip


for _command in (process, process_one, status, download, providers):
    cli.add_command(_command)
