"""Stripe → DuckDB, one Europe/Bucharest day per partition.

Each asset stages the day's objects (created that day, plus older ones whose state changed that
day) and then replaces the day's rows in one transaction: re-materializing a day is idempotent.
"""

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import dagster as dg
import pandas as pd

from invoicesync_dagster.defs.metadata import table_metadata, totals_metadata, warehouse_link
from invoicesync_dagster.defs.partitions import daily_partitions, partition_day, window_seconds
from invoicesync_dagster.defs.resources import StripeResource, WarehouseResource
from invoicesync_dagster.defs.stripe.staging import stage_partition
from invoicesync_dagster.efactura.money import from_minor_units
from invoicesync_dagster.warehouse.stripe import STRIPE_TABLES, partition_summary, replace_partition

_SPEC = {"group_name": "stripe", "kinds": {"stripe", "duckdb"}, "owners": ["team:billing"]}
_COMMON = {**_SPEC, "partitions_def": daily_partitions, "pool": "stripe_api"}
_PROGRESS_EVERY_SECONDS = 5.0


def _ingest(
    context: dg.AssetExecutionContext,
    stripe: StripeResource,
    warehouse: WarehouseResource,
    resource: str,
    *,
    also_ids: Iterable[str] = (),
) -> dict[str, object]:
    """Stage and load one resource for the run's partition; returns materialization metadata."""
    window = context.partition_time_window
    day = partition_day(window)
    last_log = time.monotonic()

    def progress(message: str) -> None:
        nonlocal last_log
        if time.monotonic() - last_log >= _PROGRESS_EVERY_SECONDS:
            context.log.info(message)
            last_log = time.monotonic()

    with tempfile.TemporaryDirectory(prefix=f"invoicesync-{resource}-") as tmp:
        staged = stage_partition(
            stripe.reader(),
            resource,
            window_seconds(window),
            Path(tmp),
            now=int(time.time()),
            lookback_days=stripe.lookback_days,
            also_ids=also_ids,
            on_progress=progress,
        )
        with warehouse.connect() as connection:
            rows = replace_partition(
                connection, resource, day, staged.objects, extra_lines=staged.extra_lines
            )
            by_currency, preview = partition_summary(connection, resource, day)
    if staged.missing:
        context.log.warning(
            f"{len(staged.missing)} {resource} referenced on {day} are unknown to Stripe and "
            f"were skipped: {', '.join(staged.missing[:20])}. Check that STRIPE_API_KEY belongs "
            "to the account that issued them; deleted objects cannot be documented."
        )
    context.log.info(
        f"{STRIPE_TABLES[resource].table} {day}: {staged.created_in_window} created that day, "
        f"{staged.changed_earlier} older objects changed or referenced"
    )
    return {
        "dagster/row_count": rows,
        "created_in_window": staged.created_in_window,
        "changed_earlier": staged.changed_earlier,
        "missing_in_stripe": dg.MetadataValue.json(staged.missing),
        "window": f"{window.start.isoformat()} .. {window.end.isoformat()}",
        "amounts_by_currency_minor_units": dg.MetadataValue.json(by_currency),
        **_totals(by_currency),
        "preview": dg.MetadataValue.md(_markdown(preview)),
        **warehouse_link(warehouse.path),
    }


def _totals(minor_by_currency: dict[str, int]) -> dict[str, dg.MetadataValue]:
    """Per currency in major units (lei, euro), the way an accountant reads them."""
    return totals_metadata(
        {c.upper(): from_minor_units(total, c) for c, total in minor_by_currency.items()}
    )


def _markdown(rows: list[dict[str, object]]) -> str:
    if not rows:
        return "_no rows_"
    return pd.DataFrame(rows).to_markdown(index=False)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "stripe_invoices",
            description="Stripe invoices created on the day or whose state changed that day "
            "(finalized, paid, voided); current state, amounts in minor units (bani, cents). "
            "The source of the day's e-Factura invoices (billable_events decides which).",
            metadata=table_metadata("stripe_invoices"),
            **_SPEC,
        ),
        dg.AssetSpec(
            "stripe_invoice_lines",
            description="The line items of those invoices, one row per line (description, "
            "quantity, amount, tax): they become the invoice lines of the XML.",
            deps=["stripe_invoices"],
            metadata=table_metadata("stripe_invoice_lines"),
            **_SPEC,
        ),
    ],
    partitions_def=daily_partitions,
    pool="stripe_api",
)
def stripe_invoices(
    context: dg.AssetExecutionContext, stripe: StripeResource, warehouse: WarehouseResource
) -> Iterable[dg.MaterializeResult]:
    metadata = _ingest(context, stripe, warehouse, "invoices")
    yield dg.MaterializeResult(asset_key="stripe_invoices", metadata=metadata)
    with warehouse.connect() as connection:
        by_currency = connection.execute(
            "SELECT currency, count(*), sum(amount) FROM stripe_invoice_lines "
            "WHERE partition_date = ? GROUP BY currency ORDER BY currency",
            [partition_day(context.partition_time_window)],
        ).fetchall()
    amounts = {currency or "": int(total or 0) for currency, _count, total in by_currency}
    yield dg.MaterializeResult(
        asset_key="stripe_invoice_lines",
        metadata={
            "dagster/row_count": sum(count for _currency, count, _total in by_currency),
            "amounts_by_currency_minor_units": dg.MetadataValue.json(amounts),
            **_totals({c: t for c, t in amounts.items() if c}),
            **warehouse_link(warehouse.path),
        },
    )


@dg.asset(
    description="Stripe charges created on the day or refunded/captured that day. A succeeded "
    "charge that pays no invoice gets its own one-line e-Factura invoice; one that pays an "
    "invoice is documented by that invoice.",
    metadata=table_metadata("stripe_charges"),
    **_COMMON,
)
def stripe_charges(
    context: dg.AssetExecutionContext, stripe: StripeResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_ingest(context, stripe, warehouse, "charges"))


@dg.asset(
    description="Stripe refunds created on the day: each becomes a credit note (381) for the "
    "refunded amount, unless a Stripe credit note already carries it.",
    metadata=table_metadata("stripe_refunds"),
    **_COMMON,
)
def stripe_refunds(
    context: dg.AssetExecutionContext, stripe: StripeResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_ingest(context, stripe, warehouse, "refunds"))


@dg.asset(
    description="Stripe credit notes created or voided on the day: each becomes an e-Factura "
    "credit note (381) correcting its invoice's document.",
    metadata=table_metadata("stripe_credit_notes"),
    **_COMMON,
)
def stripe_credit_notes(
    context: dg.AssetExecutionContext, stripe: StripeResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_ingest(context, stripe, warehouse, "credit_notes"))


@dg.asset(
    description="Stripe customers created on the day, updated that day, or billed that day "
    "(with their tax ids), so every invoice and charge of the day has its buyer; "
    "customer_tax_profiles turns them into buyer identities.",
    deps=["stripe_invoices", "stripe_charges"],
    metadata=table_metadata("stripe_customers"),
    **_COMMON,
)
def stripe_customers(
    context: dg.AssetExecutionContext, stripe: StripeResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    day = partition_day(context.partition_time_window)
    with warehouse.connect() as connection:
        billed = [
            customer
            for (customer,) in connection.execute(
                "SELECT customer FROM stripe_invoices WHERE partition_date = ? "
                "AND customer IS NOT NULL UNION "
                "SELECT customer FROM stripe_charges WHERE partition_date = ? "
                "AND customer IS NOT NULL",
                [day, day],
            ).fetchall()
        ]
    return dg.MaterializeResult(
        metadata=_ingest(context, stripe, warehouse, "customers", also_ids=billed)
    )
