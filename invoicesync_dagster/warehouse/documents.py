"""SQL of `billable_events` and `efactura_documents`: a day's Stripe inputs, and the results.

A day's triggers are found by their own timestamps (paid_at, finalized_at, created), not by the
Stripe tables' `partition_date`: that column says which partition last wrote a row, and a re-run
of an older day takes rows back, while the moment an invoice was paid never changes.

Documents are keyed by their source (`document_id` = `stripe_invoice:in_…`). A day's rebuild
replaces its rows, except rows already handed to a provider: a document whose status is not
`ready`, `held` or `blocked` is immutable here (ARCHITECTURE.md §4.3) and is kept as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import duckdb
import pandas as pd

from invoicesync_dagster.efactura.billable import BillableEvent
from invoicesync_dagster.efactura.customers import Classification
from invoicesync_dagster.efactura.documents import DocumentOutcome, DocumentStatus
from invoicesync_dagster.efactura.model import Document

# A rebuild may rewrite rows in these states; any other state belongs to the filing step. A
# document ANAF rejected never reached the buyer: it is rebuilt once fixed and sent again.
REBUILDABLE = (*(status.value for status in DocumentStatus), "rejected")

EVENT_COLUMNS = (
    "partition_date, source_key, source_type, source_id, trigger, occurred_at, customer_id, "
    "currency, amount, kind, corrects, decision, reason"
)
DOCUMENT_COLUMNS = (
    "document_id, source_type, source_id, partition_date, kind, series, number, invoice_number, "
    "issue_date, currency, total, tax_total, buyer_cui, xml, xml_sha256, status, stripe_amount, "
    "tax_total_ron, fx_rate, fx_rate_date, customer_id, buyer_name, buyer_tax_id, corrects, "
    "errors, warnings, notes, document, built_at"
)


@dataclass
class DayInputs:
    """The Stripe objects of a day's triggers and what they link to (raw JSON, parsed)."""

    invoices: dict[str, dict[str, Any]]
    invoice_lines: dict[str, list[dict[str, Any]]]
    charges: dict[str, dict[str, Any]]
    refunds: dict[str, dict[str, Any]]
    credit_notes: dict[str, dict[str, Any]]


def _objects(
    connection: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any]
) -> dict[str, dict[str, Any]]:
    rows = connection.execute(sql, list(params)).fetchall()
    return {row[0]: json.loads(row[1]) for row in rows}


def day_inputs(
    connection: duckdb.DuckDBPyConnection, start: datetime, end: datetime, trigger: str
) -> DayInputs:
    """The objects whose trigger falls in [start, end): invoices by `trigger` (paid_at or
    finalized_at), charges, refunds and credit notes by `created`."""
    if trigger not in ("paid_at", "finalized_at"):
        raise ValueError(f"invoice trigger must be paid_at or finalized_at, not {trigger!r}")
    window = [start, end]
    invoices = _objects(
        connection,
        f"SELECT id, raw FROM stripe_invoices WHERE {trigger} >= ? AND {trigger} < ?",
        window,
    )
    lines: dict[str, list[dict[str, Any]]] = {}
    for invoice_id, raw in connection.execute(
        "SELECT invoice_id, raw FROM stripe_invoice_lines "
        "WHERE invoice_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY invoice_id, line_no",
        [sorted(invoices)],
    ).fetchall():
        lines.setdefault(invoice_id, []).append(json.loads(raw))
    created = "WHERE created >= ? AND created < ?"
    charges = _objects(connection, f"SELECT id, raw FROM stripe_charges {created}", window)
    refunds = _objects(connection, f"SELECT id, raw FROM stripe_refunds {created}", window)
    notes = _objects(connection, f"SELECT id, raw FROM stripe_credit_notes {created}", window)
    return DayInputs(
        invoices=invoices,
        invoice_lines=lines,
        charges=charges,
        refunds=refunds,
        credit_notes=notes,
    )


def invoice_payments(connection: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Payment intent or charge id → invoice id, over every stored invoice (a charge or refund
    of the day may belong to an invoice of any day)."""
    rows = connection.execute(
        """
        SELECT id, p->'payment'->>'payment_intent', p->'payment'->>'charge'
        FROM (SELECT id, unnest(CAST(raw->'payments'->'data' AS JSON[])) AS p
              FROM stripe_invoices WHERE json_array_length(raw->'payments'->'data') > 0)
        """
    ).fetchall()
    links: dict[str, str] = {}
    for invoice_id, intent, charge in rows:
        for key in (intent, charge):
            if key:
                links[key] = invoice_id
    return links


def credit_note_refunds(connection: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Refund id → credit note id, over every stored credit note."""
    rows = connection.execute(
        """
        SELECT id, coalesce(r->>'refund', r->'refund'->>'id')
        FROM (SELECT id, unnest(CAST(raw->'refunds' AS JSON[])) AS r
              FROM stripe_credit_notes WHERE json_array_length(raw->'refunds') > 0)
        """
    ).fetchall()
    return {refund: note for note, refund in rows if refund}


def replace_events(
    connection: duckdb.DuckDBPyConnection, day: date, events: Sequence[BillableEvent]
) -> None:
    frame = pd.DataFrame(
        [
            {
                "partition_date": day,
                **event.model_dump(mode="python"),
                "source_type": event.source_type.value,
                "decision": event.decision.value,
            }
            for event in events
        ],
        columns=[c.strip() for c in EVENT_COLUMNS.split(",")],
    )
    frame["amount"] = frame["amount"].astype(str)
    connection.register("event_rows", frame)
    connection.execute("BEGIN")
    try:
        connection.execute("DELETE FROM billable_events WHERE partition_date = ?", [day])
        connection.execute(
            f"INSERT INTO billable_events ({EVENT_COLUMNS}) SELECT {EVENT_COLUMNS} FROM event_rows"
        )
        connection.execute("COMMIT")
    except Exception:
        connection.execute("ROLLBACK")
        raise
    finally:
        connection.unregister("event_rows")


def load_events(connection: duckdb.DuckDBPyConnection, day: date) -> list[BillableEvent]:
    rows = connection.execute(
        f"SELECT {EVENT_COLUMNS} FROM billable_events WHERE partition_date = ? "
        "ORDER BY occurred_at, source_key",
        [day],
    ).fetchall()
    names = [c.strip() for c in EVENT_COLUMNS.split(",")]
    return [
        BillableEvent.model_validate(
            {k: v for k, v in zip(names, row, strict=True) if k != "partition_date"}
        )
        for row in rows
    ]


def preceding_documents(
    connection: duckdb.DuckDBPyConnection, document_ids: Iterable[str]
) -> dict[str, Document]:
    """The numbered documents among `document_ids` (those credit notes may correct)."""
    rows = connection.execute(
        "SELECT document_id, document FROM efactura_documents WHERE number IS NOT NULL "
        "AND document IS NOT NULL AND document_id IN (SELECT unnest(?::VARCHAR[]))",
        [sorted(set(document_ids))],
    ).fetchall()
    return {key: Document.model_validate_json(text) for key, text in rows}


def frozen_documents(connection: duckdb.DuckDBPyConnection, day: date) -> dict[str, str]:
    """Documents of the day already beyond `ready` (handed to a provider): id → xml_sha256."""
    rows = connection.execute(
        "SELECT document_id, xml_sha256 FROM efactura_documents WHERE partition_date = ? "
        "AND status NOT IN (SELECT unnest(?::VARCHAR[]))",
        [day, list(REBUILDABLE)],
    ).fetchall()
    return {key: sha for key, sha in rows}


def numbered_documents(connection: duckdb.DuckDBPyConnection, day: date) -> dict[str, str]:
    """The day's numbered documents as stored: document id → BT-1."""
    rows = connection.execute(
        "SELECT document_id, invoice_number FROM efactura_documents "
        "WHERE partition_date = ? AND invoice_number IS NOT NULL",
        [day],
    ).fetchall()
    return dict(rows)


def document_row(
    outcome: DocumentOutcome,
    day: date,
    *,
    classification: Classification | None,
    built_at: datetime,
    allocated: tuple[str, int, str] | None = None,
) -> dict[str, Any]:
    """The `efactura_documents` row of an outcome. `allocated` = (series, number, BT-1) of a
    held document whose source already holds a number (it keeps it)."""
    event, document = outcome.event, outcome.document
    ready = outcome.status is DocumentStatus.READY and document is not None
    xml = outcome.xml if ready else None
    series = number = invoice_number = None
    if ready:
        invoice_number = document.number  # type: ignore[union-attr]
        series, _, rest = invoice_number.partition("-")
        number = int(rest.rpartition("-")[2])
    elif allocated is not None:
        series, number, invoice_number = allocated
    buyer = document.buyer if document is not None else None
    totals = document.totals if document is not None else None
    return {
        "document_id": event.source_key,
        "source_type": event.source_type.value,
        "source_id": event.source_id,
        "partition_date": day,
        "kind": event.kind,
        "series": series,
        "number": number,
        "invoice_number": invoice_number,
        "issue_date": outcome.issue_date,
        "currency": event.currency,
        "total": str(totals.tax_inclusive_total + totals.rounding_amount) if totals else None,
        "tax_total": str(totals.vat_total) if totals else None,
        "buyer_cui": buyer.tax_registration_id
        if buyer is not None and classification is Classification.RO_COMPANY
        else None,
        "xml": xml.decode("utf-8") if xml is not None else None,
        "xml_sha256": hashlib.sha256(xml).hexdigest() if xml is not None else None,
        "status": outcome.status.value,
        "stripe_amount": str(event.amount),
        "tax_total_ron": str(document.tax_currency_vat_total)
        if document is not None and document.tax_currency_vat_total is not None
        else None,
        "fx_rate": str(document.tax_exchange_rate)
        if document is not None and document.tax_exchange_rate is not None
        else None,
        "fx_rate_date": outcome.fx_rate_date,
        "customer_id": event.customer_id,
        "buyer_name": buyer.name if buyer is not None else None,
        "buyer_tax_id": (buyer.vat_id or buyer.tax_registration_id) if buyer is not None else None,
        "corrects": event.corrects,
        "errors": json.dumps(list(outcome.errors), ensure_ascii=False),
        "warnings": json.dumps(list(outcome.warnings), ensure_ascii=False),
        "notes": json.dumps(list(outcome.notes), ensure_ascii=False),
        "document": document.model_dump_json() if ready else None,
        "built_at": built_at,
    }


def replace_documents(
    connection: duckdb.DuckDBPyConnection, day: date, rows: Sequence[dict[str, Any]]
) -> None:
    """Replace the day's rebuildable rows with `rows` (which must not include frozen ones)."""
    names = [c.strip() for c in DOCUMENT_COLUMNS.split(",")]
    connection.register("document_rows", pd.DataFrame(list(rows), columns=names, dtype=object))
    connection.execute("BEGIN")
    try:
        connection.execute(
            "DELETE FROM efactura_documents WHERE (partition_date = ? "
            "OR document_id IN (SELECT document_id FROM document_rows)) "
            "AND status IN (SELECT unnest(?::VARCHAR[]))",
            [day, list(REBUILDABLE)],
        )
        connection.execute(
            f"INSERT INTO efactura_documents ({DOCUMENT_COLUMNS}) "
            f"SELECT {DOCUMENT_COLUMNS} FROM document_rows"
        )
        connection.execute("COMMIT")
    except Exception:
        connection.execute("ROLLBACK")
        raise
    finally:
        connection.unregister("document_rows")


def documents_between(
    connection: duckdb.DuckDBPyConnection, start: date, end: date
) -> list[dict[str, Any]]:
    """The documents of the days start..end (inclusive), numbered ones by number first."""
    cursor = connection.execute(
        "SELECT document_id, partition_date, kind, status, invoice_number, currency, total, "
        "xml, errors FROM efactura_documents WHERE partition_date BETWEEN ? AND ? "
        "ORDER BY series NULLS LAST, number NULLS LAST, document_id",
        [start, end],
    )
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
