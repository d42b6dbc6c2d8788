"""`fx_rates`: BNR's reference exchange rates a day's documents may use.

For partition D the asset stores every rate BNR dated D-10..D (the banking days among them),
which covers the rule of `efactura.fx` (the rate published on the last banking day before the
issue date, at most MAX_RATE_AGE_DAYS old) for every document issued on D. BNR is read first,
with no DuckDB connection open; the rows are then upserted: re-running a day rewrites nothing
that did not change.
"""

from collections.abc import Mapping
from datetime import date, timedelta

import dagster as dg

from invoicesync_dagster.clients.bnr import BnrError
from invoicesync_dagster.defs.metadata import markdown_table, table_metadata, warehouse_link
from invoicesync_dagster.defs.partitions import daily_partitions, partition_day
from invoicesync_dagster.defs.resources import BnrResource, WarehouseResource
from invoicesync_dagster.efactura.fx import (
    MAX_RATE_AGE_DAYS,
    FxRateMissing,
    PublishedRate,
    rate_for,
)
from invoicesync_dagster.warehouse.fx import rates_between, upsert_rates

# The currencies whose applicable rate is shown in the materialization's metadata.
SHOWN_CURRENCIES = ("EUR", "USD")


@dg.asset(
    description="BNR reference exchange rates (RON per unit, or per 100 units for HUF, JPY, "
    "KRW), one row per banking day and currency in `fx_rates`, for the days D-10..D: the "
    "documents issued on D use the rate BNR published on the last banking day before D "
    "(Cod fiscal art. 290 practice) for their VAT amount in RON.",
    metadata=table_metadata("fx_rates"),
    group_name="efactura",
    kinds={"bnr", "duckdb"},
    owners=["team:billing"],
    partitions_def=daily_partitions,
)
def fx_rates(
    context: dg.AssetExecutionContext, bnr: BnrResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    day = partition_day(context.partition_time_window)
    start = day - timedelta(days=MAX_RATE_AGE_DAYS)
    try:
        with bnr.client() as client:
            fetched = client.rates_between(start, day)
    except BnrError as error:
        raise dg.Failure(
            description=f"{error}. No rate was written for {day}: re-materialize this partition "
            "once BNR answers."
        ) from error
    if not fetched.rates:
        raise dg.Failure(
            description=f"BNR's files ({', '.join(fetched.urls)}) hold no rate dated {start}.."
            f"{day}: BNR publishes every banking day, so BNR_RATES_URL probably points at the "
            "wrong place, or the partition is in the future."
        )

    with warehouse.connect() as connection:
        counts = upsert_rates(connection, fetched.rates, fetched.sources)
        stored = rates_between(connection, start, day)

    for changed_day, currency, old, new in counts.changed:
        context.log.warning(
            f"BNR's {currency} rate dated {changed_day} changed from {old} to {new} since it was "
            "last read; documents already built with the old rate keep it"
        )
    row_count = sum(len(by_currency) for by_currency in stored.values())
    metadata: dict[str, dg.RawMetadataValue] = {
        "dagster/row_count": row_count,
        "window": f"{start} .. {day}",
        "banking_days": dg.MetadataValue.json([d.isoformat() for d in sorted(stored)]),
        "rates_inserted": counts.inserted,
        "rates_changed": len(counts.changed),
        "rates_unchanged": counts.unchanged,
        "sources": dg.MetadataValue.json(sorted(set(fetched.sources.values()))),
        "preview": dg.MetadataValue.md(_preview(stored)),
        **warehouse_link(warehouse.path),
    }
    for currency in SHOWN_CURRENCIES:
        key = currency.lower()
        try:
            fx = rate_for(day, stored, currency)
        except FxRateMissing as error:
            context.log.warning(str(error))
            continue
        metadata[f"{key}_rate"] = dg.MetadataValue.float(float(fx.rate))
        metadata[f"{key}_multiplier"] = fx.multiplier
        metadata[f"{key}_rate_date"] = fx.rate_date.isoformat()
    context.log.info(
        f"fx_rates {day}: {len(stored)} banking days ({start}..{day}), {row_count} rates; "
        f"{counts.inserted} new, {len(counts.changed)} changed"
    )
    return dg.MaterializeResult(metadata=metadata)


def _preview(stored: Mapping[date, Mapping[str, PublishedRate]]) -> str:
    """The latest banking day's rates, which documents issued after that day use."""
    if not stored:
        return "_no rates_"
    latest = max(stored)
    rows = [
        [currency, str(fx.rate), str(fx.multiplier)]
        for currency, fx in sorted(stored[latest].items())
    ]
    return f"BNR rates dated {latest}:\n\n" + markdown_table(["currency", "RON", "per"], rows)
