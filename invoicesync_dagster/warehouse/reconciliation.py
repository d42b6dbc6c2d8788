"""SQL of the monthly reconciliation with ANAF (defs/efactura/reconciliation.py): the month's
ANAF uploads as the books have them, and the findings table `efactura_reconciliation`, whose
rows for a month are replaced as a whole by each run of that month."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime

import duckdb

PROVIDER = "anaf"


@dataclass(frozen=True)
class FiledUpload:
    """One ANAF upload (an attempt that got an index) of a document issued in the month."""

    document_id: str
    invoice_number: str
    issue_date: date
    attempt: int
    state: str  # sent | accepted | rejected
    upload_index: str
    download_id: str | None
    archive_path: str | None  # relative to INVOICESYNC_HOME
    sent_at: datetime | None
    final_at: datetime | None


@dataclass(frozen=True)
class Finding:
    """One row of `efactura_reconciliation` (without `checked_at`, set when written)."""

    month: date
    document_id: str | None  # None: an upload the books do not know
    invoice_number: str | None
    upload_index: str | None
    our_state: str | None  # the attempt's state in efactura_submissions
    anaf_state: str  # what ANAF says: FACTURA TRIMISA, ERORI FACTURA, not listed, ok, nok ...
    finding: str  # its kind, e.g. accepted_but_rejected_at_anaf
    fix: str  # what was done about it, or what a person must do
    repaired: bool  # true when the reconciliation fixed it itself


def month_uploads(
    connection: duckdb.DuckDBPyConnection, first_day: date, last_day: date
) -> list[FiledUpload]:
    """Every ANAF upload of the documents issued from `first_day` to `last_day`, oldest first."""
    rows = connection.execute(
        """
        SELECT s.document_id, s.invoice_number, d.issue_date, s.attempt, s.state,
               s.upload_index, s.download_id, s.archive_path, s.sent_at, s.final_at
        FROM efactura_submissions AS s JOIN efactura_documents AS d USING (document_id)
        WHERE s.provider = ? AND s.upload_index IS NOT NULL
          AND s.state IN ('sent', 'accepted', 'rejected')
          AND d.issue_date BETWEEN ? AND ?
        ORDER BY d.issue_date, s.invoice_number, s.attempt
        """,
        [PROVIDER, first_day, last_day],
    ).fetchall()
    return [FiledUpload(*row) for row in rows]


def known_indexes(connection: duckdb.DuckDBPyConnection) -> set[str]:
    """Every ANAF upload index the books hold, whatever the month or state."""
    rows = connection.execute(
        "SELECT upload_index FROM efactura_submissions "
        "WHERE provider = ? AND upload_index IS NOT NULL",
        [PROVIDER],
    ).fetchall()
    return {index for (index,) in rows}


def set_archive_path(
    connection: duckdb.DuckDBPyConnection, document_id: str, attempt: int, path: str
) -> None:
    """Name the archived answer of an attempt that has none recorded (never replaces one)."""
    connection.execute(
        "UPDATE efactura_submissions SET archive_path = ? WHERE document_id = ? AND provider = ? "
        "AND attempt = ? AND archive_path IS NULL",
        [path, document_id, PROVIDER, attempt],
    )


def replace_month(
    connection: duckdb.DuckDBPyConnection, month: date, findings: Sequence[Finding]
) -> None:
    """The month's findings, in place of those of its previous run, in one transaction."""
    checked_at = datetime.now(UTC)
    connection.execute("BEGIN")
    try:
        connection.execute("DELETE FROM efactura_reconciliation WHERE month = ?", [month])
        if findings:
            connection.executemany(
                "INSERT INTO efactura_reconciliation (month, document_id, invoice_number, "
                "upload_index, our_state, anaf_state, finding, fix, repaired, checked_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [[*astuple(finding), checked_at] for finding in findings],
            )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
