"""Loading Stripe objects into the `stripe_*` tables.

A partition's objects arrive as a staged NDJSON file (one Stripe object per line, as the API
returns it: the objects created that day plus the older ones whose state changed that day). One
transaction then replaces the day's rows and every row of a staged object, so that re-running a
day never duplicates and an older object's row always holds its latest known state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

_TS = "to_timestamp(({json}->>'{field}')::BIGINT)"
_BUCHAREST_DAY = "(to_timestamp((raw->>'created')::BIGINT) AT TIME ZONE 'Europe/Bucharest')::DATE"


def _ts(field: str, json: str = "raw") -> str:
    return _TS.format(json=json, field=field)


def _sum_amounts(path: str) -> str:
    """Sum of `amount` over a JSON array of tax amounts such as `total_taxes`."""
    return (
        f"(SELECT sum((t->>'amount')::BIGINT) FROM "
        f"unnest(json_extract(raw, '{path}[*]')) AS u(t))::BIGINT"
    )


@dataclass(frozen=True)
class StripeTable:
    resource: str  # the Stripe API resource name, e.g. "invoices"
    table: str
    columns: dict[str, str]  # column → SQL expression over `raw`

    @property
    def select_list(self) -> str:
        return ", ".join(f"{expr} AS {name}" for name, expr in self.columns.items())


STRIPE_TABLES: dict[str, StripeTable] = {
    t.resource: t
    for t in (
        StripeTable(
            "customers",
            "stripe_customers",
            {
                "id": "raw->>'id'",
                "name": "raw->>'name'",
                "email": "raw->>'email'",
                "country": "raw->'address'->>'country'",
                "tax_exempt": "raw->>'tax_exempt'",
                "tax_ids": "json_extract_string(raw, '$.tax_ids.data[*].value')",
            },
        ),
        StripeTable(
            "invoices",
            "stripe_invoices",
            {
                "id": "raw->>'id'",
                "number": "raw->>'number'",
                "status": "raw->>'status'",
                "customer": "raw->>'customer'",
                "customer_name": "raw->>'customer_name'",
                "customer_email": "raw->>'customer_email'",
                "currency": "upper(raw->>'currency')",
                "subtotal": "(raw->>'subtotal')::BIGINT",
                "total": "(raw->>'total')::BIGINT",
                "total_tax": f"coalesce({_sum_amounts('$.total_taxes')}, 0)",
                "amount_paid": "(raw->>'amount_paid')::BIGINT",
                "amount_remaining": "(raw->>'amount_remaining')::BIGINT",
                "finalized_at": _ts("$.status_transitions.finalized_at"),
                "paid_at": _ts("$.status_transitions.paid_at"),
                "voided_at": _ts("$.status_transitions.voided_at"),
            },
        ),
        StripeTable(
            "charges",
            "stripe_charges",
            {
                "id": "raw->>'id'",
                "customer": "raw->>'customer'",
                "payment_intent": "raw->>'payment_intent'",
                "description": "raw->>'description'",
                "status": "raw->>'status'",
                "paid": "(raw->>'paid')::BOOLEAN",
                "currency": "upper(raw->>'currency')",
                "amount": "(raw->>'amount')::BIGINT",
                "amount_captured": "(raw->>'amount_captured')::BIGINT",
                "amount_refunded": "(raw->>'amount_refunded')::BIGINT",
                "refunded": "(raw->>'refunded')::BOOLEAN",
            },
        ),
        StripeTable(
            "refunds",
            "stripe_refunds",
            {
                "id": "raw->>'id'",
                "charge": "raw->>'charge'",
                "payment_intent": "raw->>'payment_intent'",
                "status": "raw->>'status'",
                "reason": "raw->>'reason'",
                "currency": "upper(raw->>'currency')",
                "amount": "(raw->>'amount')::BIGINT",
            },
        ),
        StripeTable(
            "credit_notes",
            "stripe_credit_notes",
            {
                "id": "raw->>'id'",
                "number": "raw->>'number'",
                "invoice": "raw->>'invoice'",
                "customer": "raw->>'customer'",
                "status": "raw->>'status'",
                "type": "raw->>'type'",
                "reason": "raw->>'reason'",
                "currency": "upper(raw->>'currency')",
                "subtotal": "(raw->>'subtotal')::BIGINT",
                "total": "(raw->>'total')::BIGINT",
                "total_tax": f"coalesce({_sum_amounts('$.total_taxes')}, 0)",
            },
        ),
    )
}

_LINE_COLUMNS = {
    "invoice_id": "invoice_id",
    "id": "line->>'id'",
    "line_no": "line_no::INTEGER",
    "description": "line->>'description'",
    "quantity": "(line->>'quantity')::BIGINT",
    "amount": "(line->>'amount')::BIGINT",
    "currency": "upper(line->>'currency')",
    "tax_amount": (
        "coalesce((SELECT sum((t->>'amount')::BIGINT) FROM "
        "unnest(json_extract(line, '$.taxes[*]')) AS u(t))::BIGINT, 0)"
    ),
    "period_start": _ts("$.period.start", "line"),
    "period_end": _ts("$.period.end", "line"),
}


def replace_partition(
    connection: duckdb.DuckDBPyConnection,
    resource: str,
    partition_date: date,
    staged: Path,
    *,
    extra_lines: Path | None = None,
) -> int:
    """Replace the rows of `partition_date` and of every staged object, in one transaction.

    `extra_lines` (invoices only) holds invoice line items fetched separately for invoices with
    more lines than Stripe embeds; each line must carry an `invoice` field. Returns the row count
    written to the resource's table.
    """
    spec = STRIPE_TABLES[resource]
    connection.execute("BEGIN")
    try:
        connection.execute(
            "CREATE OR REPLACE TEMP TABLE staged AS "
            "SELECT DISTINCT ON (json->>'id') json AS raw FROM read_ndjson_objects(?)",
            [str(staged)],
        )
        if resource == "invoices":
            _replace_invoice_lines(connection, spec, partition_date, extra_lines)
        connection.execute(
            f"DELETE FROM {spec.table} WHERE created_date = ? "
            "OR id IN (SELECT raw->>'id' FROM staged)",
            [partition_date],
        )
        connection.execute(
            f"INSERT INTO {spec.table} SELECT {spec.select_list}, "
            f"to_timestamp((raw->>'created')::BIGINT), {_BUCHAREST_DAY}, ?::DATE, now(), raw "
            "FROM staged",
            [partition_date],
        )
        (count,) = connection.execute("SELECT count(*) FROM staged").fetchone()  # type: ignore[misc]
        connection.execute("DROP TABLE staged")
        connection.execute("COMMIT")
    except Exception:
        connection.execute("ROLLBACK")
        raise
    return int(count)


def _replace_invoice_lines(
    connection: duckdb.DuckDBPyConnection,
    invoices: StripeTable,
    partition_date: date,
    extra_lines: Path | None,
) -> None:
    connection.execute(
        "DELETE FROM stripe_invoice_lines WHERE invoice_id IN (SELECT raw->>'id' FROM staged) "
        f"OR invoice_id IN (SELECT id FROM {invoices.table} WHERE created_date = ?)",
        [partition_date],
    )
    embedded = (
        "SELECT raw->>'id' AS invoice_id, line, line_no FROM staged, "
        "unnest(json_extract(raw, '$.lines.data[*]')) WITH ORDINALITY AS u(line, line_no)"
    )
    if extra_lines is not None:
        # Invoices whose embedded list was cut (has_more) take every line from the extra file.
        embedded = (
            f"SELECT * FROM ({embedded}) WHERE invoice_id NOT IN "
            "(SELECT json->>'invoice' FROM read_ndjson_objects(?)) "
            "UNION ALL SELECT json->>'invoice', json, row_number() OVER "
            "(PARTITION BY json->>'invoice') FROM read_ndjson_objects(?)"
        )
    columns = ", ".join(f"{expr} AS {name}" for name, expr in _LINE_COLUMNS.items())
    params: list[object] = [str(extra_lines)] * 2 if extra_lines is not None else []
    connection.execute(
        f"INSERT INTO stripe_invoice_lines SELECT {columns}, ?::DATE, line FROM ({embedded})",
        [partition_date, *params],
    )


def partition_summary(
    connection: duckdb.DuckDBPyConnection, resource: str, partition_date: date
) -> tuple[dict[str, int], list[dict[str, object]]]:
    """Amounts by currency and a preview of the rows the partition wrote."""
    spec = STRIPE_TABLES[resource]
    amount = (
        "total" if "total" in spec.columns else ("amount" if "amount" in spec.columns else None)
    )
    by_currency: dict[str, int] = {}
    if amount:
        rows = connection.execute(
            f"SELECT currency, sum({amount}) FROM {spec.table} WHERE partition_date = ? "
            "GROUP BY currency ORDER BY currency",
            [partition_date],
        ).fetchall()
        by_currency = {currency: int(total) for currency, total in rows}
    preview_columns = [c for c in spec.columns if c not in ("tax_ids",)][:8]
    cursor = connection.execute(
        f"SELECT {', '.join(preview_columns)} FROM {spec.table} WHERE partition_date = ? "
        "ORDER BY created DESC LIMIT 10",
        [partition_date],
    )
    preview = [dict(zip(preview_columns, row, strict=True)) for row in cursor.fetchall()]
    return by_currency, preview
