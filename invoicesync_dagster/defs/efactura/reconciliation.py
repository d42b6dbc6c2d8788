"""`efactura_reconciliation`: once a month, the books checked against ANAF's own message list, so
that every final state is confirmed before the VAT return and before ANAF forgets the messages
(it keeps them 60 days, EFACTURA.md §1).

For the ANAF uploads of the documents issued in the month (efactura_submissions attempts with an
upload index), `listaMesajePaginatieFactura` is read for the seller's CUI, page after page, from
the first of the month to `margin_days` after its end (uploads follow the issue by days),
bounded by ANAF's 60 days and by now. Then, per upload:

* `sent` in the books and answered at ANAF (listed, or sent more than a day ago: an upload ANAF
  could not read is never listed) → the answer is recorded exactly as efactura_status_job does
  (stareMesaj, downloaded once, archived, one transaction): `answer_recorded`, repaired;
* `accepted` → ANAF must list a FACTURA TRIMISA for the index, and its signed zip must be in the
  archive; a missing zip is downloaded and archived again while ANAF has it (`archive_restored`);
* `rejected` → ANAF must list ERORI FACTURA (an unreadable XML has no message, nothing to check);
* ANAF lists, within the month, a FACTURA TRIMISA or ERORI FACTURA whose index the books do not
  know → `unknown_upload` (made by hand in SPV, by another program, or an upload the outbox gave
  up on that reached ANAF after all).

A final state in the books is never changed here: a contradiction is a finding for a person.
The month's findings replace those of its previous run in the `efactura_reconciliation` table;
the `reconciliation_clean` check fails (ERROR) while one of them is not repaired.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field

from invoicesync_dagster.clients.anaf.efactura import (
    TIP_ERRORS,
    TIP_SENT,
    AnafAuthError,
    AnafError,
    AnafMessageExpired,
    AnafRateLimited,
    EfacturaClient,
    Message,
)
from invoicesync_dagster.clients.anaf.oauth import AnafOAuthError
from invoicesync_dagster.defs.efactura import status
from invoicesync_dagster.defs.metadata import markdown_table, table_metadata
from invoicesync_dagster.defs.partitions import FIRST_DAY, TIMEZONE
from invoicesync_dagster.defs.resources import AnafResource, WarehouseResource
from invoicesync_dagster.settings import load_settings
from invoicesync_dagster.warehouse import archive, reconciliation
from invoicesync_dagster.warehouse.reconciliation import FiledUpload, Finding

CHECK = "reconciliation_clean"
# ANAF refuses a list window older than 60 days; an hour less leaves room for clock skew.
LISTED_FOR = timedelta(days=60) - timedelta(hours=1)
# A final answer appears in ANAF's lists seconds to ~15 minutes after stareMesaj gives it.
LIST_LAG = timedelta(minutes=30)
# A `sent` upload this old without a listed answer is asked about with stareMesaj.
ASK_AFTER = timedelta(days=1)
NOT_LISTED = "not listed"
BUCHAREST = ZoneInfo(TIMEZONE)

monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date=FIRST_DAY, timezone=TIMEZONE, end_offset=0
)

# What each kind of finding means and what to do about it (the check's description shows them).
FIXES = {
    "answer_recorded": "Repaired: ANAF's final answer had not been recorded (the status "
    "follow-up missed it); it was downloaded, archived and recorded now. Nothing to do.",
    "archive_restored": "Repaired: the signed zip was missing from the archive; it was "
    "downloaded from ANAF again. Find out what deleted it: the archive is the legal copy.",
    "archive_missing": "The signed zip is missing from INVOICESYNC_HOME/archive and ANAF no "
    "longer gives it (60 days). Restore the file from a backup, or download it in SPV by the "
    "upload index.",
    "accepted_but_rejected_at_anaf": "The books say accepted, ANAF lists only errors for the "
    "upload: the invoice was NOT filed. Check the index in SPV, then set the attempt and the "
    "document to 'rejected' by hand (efactura_submissions, efactura_documents) and re-run the "
    "day with resend_rejected.",
    "accepted_not_listed": "The books say accepted, ANAF lists nothing for the upload. Look the "
    "index up in SPV: if ANAF does not know it, the invoice was never filed; set the attempt to "
    "'failed' and the document to 'ready' by hand and re-run the day.",
    "rejected_but_accepted_at_anaf": "The books say rejected, ANAF accepted the upload: the "
    "invoice IS filed. If it was sent again, the number exists twice at ANAF: cancel one with a "
    "credit note. Set the attempt to 'accepted' by hand.",
    "rejected_not_listed": "The books say rejected (with ANAF's error zip), ANAF lists nothing "
    "for the upload. Look the index up in SPV and correct the books to what ANAF says.",
    "no_final_answer": "ANAF still processes the upload a day or more after it was sent "
    "(stareMesaj: in prelucrare). The status sensor keeps asking; if it stays so, ask ANAF's "
    "support with the index.",
    "unknown_upload": "ANAF lists an upload for our CUI that the books do not know: made by hand "
    "in SPV, by another program, or an upload the outbox gave up on that reached ANAF after all. "
    "Look it up in SPV: a second copy of one of our invoices is cancelled with a credit note; "
    "a real sale is entered in the books.",
    "check_failed": "ANAF could not be asked about this upload (the fix column says why). "
    "Re-run the month's partition once the cause is gone.",
}
REPAIRED = ("answer_recorded", "archive_restored")


class ReconciliationConfig(dg.Config):
    # Uploads of the month's documents made after the month ended (late filings, re-sends of
    # rejected documents) are looked for this many days into the next month.
    margin_days: int = Field(default=15, ge=0, le=60)
    render_pdf: bool = True  # as efactura_status_job: archive ANAF's PDF of a recorded answer


@dataclass
class _Listed:
    """What ANAF's list says about the seller's uploads, by index."""

    kinds: dict[str, set[str]] = field(default_factory=dict)
    first: dict[str, Message] = field(default_factory=dict)  # the first message of each index
    messages: int = 0  # every message read, of every kind
    pages: int = 0  # listaMesajePaginatieFactura calls

    def add(self, message: Message) -> None:
        self.messages += 1
        if message.kind not in (TIP_SENT, TIP_ERRORS) or not message.upload_index:
            return  # invoices received from suppliers, buyer messages
        self.kinds.setdefault(message.upload_index, set()).add(message.kind)
        self.first.setdefault(message.upload_index, message)

    def state(self, index: str) -> str:
        kinds = self.kinds.get(index, set())
        if TIP_SENT in kinds:
            return TIP_SENT
        return TIP_ERRORS if TIP_ERRORS in kinds else NOT_LISTED


@dataclass
class _Run:
    """One reconciliation's progress: findings, counts, and why ANAF stopped being asked."""

    month: date
    findings: list[Finding] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    stopped: str = ""

    def find(
        self,
        upload: FiledUpload | None,
        anaf_state: str,
        kind: str,
        fix: str = "",
        *,
        index: str | None = None,
    ) -> None:
        self.findings.append(
            Finding(
                month=self.month,
                document_id=upload.document_id if upload else None,
                invoice_number=upload.invoice_number if upload else None,
                upload_index=upload.upload_index if upload else index,
                our_state=upload.state if upload else None,
                anaf_state=anaf_state,
                finding=kind,
                fix=fix or FIXES[kind],
                repaired=kind in REPAIRED,
            )
        )

    def failed(self, upload: FiledUpload, what: str, error: Exception) -> None:
        """A call about one upload failed; a limit or a login problem stops the later calls."""
        message = status.redact(str(error))
        if isinstance(error, AnafRateLimited | AnafAuthError | AnafOAuthError):
            self.stopped = message
        self.find(upload, "error", "check_failed", f"{what}: {message}. {_what_to_do(error)}")


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime) -> datetime:
    return datetime.fromtimestamp(moment.timestamp(), UTC)


@dg.asset(
    description="Once a month: every ANAF upload of the month's documents checked against ANAF's "
    "message list (FACTURA TRIMISA ↔ accepted, ERORI FACTURA ↔ rejected). Answers the status "
    "follow-up missed are recorded, missing archive zips downloaded again; contradictions and "
    "uploads the books do not know become rows of the efactura_reconciliation table (query it "
    "with the duckdb CLI). A final state is never changed.",
    group_name="efactura_filing",
    kinds={"anaf", "duckdb"},
    owners=["team:billing"],
    metadata=table_metadata("efactura_reconciliation"),
    partitions_def=monthly_partitions,
    deps=["efactura_submissions"],
    pool="efactura_api",
    check_specs=[
        dg.AssetCheckSpec(
            CHECK,
            asset="efactura_reconciliation",
            description="The month's books agree with ANAF: fails (ERROR) while a finding in "
            "efactura_reconciliation is not repaired. What each kind means and how to fix it: "
            + " ".join(f"{kind}: {fix}" for kind, fix in FIXES.items()),
        )
    ],
)
def efactura_reconciliation(
    context: dg.AssetExecutionContext,
    config: ReconciliationConfig,
    warehouse: WarehouseResource,
    anaf: AnafResource,
) -> dg.MaterializeResult:
    window = context.partition_time_window
    month_start, month_end = _utc(window.start), _utc(window.end)
    month = window.start.date()
    settings = load_settings()
    if not settings.anaf_enabled:
        skipped = "ANAF_ENABLED is false: nothing was filed with ANAF, nothing to reconcile"
        return dg.MaterializeResult(
            metadata={"skipped": skipped},
            check_results=[
                dg.AssetCheckResult(check_name=CHECK, passed=True, metadata={"skipped": skipped})
            ],
        )
    now = _now()
    start = max(month_start, now - LISTED_FOR)
    end = min(month_end + timedelta(days=config.margin_days), now - timedelta(minutes=1))
    with warehouse.connect() as connection:
        uploads = reconciliation.month_uploads(connection, month, _last_day(window.end))
        known = reconciliation.known_indexes(connection)
    run = _Run(month)
    home = settings.invoicesync_home
    with anaf.client() as client:
        listed = _read_list(client, anaf.company_cif, start, end)
        for upload in uploads:
            anaf_state = listed.state(upload.upload_index)
            if upload.state == "sent":
                if anaf_state == NOT_LISTED and not _older(upload.sent_at, now, ASK_AFTER):
                    run.counts["waiting_for_anaf"] += 1
                else:
                    _record_answer(run, client, warehouse, home, upload, config, context.log)
                continue
            covered = _covered(upload, start, end)
            if anaf_state == NOT_LISTED and not covered:
                run.counts["unverifiable"] += 1  # before ANAF's window: only the archive is checked
            else:
                run.counts["verified"] += 1
            if upload.state == "accepted":
                if anaf_state == TIP_ERRORS:
                    run.find(upload, anaf_state, "accepted_but_rejected_at_anaf")
                elif anaf_state == NOT_LISTED and covered:
                    run.find(upload, anaf_state, "accepted_not_listed")
                _check_archive(run, client, warehouse, home, upload, listed)
            elif anaf_state == TIP_SENT:
                run.find(upload, anaf_state, "rejected_but_accepted_at_anaf")
            elif anaf_state == NOT_LISTED and covered and upload.download_id:
                # (an XML ANAF could not read has no download id and is never listed)
                run.find(upload, anaf_state, "rejected_not_listed")
    for message in listed.first.values():
        if message.upload_index in known or not _in_month(message, month_start, month_end):
            continue  # ours, or a message the next month's reconciliation looks at
        run.find(None, message.kind, "unknown_upload", _unknown_fix(message),
                 index=message.upload_index)  # fmt: skip
    with warehouse.connect() as connection:
        reconciliation.replace_month(connection, month, run.findings)
    for finding in run.findings:
        text = f"{finding.invoice_number or '?'} (upload {finding.upload_index}): {finding.finding}"
        if finding.repaired:
            context.log.info(text)
        else:
            context.log.warning(f"{text}: {finding.fix}")
    if run.stopped:
        context.log.error(f"stopped asking ANAF: {run.stopped}")
    return _result(run, listed, len(uploads), start, end)


def _local(moment: datetime) -> str:
    return f"{moment.astimezone(BUCHAREST):%Y-%m-%d %H:%M}"


def _last_day(end: datetime) -> date:
    return end.date() - timedelta(days=1)


def _older(moment: datetime | None, now: datetime, age: timedelta) -> bool:
    return moment is not None and now - moment >= age


def _covered(upload: FiledUpload, start: datetime, end: datetime) -> bool:
    """Whether the list window must hold the message of this final upload: sent after the
    window opened, answered early enough before it closed."""
    answered = upload.final_at or upload.sent_at
    if upload.sent_at is None or answered is None:
        return False
    return upload.sent_at >= start and answered + LIST_LAG <= end


def _in_month(message: Message, month_start: datetime, month_end: datetime) -> bool:
    if message.created_at is None:
        return True  # undated: reported rather than lost
    return month_start <= message.created_at < month_end


def _unknown_fix(message: Message) -> str:
    when = f" on {message.created_at:%Y-%m-%d %H:%M}" if message.created_at else ""
    return (
        f"ANAF lists {message.kind}{when} for upload {message.upload_index} ({message.details}; "
        f"download id {message.id}). {FIXES['unknown_upload']}"
    )


def _read_list(client: EfacturaClient, cif: str, start: datetime, end: datetime) -> _Listed:
    """Every message of [start, end], page after page (none when the window is empty)."""
    listed = _Listed()
    if start >= end:
        return listed
    page = 1
    try:
        while True:
            result = client.list_messages(cif, start, end, page=page)
            listed.pages += 1
            for message in result.messages:
                listed.add(message)
            if page >= result.total_pages:
                return listed
            page += 1
    except (AnafError, AnafOAuthError) as error:
        raise dg.Failure(
            description=status.redact(
                f"ANAF's message list (page {page}) could not be read: {error}. "
                f"{_what_to_do(error)} Nothing was compared or recorded."
            )
        ) from error


def _what_to_do(error: Exception) -> str:
    if isinstance(error, AnafRateLimited):
        return "ANAF's daily limit is reached: re-run the partition tomorrow"
    if isinstance(error, AnafAuthError | AnafOAuthError):
        return "Log in again (`invoicesync anaf login`) and re-run the partition"
    return "Re-run the partition later; if it persists, the error above says what is wrong"


def _record_answer(
    run: _Run,
    client: EfacturaClient,
    warehouse: WarehouseResource,
    home: Path,
    upload: FiledUpload,
    config: ReconciliationConfig,
    log: dg.DagsterLogManager,
) -> None:
    """A `sent` upload: ANAF's answer recorded through the status job's own path."""
    if run.stopped:
        run.find(upload, "not asked", "check_failed", f"Not asked: {run.stopped}")
        return
    check = status.UploadToCheck(
        index=upload.upload_index,
        document_id=upload.document_id,
        attempt=upload.attempt,
        invoice_number=upload.invoice_number,
        issue_date=upload.issue_date.isoformat(),
    )
    zip_name = f"{archive.answer_stem(upload.invoice_number, upload.upload_index)}.zip"
    archived = archive.archive_path(home, upload.issue_date, zip_name).exists()
    run.counts["status_calls"] += 1
    try:
        outcome = status.check_upload(client, warehouse, home, check, config.render_pdf, log)
    except (AnafError, AnafOAuthError, archive.ArchiveConflict, ValueError) as error:
        run.failed(upload, "stareMesaj/download failed", error)
        return
    if outcome is None:
        run.find(upload, "in_progress", "no_final_answer")
        return
    run.counts["answers_recorded"] += 1
    if outcome["anaf"] in ("ok", "nok") and not archived:
        run.counts["downloads"] += 1  # the status job's path downloads what it has not archived
    fix = f"Recorded {outcome['state']} from ANAF's answer ({outcome['anaf']}). "
    run.find(upload, str(outcome["anaf"]), "answer_recorded", fix + FIXES["answer_recorded"])


def _check_archive(
    run: _Run,
    client: EfacturaClient,
    warehouse: WarehouseResource,
    home: Path,
    upload: FiledUpload,
    listed: _Listed,
) -> None:
    """An accepted upload's signed zip is in the archive, or is downloaded and archived again."""
    name = f"{archive.answer_stem(upload.invoice_number, upload.upload_index)}.zip"
    recorded = home / upload.archive_path if upload.archive_path else None
    if (recorded or archive.archive_path(home, upload.issue_date, name)).exists():
        return
    anaf_state = listed.state(upload.upload_index)
    message = listed.first.get(upload.upload_index)
    download_id = upload.download_id or (message.id if message else None)
    if download_id is None:
        run.find(upload, anaf_state, "archive_missing")
        return
    if run.stopped:
        run.find(upload, "not asked", "check_failed", f"Archive zip missing; {run.stopped}")
        return
    run.counts["downloads"] += 1
    try:
        answer = client.download(download_id)
    except AnafMessageExpired as error:
        fix = f"{status.redact(str(error))}. {FIXES['archive_missing']}"
        run.find(upload, "expired", "archive_missing", fix)
        return
    except (AnafError, AnafOAuthError) as error:
        run.failed(upload, "archive zip missing, download failed", error)
        return
    if answer.upload_index != upload.upload_index or answer.is_error:
        fix = (
            f"ANAF's zip {download_id} is not the signed invoice of upload {upload.upload_index}; "
            f"nothing archived. {FIXES['archive_missing']}"
        )
        run.find(upload, anaf_state, "archive_missing", fix)
        return
    kept = archive.store(home, upload.issue_date, name, answer.content).relative_to(home)
    with warehouse.connect() as connection:
        reconciliation.set_archive_path(
            connection, upload.document_id, upload.attempt, kept.as_posix()
        )
    fix = f"Archived again as {kept.as_posix()}. {FIXES['archive_restored']}"
    run.find(upload, anaf_state, "archive_restored", fix)


def _result(
    run: _Run, listed: _Listed, uploads: int, start: datetime, end: datetime
) -> dg.MaterializeResult:
    kinds = Counter(finding.finding for finding in run.findings)
    open_kinds = Counter(f.finding for f in run.findings if not f.repaired)
    rows = [
        [f.invoice_number or "", f.upload_index or "", f.our_state or "", f.anaf_state,
         f.finding, "yes" if f.repaired else "no"]
        for f in run.findings
    ]  # fmt: skip
    preview = markdown_table(["invoice", "upload", "books", "ANAF", "finding", "repaired"], rows)
    query = f"SELECT * FROM efactura_reconciliation WHERE month = DATE '{run.month}'"
    window = "none: older than ANAF's 60 days"
    if start < end:
        window = f"{_local(start)} to {_local(end)} Europe/Bucharest"
    how_to_fix = markdown_table(["finding", "fix"], [[kind, FIXES[kind]] for kind in open_kinds])
    check = dg.AssetCheckResult(
        check_name=CHECK,
        passed=not open_kinds,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "open_findings": open_kinds.total(),
            "by_kind": dg.MetadataValue.json(dict(open_kinds)),
            "how_to_fix": dg.MetadataValue.md(how_to_fix),
            "query": query,
        },
    )
    return dg.MaterializeResult(
        metadata={
            "month": f"{run.month:%Y-%m}",
            "anaf_window": window,
            "uploads": uploads,
            "messages_read": listed.messages,
            "anaf_list_calls": listed.pages,
            "anaf_status_calls": run.counts["status_calls"],
            "anaf_downloads": run.counts["downloads"],
            "verified": run.counts["verified"],
            "unverifiable": run.counts["unverifiable"],
            "waiting_for_anaf": run.counts["waiting_for_anaf"],
            "answers_recorded": run.counts["answers_recorded"],
            "findings": dg.MetadataValue.json(dict(kinds)),
            "open_findings": open_kinds.total(),
            "findings_preview": dg.MetadataValue.md(preview),
            "query": query,
            "stopped": run.stopped,
        },
        check_results=[check],
    )
