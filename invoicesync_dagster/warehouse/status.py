"""Read-only SQL behind `invoicesync process`, `status` and `download`: where a Stripe object's
document stands and every attempt to file it. Nothing here writes (the CLI opens the file
read-only, so that it never competes with a run for DuckDB's single writer)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

import duckdb

# What `process --type` files (efactura_submissions' SubmissionConfig.source_types): a credit
# note follows the kind of document it corrects.
FAMILY = "coalesce(nullif(split_part(d.corrects, ':', 1), ''), d.source_type)"

_DOCUMENT_COLUMNS = (
    "document_id, source_type, source_id, partition_date, kind, invoice_number, issue_date, "
    "currency, total, buyer_name, buyer_tax_id, status, corrects, errors, xml IS NOT NULL"
)
_DOCUMENT_KEYS = (
    "document_id", "source_type", "source_id", "partition_date", "kind", "invoice_number",
    "issue_date", "currency", "total", "buyer_name", "buyer_tax_id", "status", "corrects",
    "errors", "has_xml",
)  # fmt: skip
_ATTEMPT_KEYS = (
    "document_id", "provider", "attempt", "invoice_number", "state", "upload_index",
    "download_id", "errors", "created_at", "sent_at", "final_at", "archive_path",
)  # fmt: skip


def _dicts(rows: Sequence[tuple[Any, ...]], keys: Sequence[str]) -> list[dict[str, Any]]:
    found = [dict(zip(keys, row, strict=True)) for row in rows]
    for row in found:
        if isinstance(row.get("errors"), str):
            row["errors"] = json.loads(row["errors"])
    return found


def find_documents(connection: duckdb.DuckDBPyConnection, key: str) -> list[dict[str, Any]]:
    """The documents `key` names (a document id `stripe_invoice:in_…`, a Stripe id, or an invoice
    number), followed by the credit notes that correct them."""
    named = connection.execute(
        f"SELECT {_DOCUMENT_COLUMNS} FROM efactura_documents "
        "WHERE document_id = ? OR source_id = ? OR upper(invoice_number) = upper(?) "
        "ORDER BY issue_date, invoice_number NULLS LAST, document_id",
        [key, key, key],
    ).fetchall()
    documents = _dicts(named, _DOCUMENT_KEYS)
    ids = [d["document_id"] for d in documents]
    if ids:
        corrections = connection.execute(
            f"SELECT {_DOCUMENT_COLUMNS} FROM efactura_documents "
            "WHERE corrects IN (SELECT unnest(?::VARCHAR[])) AND document_id NOT IN "
            "(SELECT unnest(?::VARCHAR[])) ORDER BY issue_date, invoice_number NULLS LAST",
            [ids, ids],
        ).fetchall()
        documents += _dicts(corrections, _DOCUMENT_KEYS)
    return documents


def attempts(
    connection: duckdb.DuckDBPyConnection, document_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Every filing attempt of these documents, with any provider, oldest first."""
    rows = connection.execute(
        f"SELECT {', '.join(_ATTEMPT_KEYS)} FROM efactura_submissions "
        "WHERE document_id IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY document_id, created_at, provider, attempt",
        [list(document_ids)],
    ).fetchall()
    return _dicts(rows, _ATTEMPT_KEYS)


def skipped_source(connection: duckdb.DuckDBPyConnection, source_id: str) -> dict[str, Any] | None:
    """Why a Stripe object got no document, when the billable events say it was skipped."""
    row = connection.execute(
        "SELECT source_key, partition_date, trigger, reason FROM billable_events "
        "WHERE source_id = ? AND decision = 'skip' ORDER BY partition_date DESC LIMIT 1",
        [source_id],
    ).fetchone()
    keys = ("source_key", "partition_date", "trigger", "reason")
    return dict(zip(keys, row, strict=True)) if row else None


def day_items(
    connection: duckdb.DuckDBPyConnection,
    start: date,
    end: date,
    source_types: Sequence[str],
    provider: str,
) -> list[dict[str, Any]]:
    """The documents of the days (only those of `source_types`' families, all when empty), each
    with its last attempt with `provider`."""
    rows = connection.execute(
        f"""
        WITH last AS (
            SELECT * FROM efactura_submissions WHERE provider = ?
            QUALIFY row_number() OVER (PARTITION BY document_id ORDER BY attempt DESC) = 1
        )
        SELECT d.partition_date, d.document_id, d.source_id, d.kind, d.invoice_number,
               d.status, d.errors, last.attempt, last.state, last.upload_index, last.errors
        FROM efactura_documents AS d LEFT JOIN last USING (document_id)
        WHERE d.partition_date BETWEEN ? AND ?
          AND (len(?::VARCHAR[]) = 0 OR {FAMILY} IN (SELECT unnest(?::VARCHAR[])))
        ORDER BY d.partition_date, d.invoice_number NULLS LAST, d.document_id
        """,
        [provider, start, end, list(source_types), list(source_types)],
    ).fetchall()
    keys = (
        "day", "document_id", "source_id", "kind", "number", "document_status",
        "document_errors", "attempt", "filing_state", "upload_index", "filing_errors",
    )  # fmt: skip
    items = [dict(zip(keys, row, strict=True)) for row in rows]
    for item in items:
        item["document_errors"] = json.loads(item["document_errors"] or "[]")
        item["filing_errors"] = json.loads(item["filing_errors"] or "[]")
    return items


def uploads_awaiting_answer(
    connection: duckdb.DuckDBPyConnection, document_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """ANAF uploads of these documents still without a final answer (`sent`), shaped as the
    `anaf_uploads` metadata of efactura_submissions (what the status job's run config takes)."""
    rows = connection.execute(
        "SELECT s.upload_index, s.document_id, s.attempt, s.invoice_number, d.issue_date, "
        "s.sent_at FROM efactura_submissions AS s JOIN efactura_documents AS d USING "
        "(document_id) WHERE s.provider = 'anaf' AND s.state = 'sent' AND s.upload_index IS NOT "
        "NULL AND s.document_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY s.sent_at",
        [list(document_ids)],
    ).fetchall()
    keys = ("index", "document_id", "attempt", "invoice_number", "issue_date", "uploaded_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def document_xml(connection: duckdb.DuckDBPyConnection, document_id: str) -> str | None:
    """The XML as built (NULL for held and blocked documents)."""
    row = connection.execute(
        "SELECT xml FROM efactura_documents WHERE document_id = ?", [document_id]
    ).fetchone()
    return row[0] if row else None


def trigger_day(
    connection: duckdb.DuckDBPyConnection, source_type: str, source_id: str
) -> date | None:
    """The day whose partition documents this Stripe object, when it has been synced."""
    row = connection.execute(
        "SELECT max(partition_date) FROM billable_events WHERE source_type = ? AND source_id = ?",
        [source_type, source_id],
    ).fetchone()
    return row[0] if row else None
