"""ANAF's answers to our uploads: the status job, the sensor that schedules it, failed runs.

* `efactura_status_job` asks `stareMesaj` for the uploads its run config lists. A final answer
  is downloaded once (`ok`: the signed zip; `nok`: the error zip; `XML cu erori nepreluat de
  sistem` has nothing to download, its status answer is kept instead), stored in the archive
  (`INVOICESYNC_HOME/archive/YYYY/MM/<invoice number>_<index>.zip`, by issue date), and then
  recorded in one short DuckDB transaction: the attempt becomes `accepted` or `rejected` (with
  ANAF's errors) and so does the document. An answer already in the archive is read from there,
  not downloaded again (ANAF allows 10 downloads per message a day). Each run reports its
  outcome as an observation of `efactura_status`, which is how the sensor learns what is final.
* `anaf_status_sensor` reads only Dagster's event log, never DuckDB (ARCHITECTURE.md §4.1): new
  `anaf_uploads` in the `efactura_submissions` materializations, finals in the `efactura_status`
  observations. The uploads still pending live in its JSON cursor with their back-off
  (`efactura.polling`, well under ANAF's 100 status calls per message a day); each tick requests
  at most one run of at most MAX_CHECKS_PER_RUN uploads.
* `failed_runs_sensor` appends every failed run of this code location to
  `INVOICESYNC_HOME/failed_runs.jsonl`.
"""

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from lxml import etree

from invoicesync_dagster.clients.anaf import efactura as anaf_api
from invoicesync_dagster.clients.anaf.efactura import (
    AnafAuthError,
    AnafError,
    AnafRateLimited,
    DownloadedZip,
    EfacturaClient,
    Status,
    StatusState,
)
from invoicesync_dagster.clients.anaf.oauth import AnafOAuthError
from invoicesync_dagster.defs.jobs import DUCKDB_WRITER
from invoicesync_dagster.defs.metadata import markdown_table, warehouse_link
from invoicesync_dagster.defs.resources import AnafResource, WarehouseResource
from invoicesync_dagster.efactura.polling import PendingUpload, due
from invoicesync_dagster.settings import load_settings
from invoicesync_dagster.warehouse import archive, submissions

PROVIDER = "anaf"
SUBMISSIONS = dg.AssetKey("efactura_submissions")
STATUS = dg.AssetKey("efactura_status")
OP_NAME = "check_anaf_status"
# One run's status calls, downloads and PDFs stay well inside a sensor interval.
MAX_CHECKS_PER_RUN = 20
# ANAF deletes messages after 60 days: an upload still unanswered by then is given up (logged).
GIVE_UP_AFTER = timedelta(days=60)
EVENTS_PER_PAGE = 100
MAX_PAGES_PER_TICK = 10
FAILED_RUNS_FILE = "failed_runs.jsonl"

REJECTED_XML_ERROR = (
    "ANAF could not read the XML (XML cu erori nepreluat de sistem); it has no answer to "
    "download. Check the XML against the UBL/CIUS-RO schema, fix the document, rebuild the day "
    "and it is sent again"
)

efactura_status = dg.AssetSpec(
    STATUS,
    description="ANAF's answers to our uploads, observed by efactura_status_job: each observation "
    "lists the uploads that became final (accepted/rejected, recorded in DuckDB and archived) "
    "and those still processing, with links to the archived files: ANAF's signed zip (the "
    "legal copy, ANAF deletes it after 60 days) and PDF, or its error zip, under "
    "INVOICESYNC_HOME/archive/YYYY/MM by issue date. anaf_status_sensor reads these "
    "observations instead of DuckDB; query v_invoice_status for every document's state.",
    group_name="efactura_filing",
    kinds={"anaf"},
    owners=["team:billing"],
    deps=[SUBMISSIONS],
)


# -- the job ------------------------------------------------------------------------------------


class UploadToCheck(dg.Config):
    """One upload, as listed in the `anaf_uploads` metadata of efactura_submissions."""

    index: str  # ANAF's index_incarcare
    document_id: str
    attempt: int
    invoice_number: str
    issue_date: str  # YYYY-MM-DD: the archive's month folder


class StatusCheckConfig(dg.Config):
    uploads: list[UploadToCheck]
    render_pdf: bool = True  # archive ANAF's PDF of accepted documents next to the zip


@dataclass
class _Report:
    """What one run found, for the log, the observation and the sensor."""

    final: list[dict[str, Any]] = field(default_factory=list)
    still_processing: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    unknown: list[dict[str, str]] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
    stopped: str = ""
    needs_a_human: bool = False
    archived: list[Path] = field(default_factory=list)  # this run's answers in the archive

    def observation(self, database: Path) -> dg.AssetObservation:
        states = [entry["state"] for entry in self.final]
        links: dict[str, Any] = {**warehouse_link(database)}
        if self.archived:
            links["archive_folder"] = dg.MetadataValue.path(str(self.archived[0].parent))
            links["archived_files"] = dg.MetadataValue.json([str(p) for p in self.archived])
        preview = markdown_table(
            ["number", "upload", "state", "ANAF"],
            [[e["invoice_number"], e["index"], e["state"], e["anaf"]] for e in self.final],
        )
        return dg.AssetObservation(
            asset_key=STATUS,
            metadata={
                **links,
                "preview": dg.MetadataValue.md(preview),
                "final": dg.MetadataValue.json(self.final),
                "still_processing": dg.MetadataValue.json(self.still_processing),
                "failed": dg.MetadataValue.json(self.failed),
                "unknown": dg.MetadataValue.json(self.unknown),
                "not_checked": dg.MetadataValue.json(self.not_checked),
                "accepted": states.count("accepted"),
                "rejected": states.count("rejected"),
                "stopped": self.stopped,
            },
        )


@dataclass(frozen=True)
class _OutboxRow:
    document_id: str
    attempt: int
    state: str


@dg.op(
    name=OP_NAME,
    description="stareMesaj for each listed upload; final answers downloaded once, archived, "
    "and recorded in efactura_submissions and efactura_documents.",
    pool="efactura_api",
    out={},
)
def check_anaf_status(
    context: dg.OpExecutionContext,
    config: StatusCheckConfig,
    warehouse: WarehouseResource,
    anaf: AnafResource,
) -> Iterator[dg.AssetObservation]:
    uploads = list({upload.index: upload for upload in config.uploads}.values())
    if len(uploads) > MAX_CHECKS_PER_RUN:
        raise dg.Failure(
            f"{len(uploads)} uploads listed; one run checks at most {MAX_CHECKS_PER_RUN}. "
            "Split them over several runs (the sensor does)."
        )
    home = load_settings().invoicesync_home
    with warehouse.connect() as connection:
        outbox = _outbox(connection, [upload.index for upload in uploads])
    report = _Report()
    with anaf.client() as client:
        for upload in uploads:
            row = outbox.get(upload.index)
            problem = _mismatch(upload, row)
            if problem:
                report.unknown.append({"index": upload.index, "reason": problem})
                context.log.error(f"upload {upload.index}: {problem}")
                continue
            assert row is not None  # _mismatch says why otherwise
            if row.state != "sent":  # recorded by an earlier run: ANAF is not asked again
                report.final.append(_final(upload, row.state, "recorded earlier"))
                continue
            if report.stopped:
                report.not_checked.append(upload.index)
                continue
            try:
                outcome = check_upload(
                    client, warehouse, home, upload, config.render_pdf, context.log
                )
            except AnafRateLimited as error:
                report.stopped = redact(f"ANAF's limit: {error}")
                report.not_checked.append(upload.index)
            except (AnafAuthError, AnafOAuthError) as error:
                report.stopped = redact(f"ANAF refused our credentials: {error}")
                report.needs_a_human = True
                report.not_checked.append(upload.index)
            except (AnafError, archive.ArchiveConflict, ValueError) as error:
                message = redact(str(error))
                report.failed.append({"index": upload.index, "error": message})
                context.log.error(f"{upload.invoice_number} (upload {upload.index}): {message}")
            else:
                if outcome is None:
                    report.still_processing.append(upload.index)
                else:
                    report.final.append(outcome)
                    report.archived += _archived(home, upload)
    # Yielded, not logged with log_event: a yielded event is stored at once, so the sensor
    # learns about the finals even when the run then fails.
    yield report.observation(warehouse.path)
    for entry in report.final:
        context.log.info(f"{entry['invoice_number']} (upload {entry['index']}): {entry['state']}")
    if report.still_processing:
        context.log.info(f"still processing at ANAF: {', '.join(report.still_processing)}")
    if report.stopped:
        context.log.warning(
            f"stopped asking ANAF: {report.stopped}; not checked: {', '.join(report.not_checked)} "
            "(the sensor asks again later)"
        )
    if report.failed or report.needs_a_human:
        failed = ", ".join(entry["index"] for entry in report.failed)
        raise dg.Failure(
            "ANAF status follow-up incomplete: "
            + (report.stopped if report.needs_a_human else f"checks failed for uploads {failed}")
            + ". The others were recorded; the sensor asks again for the rest."
        )


def _archived(home: Path, upload: UploadToCheck) -> list[Path]:
    """The archive's files of one upload: zip and PDF, or ANAF's status answer."""
    stem = archive.answer_stem(upload.invoice_number, upload.index)
    folder = archive.archive_path(home, date.fromisoformat(upload.issue_date), f"{stem}.zip").parent
    return sorted(folder.glob(f"{stem}.*")) + sorted(folder.glob(f"{stem}_stare.xml"))


def _outbox(connection: duckdb.DuckDBPyConnection, indexes: Sequence[str]) -> dict[str, _OutboxRow]:
    rows = connection.execute(
        "SELECT upload_index, document_id, attempt, state FROM efactura_submissions "
        "WHERE provider = ? AND upload_index IN (SELECT unnest(?::VARCHAR[]))",
        [PROVIDER, list(indexes)],
    ).fetchall()
    return {
        index: _OutboxRow(document_id, attempt, state)
        for index, document_id, attempt, state in rows
    }


def _mismatch(upload: UploadToCheck, row: _OutboxRow | None) -> str | None:
    """Why this upload cannot be followed up (it never will be), or None."""
    if row is None:
        return (
            "no ANAF attempt in efactura_submissions has this index; nothing to record. Was "
            "the warehouse replaced? Check the run that uploaded it"
        )
    if (row.document_id, row.attempt) != (upload.document_id, upload.attempt):
        return (
            f"efactura_submissions has it as {row.document_id} attempt {row.attempt}, the run "
            f"config as {upload.document_id} attempt {upload.attempt}; the warehouse wins, "
            "nothing is recorded"
        )
    if row.state not in ("sent", "accepted", "rejected"):
        return f"attempt {row.attempt} of {row.document_id} is {row.state!r}, not 'sent'"
    return None


def _final(upload: UploadToCheck, state: str, anaf_state: str) -> dict[str, Any]:
    return {
        "index": upload.index,
        "document_id": upload.document_id,
        "attempt": upload.attempt,
        "invoice_number": upload.invoice_number,
        "state": state,  # accepted | rejected
        "anaf": anaf_state,  # ok | nok | rejected_xml | recorded earlier
    }


def check_upload(
    client: EfacturaClient,
    warehouse: WarehouseResource,
    home: Path,
    upload: UploadToCheck,
    render_pdf: bool,
    log: dg.DagsterLogManager,
) -> dict[str, Any] | None:
    """Ask ANAF about one upload; record a final answer. None while it is processing."""
    status = client.status(upload.index)
    if status.state is StatusState.IN_PROGRESS:
        return None
    issued = date.fromisoformat(upload.issue_date)
    stem = archive.answer_stem(upload.invoice_number, upload.index)
    if status.state is StatusState.REJECTED_XML:
        # No zip exists: ANAF's status answer is the only record of the refusal.
        kept = archive.store(home, issued, f"{stem}_stare.xml", status.raw)
        _record(warehouse, home, upload, False, None, [REJECTED_XML_ERROR], kept)
        return _final(upload, "rejected", str(status.state))
    answer, kept = _answer(client, home, issued, stem, status)
    if answer.upload_index != upload.index:
        raise ValueError(
            f"ANAF's zip {status.download_id} is for upload {answer.upload_index}, not "
            f"{upload.index}; archived as {kept.name} but nothing recorded. Report it to ANAF"
        )
    accepted = status.state is StatusState.OK
    errors = list(answer.errors) if not accepted else []
    if not accepted and not errors:
        errors = ["ANAF answered nok without an error message; see the archived zip"]
    _record(warehouse, home, upload, accepted, status.download_id, errors, kept)
    if accepted and render_pdf:
        _archive_pdf(client, home, issued, stem, answer, log)
    return _final(upload, "accepted" if accepted else "rejected", str(status.state))


def _answer(
    client: EfacturaClient, home: Path, issued: date, stem: str, status: Status
) -> tuple[DownloadedZip, Path]:
    """ANAF's zip, from the archive when an earlier run stored it, else downloaded and stored."""
    assert status.download_id is not None  # the client guarantees one for ok and nok
    path = archive.archive_path(home, issued, f"{stem}.zip")
    if path.exists():
        return _read_archived(path.read_bytes(), status.download_id), path
    answer = client.download(status.download_id)
    return answer, archive.store(home, issued, path.name, answer.content)


def _read_archived(content: bytes, download_id: str) -> DownloadedZip:
    return anaf_api.read_answer(content, download_id)


def _archive_pdf(
    client: EfacturaClient,
    home: Path,
    issued: date,
    stem: str,
    answer: DownloadedZip,
    log: dg.DagsterLogManager,
) -> None:
    """ANAF's rendering of the accepted XML, a convenience: failing it loses nothing."""
    name = f"{stem}.pdf"
    if archive.archive_path(home, issued, name).exists():
        return
    try:
        kind = "FCN" if _root_name(answer.document) == "CreditNote" else "FACT1"
        pdf = client.to_pdf(answer.document, kind, validate=False)
        archive.store(home, issued, name, pdf)
    except (AnafError, archive.ArchiveConflict, etree.XMLSyntaxError) as error:
        log.warning(f"{stem}: no PDF archived ({error}); render it later from the signed zip")


def _root_name(document: bytes) -> str:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.QName(etree.fromstring(document, parser)).localname


def _record(
    warehouse: WarehouseResource,
    home: Path,
    upload: UploadToCheck,
    accepted: bool,
    download_id: str | None,
    errors: Sequence[str],
    kept: Path,
) -> None:
    """The final answer in one transaction: the attempt, and the document unless a later
    attempt exists or it is already accepted."""
    state = "accepted" if accepted else "rejected"
    with warehouse.connect() as connection:
        connection.execute("BEGIN")
        try:
            current = connection.execute(
                "SELECT state FROM efactura_submissions "
                "WHERE document_id = ? AND provider = ? AND attempt = ?",
                [upload.document_id, PROVIDER, upload.attempt],
            ).fetchone()
            if current is not None and current[0] == "sent":  # else another run recorded it
                submissions.mark_final(
                    connection,
                    upload.document_id,
                    PROVIDER,
                    upload.attempt,
                    accepted=accepted,
                    download_id=download_id,
                    errors=errors,
                    archive_path=kept.relative_to(home).as_posix(),
                )
                connection.execute(
                    "UPDATE efactura_documents SET status = ? WHERE document_id = ? "
                    "AND status <> 'accepted' AND NOT EXISTS (SELECT 1 FROM efactura_submissions "
                    "WHERE document_id = ? AND provider = ? AND attempt > ?)",
                    [state, upload.document_id, upload.document_id, PROVIDER, upload.attempt],
                )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise


@dg.job(
    tags=DUCKDB_WRITER,
    description="Asks ANAF (stareMesaj) about the uploads in its run config; archives and records "
    "each final answer (accepted/rejected with ANAF's errors). Requested by anaf_status_sensor.",
)
def efactura_status_job() -> None:
    check_anaf_status()


def run_config_for(
    uploads: Iterable[Mapping[str, Any]], *, render_pdf: bool = True
) -> dict[str, Any]:
    """The run config that checks these uploads (entries shaped as `anaf_uploads` metadata)."""
    listed = [
        {key: entry[key] for key in ("index", "document_id", "attempt", "invoice_number")}
        | {"issue_date": str(entry["issue_date"])}
        for entry in uploads
    ]
    return {"ops": {OP_NAME: {"config": {"uploads": listed, "render_pdf": render_pdf}}}}


# -- the sensor ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tracked:
    """A pending upload and what the status job needs to record its answer."""

    pending: PendingUpload
    attempt: int
    invoice_number: str
    issue_date: str

    @property
    def index(self) -> str:
        return self.pending.index

    def to_json(self) -> dict[str, Any]:
        p = self.pending
        return {
            "document_id": p.document_id,
            "attempt": self.attempt,
            "invoice_number": self.invoice_number,
            "issue_date": self.issue_date,
            "partition_key": p.partition_key,
            "uploaded_at": p.uploaded_at.isoformat(),
            "checks": p.checks,
            "next_check_at": p.next_check_at.isoformat() if p.next_check_at else None,
        }

    @classmethod
    def from_json(cls, index: str, data: Mapping[str, Any]) -> "_Tracked":
        next_check = data.get("next_check_at")
        pending = PendingUpload(
            index=index,
            document_id=str(data["document_id"]),
            partition_key=str(data.get("partition_key") or ""),
            uploaded_at=_utc(data["uploaded_at"]),
            checks=int(data.get("checks", 0)),
            next_check_at=_utc(next_check) if next_check else None,
        )
        return cls(
            pending, int(data["attempt"]), str(data["invoice_number"]), str(data["issue_date"])
        )

    def as_upload(self) -> dict[str, Any]:
        return {"index": self.index, **self.to_json()}


@dataclass
class _SensorState:
    uploads_after: str | None = None  # event-log cursor of efactura_submissions
    status_after: str | None = None  # event-log cursor of efactura_status observations
    pending: dict[str, _Tracked] = field(default_factory=dict)

    @classmethod
    def load(cls, cursor: str | None) -> "_SensorState":
        if not cursor:
            return cls()
        try:
            data = json.loads(cursor)
            pending = {i: _Tracked.from_json(i, v) for i, v in data["pending"].items()}
            return cls(data.get("uploads_after"), data.get("status_after"), pending)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                f"anaf_status_sensor's cursor is unreadable ({error}); reset it in the UI: the "
                "event log is then read again from the start (finals already recorded cost no "
                "ANAF call)"
            ) from error

    def dump(self) -> str:
        return json.dumps(
            {
                "uploads_after": self.uploads_after,
                "status_after": self.status_after,
                "pending": {index: t.to_json() for index, t in sorted(self.pending.items())},
            },
            sort_keys=True,
        )


def _utc(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _from_metadata(entry: Any, partition_key: str | None) -> _Tracked:
    return _Tracked(
        PendingUpload(
            index=str(entry["index"]),
            document_id=str(entry["document_id"]),
            partition_key=partition_key or "",
            uploaded_at=_utc(entry["uploaded_at"]),
        ),
        int(entry["attempt"]),
        str(entry["invoice_number"]),
        date.fromisoformat(str(entry["issue_date"])).isoformat(),
    )


def _read_events(
    fetch: Callable[..., dg.EventRecordsResult], key: dg.AssetKey, after: str | None
) -> tuple[list[dg.EventLogRecord], str | None]:
    """New event records of `key` after `after`, oldest first, a bounded number per tick."""
    records: list[dg.EventLogRecord] = []
    for _ in range(MAX_PAGES_PER_TICK):
        result = fetch(key, limit=EVENTS_PER_PAGE, cursor=after, ascending=True)
        records.extend(result.records)
        if result.records:
            after = result.cursor
        if not result.has_more:
            break
    return records, after


def _metadata_json(event: Any, name: str) -> Any:
    value = event.metadata.get(name) if event is not None else None
    return value.value if isinstance(value, dg.JsonMetadataValue) else None


def plan_tick(
    instance: dg.DagsterInstance, cursor: str | None, now: datetime, log: dg.DagsterLogManager
) -> tuple[list[_Tracked], str]:
    """The uploads to check now and the next cursor (the sensor's logic, clock given)."""
    state = _SensorState.load(cursor)
    records, state.uploads_after = _read_events(
        instance.fetch_materializations, SUBMISSIONS, state.uploads_after
    )
    for record in records:
        for entry in _metadata_json(record.asset_materialization, "anaf_uploads") or []:
            try:
                tracked = _from_metadata(entry, record.partition_key)
            except (KeyError, TypeError, ValueError) as error:
                log.error(f"unusable anaf_uploads entry {entry!r:.200} ({error}); skipped")
                continue
            state.pending.setdefault(tracked.index, tracked)  # a repeat keeps its back-off
    records, state.status_after = _read_events(
        instance.fetch_observations, STATUS, state.status_after
    )
    for record in records:
        event = record.asset_observation
        done = [e.get("index") for e in _metadata_json(event, "final") or []]
        done += [e.get("index") for e in _metadata_json(event, "unknown") or []]
        for index in done:
            state.pending.pop(str(index), None)
    for index, tracked in list(state.pending.items()):
        if now - tracked.pending.uploaded_at > GIVE_UP_AFTER:
            log.error(
                f"upload {index} ({tracked.invoice_number}) has no final ANAF answer after "
                f"{GIVE_UP_AFTER.days} days; no longer checked: look it up in ANAF's SPV"
            )
            del state.pending[index]
    chosen = due([t.pending for t in state.pending.values()], now, limit=MAX_CHECKS_PER_RUN)
    to_check = [state.pending[p.index] for p in chosen]
    for tracked in to_check:  # a check that finds it still processing waits longer next time
        state.pending[tracked.index] = _Tracked(
            tracked.pending.checked(now),
            tracked.attempt,
            tracked.invoice_number,
            tracked.issue_date,
        )
    return to_check, state.dump()


def _now() -> datetime:
    return datetime.now(UTC)


_NOT_DONE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    job=efactura_status_job,
    minimum_interval_seconds=60,
    # Running by default: a filed document's answer must be fetched and archived within ANAF's
    # 60 days, and a tick with nothing pending costs two event-log reads and no ANAF call.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Follows up ANAF uploads: reads new upload indexes from efactura_submissions' "
    "materializations and finals from efactura_status observations (never DuckDB), and "
    f"requests efactura_status_job for at most {MAX_CHECKS_PER_RUN} due uploads per tick, "
    "each with its own back-off (1, 2, 5 ... minutes, then every 2 hours).",
)
def anaf_status_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    # One status run at a time: behind a backfill (the DuckDB writer limit) runs wait in the
    # queue, and a tick meanwhile would only queue checks of the same uploads again.
    waiting = context.instance.get_run_ids(
        dg.RunsFilter(job_name=efactura_status_job.name, statuses=_NOT_DONE), limit=1
    )
    if waiting:
        return dg.SkipReason(f"efactura_status_job run {waiting[0]} has not finished yet")
    now = _now()
    to_check, cursor = plan_tick(context.instance, context.cursor, now, context.log)
    if not to_check:
        return dg.SensorResult(skip_reason="no ANAF upload due for a status check", cursor=cursor)
    # The tick's time is in the key: after a cursor reset, the same uploads with the same check
    # counts must still get a run (a run_key is never run twice).
    checks = ",".join(f"{t.index}:{t.pending.checks}" for t in to_check)
    digest = hashlib.sha256(f"{now.isoformat()}|{checks}".encode()).hexdigest()
    request = dg.RunRequest(
        run_key=f"anaf-status-{digest[:16]}",
        run_config=run_config_for(t.as_upload() for t in to_check),
        tags={"invoicesync/anaf_status_checks": str(len(to_check))},
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor)


# -- failed runs --------------------------------------------------------------------------------

_SECRETS = (
    re.compile(r"(?i)bearer\s+[\w.~+/=-]+"),
    re.compile(
        r"(?i)\b(?:access_token|refresh_token|client_secret|api_key|password)\b\W{0,3}[^\s,;&'\"]+"
    ),
    re.compile(r"\b[sr]k_(?:live|test)_\w+"),
    re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+"),  # a JWT
)


def redact(text: str) -> str:
    """`text` without anything shaped like a token, key or password."""
    for pattern in _SECRETS:
        text = pattern.sub("[redacted]", text)
    return text


def _root_message(error: Any) -> str:
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return str(getattr(error, "message", "") or "").strip()


def failure_summary(context: dg.RunFailureSensorContext) -> str:
    """Why the run failed, step by step, in at most ~1000 characters, secrets removed."""
    parts = []
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        description = data.user_failure_data.description if data.user_failure_data else None
        message = description or _root_message(data.error) or event.message or ""
        parts.append(f"{event.step_key}: {message}")
    if not parts:
        parts.append(context.failure_event.message or "the run failed")
    return redact(" | ".join(parts))[:1000]


@dg.run_failure_sensor(
    name="failed_runs_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Appends each failed run (id, job, partition, time, error) to "
    f"INVOICESYNC_HOME/{FAILED_RUNS_FILE}, one JSON line each.",
)
def failed_runs_sensor(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    line = {
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": run.tags.get("dagster/partition"),
        "failed_at": _now().isoformat(),
        "error": failure_summary(context),
    }
    path = load_settings().invoicesync_home / FAILED_RUNS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as sink:  # one write per line: appends stay whole
        sink.write(json.dumps(line, ensure_ascii=False) + "\n")
    context.log.error(f"run {run.run_id} of {run.job_name} failed: {line['error']}")
