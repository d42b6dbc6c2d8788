"""`efactura_submissions`: the day's ready documents filed with ANAF, exactly once.

The outbox of ARCHITECTURE.md §4.2, decided by `efactura.submission.decide` per document:

* send: the attempt is recorded (`sending`, committed; the document becomes `submitting`, which
  freezes it) before the upload; the index is recorded right after (`sent`, `submitted`);
* an upload whose answer was lost (timeout, 5xx after sending, a crash) is `unknown`: the next
  run reconciles it from ANAF's message list, downloading each unknown message of the seller
  once and comparing its XML with ours (sha256); a match becomes `sent` with its index. Only
  after `reconcile_grace_minutes` without a match (ANAF lists a message once it is processed,
  which can take hours) is the attempt declared `failed`, and the document sent again; ANAF's
  own duplicate detection is the last safety net;
* a refusal before acceptance (400, the firewall page, a limit) is `failed`, sent again by a
  later run; an accepted document is never sent again, whatever is re-run.

No DuckDB connection is held across an HTTP call. The new upload indexes go into the
materialization's `anaf_uploads` metadata, which the status sensor reads (it never opens DuckDB).
"""

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import duckdb
from pydantic import Field

from invoicesync_dagster.clients.anaf.efactura import (
    AnafAuthError,
    AnafError,
    AnafRateLimited,
    AnafUploadOutcomeUnknown,
    EfacturaClient,
)
from invoicesync_dagster.clients.smartbill import (
    SmartBillAuthError,
    SmartBillClient,
    SmartBillError,
    SmartBillOutcomeUnknown,
    SmartBillRateLimited,
)
from invoicesync_dagster.defs.metadata import (
    archive_link,
    markdown_table,
    table_metadata,
    totals_metadata,
    warehouse_link,
)
from invoicesync_dagster.defs.partitions import daily_partitions, partition_day
from invoicesync_dagster.defs.resources import (
    AnafResource,
    SmartBillResource,
    WarehouseResource,
)
from invoicesync_dagster.efactura.model import Document
from invoicesync_dagster.efactura.submission import Attempt, Decision, NextStep, decide
from invoicesync_dagster.settings import load_settings
from invoicesync_dagster.warehouse import archive, submissions

PROVIDER = "anaf"
T = TypeVar("T")
PREVIEW_ROWS = 20

# Where each document of the day stands after the run, by what was decided for it...
_AFTER_STEP = {
    NextStep.SEND: "not sent: filing stopped, next run",
    NextStep.RECONCILE: "answer lost, looked up before anything is sent again",
    NextStep.WAIT: "sent, waiting for ANAF's answer",
    NextStep.DONE: "accepted",
    NextStep.FIX: "rejected: fix it, rebuild the day",
}
# ...unless this run did something with it.
_AFTER_OUTCOME = {
    "uploaded": "sent now",
    "reconciled": "answer found: it had arrived",
    "unknown": "answer lost, looked up before anything is sent again",
    "refused": "refused, sent again next run",
    "created": "created in SmartBill now",
}


class SubmissionConfig(dg.Config):
    # How long an upload with a lost answer may stay unmatched in ANAF's list before it is
    # declared not received and sent again.
    reconcile_grace_minutes: int = 360
    # Only these sources (`invoicesync process --type`): stripe_invoice (with the credit notes
    # of invoices), stripe_charge (with their refunds); empty: all.
    source_types: list[str] = Field(default_factory=list)
    # Only these documents (`invoicesync process-one`); empty: all of the day.
    document_ids: list[str] = Field(default_factory=list)
    # Send rejected documents again even though their XML did not change (what ANAF objected to
    # was fixed elsewhere, e.g. the seller's registration); same number, a new attempt.
    resend_rejected: bool = False


@dataclass(frozen=True)
class _Filing:
    document_id: str
    invoice_number: str
    kind: str
    issue_date: date
    xml: bytes
    xml_sha256: str
    buyer_country: str | None
    buyer_tax_id: str | None
    buyer_vat_id: str | None
    document_json: str
    currency: str
    total: Decimal
    buyer_name: str | None

    @property
    def standard(self) -> str:
        return "CN" if self.kind == "credit_note" else "UBL"

    @property
    def foreign(self) -> bool:
        return bool(self.buyer_country) and self.buyer_country != "RO"

    @property
    def b2c(self) -> bool:
        """A Romanian private buyer (CNP or 0000000000000): uploadb2c."""
        tax_id = self.buyer_tax_id or ""
        return not self.foreign and not self.buyer_vat_id and len(tax_id) == 13


@dg.asset(
    description="The day's ready documents filed with ANAF e-Factura (or created in SmartBill "
    "when SMARTBILL_ENABLED), exactly once: one row per attempt in efactura_submissions "
    "(recorded before sending), upload indexes in the metadata for anaf_status_sensor. An "
    "upload whose answer was lost is reconciled from ANAF's message list before anything is "
    "sent again; accepted documents are never sent again. ANAF's answers (signed zip, error "
    "zip, PDF) are archived under INVOICESYNC_HOME/archive/YYYY/MM by efactura_status_job; "
    "v_invoice_status shows each document's filing state.",
    metadata=table_metadata("efactura_submissions"),
    group_name="efactura",
    kinds={"anaf", "duckdb"},
    owners=["team:billing"],
    partitions_def=daily_partitions,
    deps=["efactura_documents"],
    pool="efactura_api",
)
def efactura_submissions(
    context: dg.AssetExecutionContext,
    config: SubmissionConfig,
    warehouse: WarehouseResource,
    anaf: AnafResource,
    smartbill: SmartBillResource,
) -> dg.MaterializeResult:
    day = partition_day(context.partition_time_window)
    settings = load_settings()
    if settings.anaf_enabled and settings.smartbill_enabled:
        raise dg.Failure(
            description="ANAF_ENABLED and SMARTBILL_ENABLED are both true: SmartBill files its "
            "invoices with ANAF itself, so every document would reach ANAF twice. Enable one."
        )
    if settings.smartbill_enabled:
        return _file_with_smartbill(context, config, warehouse, smartbill, day)
    if not settings.anaf_enabled:
        return dg.MaterializeResult(
            metadata={"skipped": "ANAF_ENABLED and SMARTBILL_ENABLED are false: nothing is filed"}
        )
    with warehouse.connect() as connection:
        filings = _filings(connection, day, config)
        history = submissions.attempts(connection, [f.document_id for f in filings], PROVIDER)
        started = _started(connection, [f.document_id for f in filings], PROVIDER)
    steps = {f.document_id: _decide(history.get(f.document_id, []), f, config) for f in filings}
    cif = anaf.company_cif
    uploads: list[dict[str, Any]] = []
    outcome: Counter[str] = Counter()
    after = {f.document_id: _AFTER_STEP[steps[f.document_id].step] for f in filings}
    stop_reason = None
    with anaf.client() as client:
        unsure = [f for f in filings if steps[f.document_id].step is NextStep.RECONCILE]
        if unsure:
            found = _reconcile(client, warehouse, cif, unsure, history, started, config, context)
            uploads += found
            outcome["reconciled"] += len(found)
            after.update({entry["document_id"]: _AFTER_OUTCOME["reconciled"] for entry in found})
        for filing in filings:
            decision = steps[filing.document_id]
            outcome[decision.step.value] += 1
            if decision.step is not NextStep.SEND or stop_reason:
                continue
            try:
                uploads.append(_send(client, warehouse, cif, filing, decision.next_attempt))
                _tally(outcome, after, filing, "uploaded")
            except AnafUploadOutcomeUnknown:
                _tally(outcome, after, filing, "unknown")
                context.log.warning(
                    f"{filing.invoice_number}: ANAF's answer to the upload was lost; the next "
                    "run looks it up in ANAF's message list before sending anything again"
                )
            except (AnafAuthError, AnafRateLimited) as error:
                # Neither clears up by trying the next document: stop here, nothing is lost.
                stop_reason = str(error)
                _tally(outcome, after, filing, "refused")
            except AnafError as error:
                _tally(outcome, after, filing, "refused")
                context.log.error(f"{filing.invoice_number}: ANAF refused the upload: {error}")
    if stop_reason:
        context.log.error(f"filing stopped for this run: {stop_reason}")
    return dg.MaterializeResult(
        metadata={
            **_summary(filings, after, day, warehouse.path),
            **archive_link(load_settings().invoicesync_home, day),
            "anaf_uploads": dg.MetadataValue.json(uploads),
            "uploaded": outcome["uploaded"],
            "reconciled": outcome["reconciled"],
            "answer_lost": outcome["unknown"],
            "refused": outcome["refused"],
            "waiting_for_anaf": outcome[NextStep.WAIT.value],
            "already_accepted": outcome[NextStep.DONE.value],
            "rejected_unchanged": outcome[NextStep.FIX.value],
            "stopped": stop_reason or "",
        }
    )


def _decide(attempts: Sequence[Attempt], filing: _Filing, config: SubmissionConfig) -> Decision:
    decision = decide(attempts, filing.xml_sha256)
    if decision.step is NextStep.FIX and config.resend_rejected:
        return Decision(NextStep.SEND, "rejected; sent again on request", decision.next_attempt)
    return decision


def _filings(
    connection: duckdb.DuckDBPyConnection, day: date, config: SubmissionConfig
) -> list[_Filing]:
    rows = connection.execute(
        """
        SELECT document_id, invoice_number, kind, issue_date, xml, xml_sha256,
               document->'buyer'->'address'->>'country', document->'buyer'->>'tax_registration_id',
               document->'buyer'->>'vat_id', source_type, corrects, document, currency, total,
               buyer_name
        FROM efactura_documents
        WHERE partition_date = ? AND xml IS NOT NULL AND status NOT IN ('held', 'blocked')
        ORDER BY number
        """,
        [day],
    ).fetchall()
    wanted_types = set(config.source_types)
    wanted_ids = set(config.document_ids)
    filings = []
    for row in rows:
        # A credit note follows the kind of what it corrects (stripe_invoice:… or stripe_charge:…).
        family = (row[10] or "").partition(":")[0] or row[9]
        if wanted_types and family not in wanted_types:
            continue
        if wanted_ids and row[0] not in wanted_ids:
            continue
        filings.append(
            _Filing(
                row[0], row[1], row[2], row[3], row[4].encode("utf-8"), *row[5:9], row[11],
                row[12], row[13], row[14],
            )
        )  # fmt: skip
    return filings


def _summary(
    filings: Sequence[_Filing], after: Mapping[str, str], day: date, database: Path
) -> dict[str, Any]:
    """What the UI shows of a filing run: the day's documents, their totals and where each
    stands now (from what the run already holds; nothing is read again)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for filing in filings:
        totals[filing.currency] += -filing.total if filing.kind == "credit_note" else filing.total
    by_state = Counter(after.values())
    rows = [
        [f.invoice_number, f.buyer_name or "", f.currency, str(f.total), after[f.document_id]]
        for f in filings
    ]
    return {
        "dagster/row_count": len(filings),
        "totals_by_currency": dg.MetadataValue.json({c: str(t) for c, t in sorted(totals.items())}),
        **totals_metadata(dict(sorted(totals.items()))),
        "filing_states": dg.MetadataValue.json(dict(sorted(by_state.items()))),
        "preview": dg.MetadataValue.md(
            markdown_table(
                ["number", "buyer", "currency", "total", "filing"], rows, limit=PREVIEW_ROWS
            )
        ),
        **warehouse_link(database),
        "status_query": "SELECT invoice_number, filing_state, errors FROM v_invoice_status "
        f"WHERE partition_date = '{day}'",
    }


def _started(
    connection: duckdb.DuckDBPyConnection, ids: Sequence[str], provider: str
) -> dict[str, datetime]:
    """When each document's last attempt was recorded."""
    rows = connection.execute(
        "SELECT document_id, max(created_at) FROM efactura_submissions WHERE provider = ? "
        "AND document_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1",
        [provider, sorted(ids)],
    ).fetchall()
    return dict(rows)


def _set_status(connection: duckdb.DuckDBPyConnection, document_id: str, status: str) -> None:
    connection.execute(
        "UPDATE efactura_documents SET status = ? WHERE document_id = ?", [status, document_id]
    )


def _attempt(
    warehouse: WarehouseResource,
    filing: _Filing,
    provider: str,
    attempt: int,
    send: Callable[[], T],
    *,
    lost: type[Exception],
    refused: type[Exception],
    expected_reference: str | None = None,
) -> T:
    """One attempt of the outbox: recorded (`sending`, the document frozen) and committed before
    `send` runs; a lost answer left `unknown` to reconcile, a refusal `failed` to send again."""
    with warehouse.connect() as connection:
        submissions.begin(
            connection, filing.document_id, provider, attempt, filing.invoice_number,
            filing.xml_sha256, expected_reference=expected_reference,
        )  # fmt: skip
        _set_status(connection, filing.document_id, "submitting")
    try:
        return send()
    except lost as error:
        with warehouse.connect() as connection:
            submissions.mark_unknown(connection, filing.document_id, provider, attempt, str(error))
        raise
    except refused as error:
        with warehouse.connect() as connection:
            submissions.mark_failed(connection, filing.document_id, provider, attempt, [str(error)])
            _set_status(connection, filing.document_id, "ready")
        raise


def _send(
    client: EfacturaClient,
    warehouse: WarehouseResource,
    cif: str,
    filing: _Filing,
    attempt: int,
) -> dict[str, Any]:
    receipt = _attempt(
        warehouse, filing, PROVIDER, attempt,
        lambda: client.upload(filing.xml, cif=cif, standard=filing.standard, b2c=filing.b2c,
                              extern=filing.foreign),
        lost=AnafUploadOutcomeUnknown, refused=AnafError,
    )  # fmt: skip
    with warehouse.connect() as connection:
        submissions.mark_sent(connection, filing.document_id, PROVIDER, attempt, receipt.index)
        _set_status(connection, filing.document_id, "submitted")
    return _upload_entry(filing, attempt, receipt.index)


def _tally(outcome: Counter[str], after: dict[str, str], filing: _Filing, kind: str) -> None:
    """Count what happened to `filing` and say where it now stands (the run's preview)."""
    outcome[kind] += 1
    after[filing.document_id] = _AFTER_OUTCOME[kind]


def _upload_entry(filing: _Filing, attempt: int, index: str) -> dict[str, Any]:
    return {
        "index": index,
        "document_id": filing.document_id,
        "attempt": attempt,
        "invoice_number": filing.invoice_number,
        "issue_date": filing.issue_date.isoformat(),
        "uploaded_at": datetime.now(UTC).isoformat(),
    }


def _reconcile(
    client: EfacturaClient,
    warehouse: WarehouseResource,
    cif: str,
    unsure: Sequence[_Filing],
    history: dict[str, list[Attempt]],
    started: dict[str, datetime],
    config: SubmissionConfig,
    context: dg.AssetExecutionContext,
) -> list[dict[str, Any]]:
    """Match attempts whose outcome is unknown with the messages ANAF lists for the seller."""
    with warehouse.connect() as connection:
        known = {
            row[0]
            for row in connection.execute(
                "SELECT upload_index FROM efactura_submissions "
                "WHERE provider = 'anaf' AND upload_index IS NOT NULL"
            ).fetchall()
        }
    now = datetime.now(UTC)
    oldest = min(started[f.document_id] for f in unsure) - timedelta(minutes=10)
    by_sha = {f.xml_sha256: f for f in unsure}
    found: list[dict[str, Any]] = []
    # ANAF refuses an end after its own clock: stay a minute behind.
    for message in client.iter_messages(cif, oldest, now - timedelta(minutes=1)):
        if message.upload_index in known or not by_sha:
            continue
        known.add(message.upload_index)
        answer = client.download(message.id)
        if answer.is_error:
            continue  # a nok answer holds ANAF's errors, not our XML: matched by its status
        filing = by_sha.pop(hashlib.sha256(answer.document).hexdigest(), None)
        if filing is None:
            continue
        attempt = history[filing.document_id][-1].attempt
        # Kept where the status job looks first: it need not download the answer again.
        archive.store(
            load_settings().invoicesync_home,
            filing.issue_date,
            f"{archive.answer_stem(filing.invoice_number, message.upload_index)}.zip",
            answer.content,
        )
        with warehouse.connect() as connection:
            submissions.mark_sent(
                connection, filing.document_id, PROVIDER, attempt, message.upload_index
            )
            _set_status(connection, filing.document_id, "submitted")
        context.log.info(
            f"{filing.invoice_number}: found in ANAF's list as upload {message.upload_index}"
        )
        found.append(_upload_entry(filing, attempt, message.upload_index))
    grace = timedelta(minutes=config.reconcile_grace_minutes)
    for filing in by_sha.values():
        last = history[filing.document_id][-1]
        if now - started[filing.document_id] < grace:
            continue
        with warehouse.connect() as connection:
            submissions.mark_failed(
                connection, filing.document_id, PROVIDER, last.attempt,
                [f"not in ANAF's message list {config.reconcile_grace_minutes} minutes after "
                 "it was sent: taken as not received, sent again"],
            )  # fmt: skip
            _set_status(connection, filing.document_id, "ready")
        context.log.warning(
            f"{filing.invoice_number}: attempt {last.attempt} is not in ANAF's list after the "
            "grace period; the next run sends it again"
        )
    return found


# -- SmartBill ------------------------------------------------------------------------------------
# SmartBill issues the invoice in its own series (SMARTBILL_SERIES, its own numbers; ours is in
# the observations) and files it with ANAF itself: created is final for us. Before each create
# the number SmartBill will give is recorded; an answer lost on the way back is reconciled by
# asking whether that number now exists with our total.


def _file_with_smartbill(
    context: dg.AssetExecutionContext,
    config: SubmissionConfig,
    warehouse: WarehouseResource,
    smartbill: SmartBillResource,
    day: date,
) -> dg.MaterializeResult:
    provider = "smartbill"
    with warehouse.connect() as connection:
        filings = _filings(connection, day, config)
        history = submissions.attempts(connection, [f.document_id for f in filings], provider)
    series = smartbill.series
    outcome: Counter[str] = Counter()
    created: list[str] = []
    after: dict[str, str] = {}
    stop_reason = None
    with smartbill.client() as client:
        for filing in filings:
            attempts = history.get(filing.document_id, [])
            decision = _decide(attempts, filing, config)
            outcome[decision.step.value] += 1
            after[filing.document_id] = _AFTER_STEP[decision.step]
            if stop_reason:
                continue
            try:
                if decision.step is NextStep.RECONCILE:
                    name = _reconcile_smartbill(client, warehouse, filing, attempts[-1], series)
                    if name:
                        created.append(name)
                        _tally(outcome, after, filing, "reconciled")
                elif decision.step is NextStep.SEND:
                    created.append(
                        _create(client, warehouse, filing, decision.next_attempt, series)
                    )
                    _tally(outcome, after, filing, "created")
            except SmartBillOutcomeUnknown:
                _tally(outcome, after, filing, "unknown")
                context.log.warning(
                    f"{filing.invoice_number}: SmartBill's answer was lost; the next run checks "
                    "whether it created the invoice before creating anything again"
                )
            except (SmartBillAuthError, SmartBillRateLimited) as error:
                stop_reason = str(error)
                _tally(outcome, after, filing, "refused")
            except SmartBillError as error:
                _tally(outcome, after, filing, "refused")
                context.log.error(f"{filing.invoice_number}: SmartBill refused it: {error}")
    if stop_reason:
        context.log.error(f"filing stopped for this run: {stop_reason}")
    return dg.MaterializeResult(
        metadata={
            **_summary(filings, after, day, warehouse.path),
            "smartbill_invoices": dg.MetadataValue.json(created),
            "created": outcome["created"],
            "reconciled": outcome["reconciled"],
            "answer_lost": outcome["unknown"],
            "refused": outcome["refused"],
            "already_created": outcome[NextStep.DONE.value],
            "stopped": stop_reason or "",
        }
    )


def _create(
    client: SmartBillClient,
    warehouse: WarehouseResource,
    filing: _Filing,
    attempt: int,
    series: str,
) -> str:
    document = Document.model_validate_json(filing.document_json)
    invoice = _attempt(
        warehouse, filing, "smartbill", attempt,
        lambda: client.create_invoice(document, series),
        lost=SmartBillOutcomeUnknown, refused=SmartBillError,
        expected_reference=f"{series}{client.next_number(series)}",
    )  # fmt: skip
    _created(warehouse, filing, attempt, invoice.name)
    return invoice.name


def _created(warehouse: WarehouseResource, filing: _Filing, attempt: int, name: str) -> None:
    with warehouse.connect() as connection:
        submissions.mark_sent(connection, filing.document_id, "smartbill", attempt, name)
        submissions.mark_final(connection, filing.document_id, "smartbill", attempt, accepted=True)
        _set_status(connection, filing.document_id, "accepted")


def _reconcile_smartbill(
    client: SmartBillClient,
    warehouse: WarehouseResource,
    filing: _Filing,
    last: Attempt,
    series: str,
) -> str | None:
    with warehouse.connect() as connection:
        expected = submissions.reference(connection, filing.document_id, "smartbill", last.attempt)
    number = (expected or "").removeprefix(series)
    upcoming = client.next_number(series)
    if not number or int(upcoming) <= int(number):
        # SmartBill has not issued that number: the create never happened.
        with warehouse.connect() as connection:
            submissions.mark_failed(
                connection, filing.document_id, "smartbill", last.attempt,
                [f"SmartBill never issued {expected}: not created, created again next run"],
            )  # fmt: skip
            _set_status(connection, filing.document_id, "ready")
        return None
    document = Document.model_validate_json(filing.document_json)
    total = document.totals.tax_inclusive_total + document.totals.rounding_amount
    status = client.payment_status(series, number)
    if status.total != total:
        raise SmartBillError(
            f"SmartBill issued {expected} while the answer to {filing.invoice_number} was lost, "
            f"but for {status.total} instead of {total}: check that invoice in SmartBill by "
            "hand before anything is created again (the attempt stays unknown)"
        )
    _created(warehouse, filing, last.attempt, expected or "")
    return expected
