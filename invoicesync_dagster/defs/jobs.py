"""Jobs. Every job that writes the warehouse carries the DuckDB-writer tag, which dagster.yaml
limits to one run at a time (DuckDB allows a single writing process)."""

from __future__ import annotations

import dagster as dg

DUCKDB_WRITER = {"invoicesync/duckdb": "writer"}

stripe_sync_job = dg.define_asset_job(
    "stripe_sync_job",
    selection=dg.AssetSelection.groups("stripe"),
    tags=DUCKDB_WRITER,
    description="Reads one day of Stripe (invoices, lines, charges, refunds, credit notes, "
    "customers) into DuckDB.",
)

customer_profiles_job = dg.define_asset_job(
    "customer_profiles_job",
    selection=dg.AssetSelection.groups("customers"),
    tags=DUCKDB_WRITER,
    description="Builds one day's buyer profiles (CUI/CNP, ANAF registry data) from the synced "
    "Stripe customers, with the missing_cui, invalid_cui and inactive_buyer checks. Run it "
    "after stripe_sync_job for the same day.",
)

efactura_job = dg.define_asset_job(
    "efactura_job",
    selection=dg.AssetSelection.groups("efactura"),
    tags=DUCKDB_WRITER,
    description="Builds one day's e-Factura documents in DuckDB (BNR exchange rates, billable "
    "events, numbered CIUS-RO XML with their checks) and files the ready ones with ANAF when "
    "ANAF_ENABLED. Run it after customer_profiles_job for the same day.",
)

daily_invoice_job = dg.define_asset_job(
    "daily_invoice_job",
    selection=dg.AssetSelection.groups("stripe", "customers", "efactura"),
    tags=DUCKDB_WRITER,
    description="One whole day, in order: Stripe → buyer profiles → documents → filing. What the "
    "02:15 schedule runs for the previous day (Europe/Bucharest), and what a backfill runs per "
    "day (oldest first, one at a time: the DuckDB writer limit queues the others).",
)

monthly_reconciliation_job = dg.define_asset_job(
    "monthly_reconciliation_job",
    selection=dg.AssetSelection.assets("efactura_reconciliation"),
    tags=DUCKDB_WRITER,
    description="One month's ANAF uploads checked against ANAF's message list: missed answers "
    "recorded, missing archive zips downloaded again, contradictions written to the "
    "efactura_reconciliation table. What the schedule runs on the 1st for the previous month.",
)
