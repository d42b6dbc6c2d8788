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
