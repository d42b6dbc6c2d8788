"""Warehouse schema as numbered migrations, applied in order on every write open.

Table names are a contract (ARCHITECTURE.md §3): users query them with the duckdb CLI. Amounts
are in the currency's minor unit (bani, cents) exactly as Stripe gives them; `raw` keeps the whole
Stripe object so that later steps never need to call Stripe again for a field.
"""

from __future__ import annotations

import duckdb

# Columns every Stripe table carries after its own.
_SYNC_COLUMNS = """
    created      TIMESTAMPTZ NOT NULL,
    created_date DATE NOT NULL,           -- day of `created` in Europe/Bucharest
    partition_date DATE NOT NULL,         -- the daily partition that last wrote this row
    synced_at    TIMESTAMPTZ NOT NULL,    -- when its current state was read from Stripe
    raw          JSON NOT NULL
"""

MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE stripe_customers (
        id VARCHAR NOT NULL,
        name VARCHAR,
        email VARCHAR,
        country VARCHAR,
        tax_exempt VARCHAR,
        tax_ids VARCHAR[],
        {_SYNC_COLUMNS}
    );
    CREATE TABLE stripe_invoices (
        id VARCHAR NOT NULL,
        number VARCHAR,
        status VARCHAR,
        customer VARCHAR,
        customer_name VARCHAR,
        customer_email VARCHAR,
        currency VARCHAR NOT NULL,
        subtotal BIGINT,
        total BIGINT,
        total_tax BIGINT,
        amount_paid BIGINT,
        amount_remaining BIGINT,
        finalized_at TIMESTAMPTZ,
        paid_at TIMESTAMPTZ,
        voided_at TIMESTAMPTZ,
        {_SYNC_COLUMNS}
    );
    CREATE TABLE stripe_invoice_lines (
        invoice_id VARCHAR NOT NULL,
        id VARCHAR NOT NULL,
        line_no INTEGER NOT NULL,
        description VARCHAR,
        quantity BIGINT,
        amount BIGINT,
        currency VARCHAR,
        tax_amount BIGINT,
        period_start TIMESTAMPTZ,
        period_end TIMESTAMPTZ,
        partition_date DATE NOT NULL,
        raw JSON NOT NULL
    );
    CREATE TABLE stripe_charges (
        id VARCHAR NOT NULL,
        customer VARCHAR,
        payment_intent VARCHAR,
        description VARCHAR,
        status VARCHAR,
        paid BOOLEAN,
        currency VARCHAR NOT NULL,
        amount BIGINT,
        amount_captured BIGINT,
        amount_refunded BIGINT,
        refunded BOOLEAN,
        {_SYNC_COLUMNS}
    );
    CREATE TABLE stripe_refunds (
        id VARCHAR NOT NULL,
        charge VARCHAR,
        payment_intent VARCHAR,
        status VARCHAR,
        reason VARCHAR,
        currency VARCHAR NOT NULL,
        amount BIGINT,
        {_SYNC_COLUMNS}
    );
    CREATE TABLE stripe_credit_notes (
        id VARCHAR NOT NULL,
        number VARCHAR,
        invoice VARCHAR,
        customer VARCHAR,
        status VARCHAR,
        type VARCHAR,
        reason VARCHAR,
        currency VARCHAR NOT NULL,
        subtotal BIGINT,
        total BIGINT,
        total_tax BIGINT,
        {_SYNC_COLUMNS}
    );
    """,
)


def apply_schema(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ DEFAULT now())"
    )
    (current,) = connection.execute(
        "SELECT coalesce(max(version), 0) FROM schema_migrations"
    ).fetchone()  # type: ignore[misc]
    for version, sql in enumerate(MIGRATIONS[current:], start=current + 1):
        connection.execute("BEGIN")
        try:
            connection.execute(sql)
            connection.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])
            connection.execute("COMMIT")
        except Exception:
            connection.execute("ROLLBACK")
            raise
