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
    # 2: the cache of ANAF registry answers (warehouse/registry.py). IF NOT EXISTS: warehouses
    # created before this migration existed may already hold the table.
    """
    CREATE TABLE IF NOT EXISTS anaf_registry (
        cui VARCHAR PRIMARY KEY,          -- digits only, no RO prefix, no leading zeros
        found BOOLEAN NOT NULL,           -- false: the registry does not know this CUI
        name VARCHAR,                     -- denumire
        registration_number VARCHAR,      -- nrRegCom
        vat_payer BOOLEAN,                -- scpTVA on queried_on
        vat_registered_on DATE,           -- start of the current VAT period
        efactura_registered BOOLEAN,      -- statusRO_e_Factura
        inactive BOOLEAN,                 -- stare_inactiv.statusInactivi
        county_code VARCHAR,              -- ISO 3166-2:RO from scod_JudetAuto, e.g. RO-CJ
        raw JSON,                         -- the v9 record as ANAF sent it; NULL when not found
        queried_on DATE NOT NULL,         -- the date the answer is valid for
        queried_at TIMESTAMPTZ NOT NULL   -- when ANAF was asked
    );
    """,
    # 3: the buyer identity of every Stripe customer (warehouse/customers.py). Each value has a
    # `*_source` column: mappings_csv, stripe_tax_id, stripe_metadata, anaf_registry,
    # stripe_customer or b2c_placeholder.
    """
    CREATE TABLE customer_tax_profiles (
        customer_id VARCHAR NOT NULL,     -- Stripe customer id; one row per customer
        email VARCHAR,
        stripe_name VARCHAR,
        country VARCHAR,                  -- billing country (ISO 3166-1 alpha-2)
        classification VARCHAR NOT NULL,  -- ro_company | ro_person | eu_business | non_eu | unknown
        classification_reason VARCHAR NOT NULL,
        cui VARCHAR,                      -- digits, no RO prefix
        cui_source VARCHAR,
        cui_valid BOOLEAN,                -- check digit; NULL when there is no CUI
        cnp VARCHAR,                      -- ro_person: a CNP or the placeholder 0000000000000
        cnp_source VARCHAR,
        vat_number VARCHAR,               -- a non-Romanian VAT number, prefix included
        vat_number_source VARCHAR,
        legal_name VARCHAR,
        legal_name_source VARCHAR,
        street VARCHAR,
        city VARCHAR,
        county_code VARCHAR,              -- ISO 3166-2:RO (RO-CJ, RO-B), Romanian addresses
        postal_code VARCHAR,
        address_source VARCHAR,
        registration_number VARCHAR,      -- trade register number (J12/345/2015)
        registration_number_source VARCHAR,
        registry_status VARCHAR NOT NULL, -- found | not_found | not_asked
        registry_queried_on DATE,         -- the date the registry answer is valid for
        vat_payer BOOLEAN,                -- registry flags, NULL unless found
        vat_registered_on DATE,
        efactura_registered BOOLEAN,
        inactive BOOLEAN,
        looks_like_business BOOLEAN NOT NULL,
        business_signals VARCHAR[],       -- why it looks like a business
        notes VARCHAR[],                  -- values of lower-precedence sources not used
        submission_blocked BOOLEAN NOT NULL, -- its documents must not be filed (invalid CUI)
        block_reason VARCHAR,             -- what is wrong and how to fix it
        partition_date DATE NOT NULL,     -- the day whose run last wrote this row
        updated_at TIMESTAMPTZ NOT NULL
    );
    """,
    # 4: the ledger of invoice numbers (warehouse/numbering.py, policy in efactura/numbering.py).
    # Rows are never deleted: a number whose document can never be issued is voided, with a reason.
    """
    CREATE TABLE invoice_number_allocations (
        series VARCHAR NOT NULL,          -- letters and digits, e.g. INV
        year INTEGER NOT NULL,            -- year of the issue date in Europe/Bucharest
        number BIGINT NOT NULL CHECK (number >= 1),  -- 1, 2, ... per (series, year), no gaps
        source_key VARCHAR NOT NULL UNIQUE, -- what it numbers: stripe_invoice:in_…
        document_id VARCHAR NOT NULL,     -- the document's BT-1 (cbc:ID), e.g. INV-2026-000123
        allocated_at TIMESTAMPTZ NOT NULL,
        state VARCHAR NOT NULL CHECK (state IN ('allocated', 'voided')),
        void_reason VARCHAR,              -- why it can never be issued; NULL unless voided
        voided_at TIMESTAMPTZ,
        PRIMARY KEY (series, year, number),
        CHECK ((state = 'voided') = (void_reason IS NOT NULL))
    );
    """,
    # 5: BNR reference exchange rates (warehouse/fx.py), for the RON VAT of non-RON documents.
    """
    CREATE TABLE fx_rates (
        rate_date DATE NOT NULL,          -- the banking day BNR dated the rate with
        currency VARCHAR NOT NULL,        -- ISO 4217, e.g. EUR
        rate DECIMAL(18, 4) NOT NULL CHECK (rate > 0),  -- RON for `multiplier` units
        multiplier INTEGER NOT NULL CHECK (multiplier >= 1),  -- 100 for HUF, JPY, KRW
        source VARCHAR NOT NULL,          -- URL of the BNR file it was read from
        fetched_at TIMESTAMPTZ NOT NULL,  -- when this value was first read
        PRIMARY KEY (rate_date, currency)
    );
    """,
    # 6: what each day must document and why, and the documents themselves
    # (warehouse/documents.py; the contract's columns first, ARCHITECTURE.md §3).
    """
    CREATE TABLE billable_events (
        partition_date DATE NOT NULL,     -- the day the trigger happened (Europe/Bucharest)
        source_key VARCHAR NOT NULL,      -- stripe_invoice:in_…, the document_id it becomes
        source_type VARCHAR NOT NULL,     -- stripe_invoice, _charge, _refund or _credit_note
        source_id VARCHAR NOT NULL,       -- the Stripe id
        trigger VARCHAR NOT NULL,         -- invoice_paid, invoice_finalized, charge_succeeded,
                                          -- refund or credit_note
        occurred_at TIMESTAMPTZ NOT NULL,
        customer_id VARCHAR,
        currency VARCHAR NOT NULL,
        amount DECIMAL(18, 2) NOT NULL,   -- Stripe's total, positive
        kind VARCHAR NOT NULL,            -- invoice | credit_note
        corrects VARCHAR,                 -- credit notes: the source key of the corrected document
        decision VARCHAR NOT NULL,        -- document | skip
        reason VARCHAR NOT NULL,          -- why
        PRIMARY KEY (partition_date, source_key)
    );
    CREATE TABLE efactura_documents (
        document_id VARCHAR PRIMARY KEY,  -- the source key: one source, one document, forever
        source_type VARCHAR NOT NULL,
        source_id VARCHAR NOT NULL,
        partition_date DATE NOT NULL,
        kind VARCHAR NOT NULL,            -- invoice | credit_note
        series VARCHAR,                   -- NULL until numbered
        number BIGINT,                    -- 1, 2, ... per series and year
        invoice_number VARCHAR,           -- BT-1 as written in the XML: INV-2026-000123
        issue_date DATE NOT NULL,
        currency VARCHAR NOT NULL,
        total DECIMAL(18, 2),             -- total with VAT (BT-112 + rounding BT-114)
        tax_total DECIMAL(18, 2),         -- VAT total (BT-110)
        buyer_cui VARCHAR,                -- Romanian company buyers: CUI digits
        xml VARCHAR,                      -- the UBL document, UTF-8; NULL unless status ready
        xml_sha256 VARCHAR,
        status VARCHAR NOT NULL,          -- ready | held | blocked (issue 5 adds the filing states)
        stripe_amount DECIMAL(18, 2) NOT NULL,  -- Stripe's total for the source
        tax_total_ron DECIMAL(18, 2),     -- BT-111 for non-RON documents
        fx_rate DECIMAL(18, 6),           -- RON per unit used for BT-111
        fx_rate_date DATE,                -- the BNR banking day of that rate
        customer_id VARCHAR,
        buyer_name VARCHAR,
        buyer_tax_id VARCHAR,             -- BT-48 VAT id, else BT-47 (CUI, CNP or 0000000000000)
        corrects VARCHAR,                 -- credit notes: document_id of the corrected document
        errors JSON NOT NULL,             -- why it is held or blocked: rule id, field, fix
        warnings JSON NOT NULL,
        notes JSON NOT NULL,              -- how Stripe's figures were read, rounding kept
        document JSON,                    -- the invoice model, for credit notes that correct it
        built_at TIMESTAMPTZ NOT NULL
    );
    CREATE VIEW v_documents_to_fix AS
        SELECT partition_date, document_id, status, customer_id, buyer_name, currency,
               stripe_amount, errors
        FROM efactura_documents WHERE status IN ('held', 'blocked')
        ORDER BY partition_date, document_id;
    """,
    # 7: the outbox, one row per filing attempt (warehouse/submissions.py, efactura/submission.py).
    # An attempt is written before its document leaves (state `sending`) and updated after.
    """
    CREATE TABLE efactura_submissions (
        document_id VARCHAR NOT NULL,     -- efactura_documents.document_id
        provider VARCHAR NOT NULL,        -- anaf | smartbill
        attempt INTEGER NOT NULL CHECK (attempt >= 1),
        invoice_number VARCHAR NOT NULL,  -- BT-1 as sent
        xml_sha256 VARCHAR,               -- of the XML as sent
        state VARCHAR NOT NULL CHECK (state IN
            ('sending', 'unknown', 'sent', 'accepted', 'rejected', 'failed')),
        upload_index VARCHAR,             -- ANAF index_incarcare; SmartBill series-number
        download_id VARCHAR,              -- ANAF id_descarcare of the final answer
        errors JSON NOT NULL,             -- the provider's errors (nok, refusals)
        created_at TIMESTAMPTZ NOT NULL,  -- recorded, before sending
        sent_at TIMESTAMPTZ,              -- the provider answered with an index
        final_at TIMESTAMPTZ,             -- accepted or rejected became known
        archive_path VARCHAR,             -- the stored answer (signed zip, error zip)
        PRIMARY KEY (document_id, provider, attempt)
    );
    CREATE VIEW v_invoice_status AS
        WITH last AS (
            SELECT * FROM efactura_submissions
            QUALIFY row_number() OVER (PARTITION BY document_id ORDER BY attempt DESC,
                                       created_at DESC) = 1
        )
        SELECT d.partition_date, d.document_id, d.invoice_number, d.kind, d.issue_date,
               d.currency, d.total, d.status AS document_status, last.provider,
               last.attempt, coalesce(last.state, 'not_sent') AS filing_state,
               last.upload_index, last.errors, last.sent_at, last.final_at
        FROM efactura_documents AS d LEFT JOIN last USING (document_id)
        ORDER BY d.partition_date, d.invoice_number NULLS LAST, d.document_id;
    """,
    # 8: what the monthly reconciliation with ANAF's message list found
    # (warehouse/reconciliation.py, defs/efactura/reconciliation.py); each run of a month
    # replaces that month's rows. No rows for a month: nothing was found.
    """
    CREATE TABLE efactura_reconciliation (
        month DATE NOT NULL,              -- first day of the reconciled month (issue dates)
        document_id VARCHAR,              -- NULL for an upload the books do not know
        invoice_number VARCHAR,
        upload_index VARCHAR,             -- ANAF index_incarcare
        our_state VARCHAR,                -- the attempt in efactura_submissions: sent | accepted
                                          -- | rejected; NULL for an unknown upload
        anaf_state VARCHAR NOT NULL,      -- ANAF's word: FACTURA TRIMISA | ERORI FACTURA |
                                          -- not listed | ok | nok | rejected_xml | in_progress
        finding VARCHAR NOT NULL,         -- the kind, e.g. accepted_but_rejected_at_anaf
        fix VARCHAR NOT NULL,             -- what was done, or what a person must do
        repaired BOOLEAN NOT NULL,        -- true: the reconciliation fixed it itself
        checked_at TIMESTAMPTZ NOT NULL
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
