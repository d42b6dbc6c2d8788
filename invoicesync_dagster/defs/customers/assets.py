"""`customer_tax_profiles`: the buyer identity of every customer billed on a day.

For partition D: the customers with an invoice or charge written by D's Stripe sync, merged with
the mappings CSV and looked up in ANAF's registry (as of day D, through the DuckDB cache), one
row per customer in `customer_tax_profiles`, and the three checks computed from those rows.
"""

from collections import Counter
from collections.abc import Iterator

import dagster as dg

from invoicesync_dagster.clients.anaf_registry import RegistryError
from invoicesync_dagster.defs.customers.checks import CUSTOMER_CHECK_SPECS, evaluate_checks
from invoicesync_dagster.defs.metadata import markdown_table, table_metadata, warehouse_link
from invoicesync_dagster.defs.partitions import daily_partitions, partition_day
from invoicesync_dagster.defs.resources import (
    AnafRegistryResource,
    CustomerMappingsResource,
    WarehouseResource,
)
from invoicesync_dagster.efactura.customers import (
    BuyerProfile,
    StripeCustomer,
    cui_to_look_up,
    merge_profile,
    tax_id_entries,
)
from invoicesync_dagster.warehouse.customers import (
    billed_customers,
    load_profiles,
    registry_facts,
    replace_profiles,
)
from invoicesync_dagster.warehouse.registry import cached, lookup_cached


@dg.asset(
    description="The buyer identity used on invoices, one row per Stripe customer billed on the "
    "day: CUI/CNP/VAT number, legal name and address, classification (ro_company, ro_person, "
    "eu_business, non_eu, unknown), ANAF registry flags (VAT payer, e-Factura, inactive), the "
    "source of each value (mappings CSV > Stripe tax ids > Stripe metadata > ANAF registry) and "
    "whether the customer's documents may be filed (`submission_blocked`). efactura_documents "
    "takes each document's buyer (BG-7) from here.",
    metadata=table_metadata("customer_tax_profiles"),
    group_name="customers",
    kinds={"anaf", "duckdb"},
    owners=["team:billing"],
    partitions_def=daily_partitions,
    deps=["stripe_customers", "stripe_invoices", "stripe_charges"],
    check_specs=CUSTOMER_CHECK_SPECS,
    pool="anaf_registry",
)
def customer_tax_profiles(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    anaf_registry: AnafRegistryResource,
    customer_mappings: CustomerMappingsResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    day = partition_day(context.partition_time_window)
    mappings = customer_mappings.load()
    for problem in mappings.problems:
        context.log.warning(f"{problem} (the other lines are used)")

    with warehouse.connect() as connection:
        billed = billed_customers(connection, day)
    unsynced = [b.customer_id for b in billed if b.raw is None]
    if unsynced:
        context.log.warning(
            f"{len(unsynced)} customers billed on {day} are not in stripe_customers and get no "
            f"profile: {', '.join(unsynced[:20])}. Materialize stripe_customers for {day} first."
        )
    customers = [StripeCustomer.from_stripe(b.raw) for b in billed if b.raw is not None]
    wanted = {
        cui
        for customer in customers
        if (cui := cui_to_look_up(customer, mappings.for_email(customer.email)))
    }

    # The registry is asked as of day D (VAT status on the invoice's day); fresh cached answers
    # are reused. lookup_cached holds no DuckDB connection while ANAF is being asked.
    max_age = anaf_registry.cache_max_age_days
    with warehouse.connect() as connection:
        fresh = cached(connection, wanted, max_age, today=day)
    try:
        with anaf_registry.client() as client:
            answer = lookup_cached(warehouse.path, client, wanted, day, max_age)
    except RegistryError as error:
        raise dg.Failure(
            description=f"{error}. No profile was written for {day}: re-materialize this "
            "partition once ANAF's registry answers."
        ) from error

    tax_ids_by_customer = {b.customer_id: tax_id_entries(b.invoice_tax_ids) for b in billed}
    profiles = []
    for customer in customers:
        mapping = mappings.for_email(customer.email)
        facts = registry_facts(answer, fresh, cui_to_look_up(customer, mapping), day)
        profiles.append(
            merge_profile(
                customer, mapping, facts, invoice_tax_ids=tax_ids_by_customer[customer.id]
            )
        )
    with warehouse.connect() as connection:
        written = replace_profiles(connection, profiles, day)
        stored = load_profiles(connection, [p.customer_id for p in profiles])

    classes = Counter(str(p.classification) for p in stored)
    context.log.info(
        f"customer_tax_profiles {day}: {written} customers ({dict(classes)}); registry: "
        f"{len(wanted - fresh.keys())} CUIs asked, {len(fresh)} from the cache"
    )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": written,
            "by_classification": dg.MetadataValue.json(dict(sorted(classes.items()))),
            "submission_blocked": sum(p.submission_blocked for p in stored),
            "registry_cuis_asked": len(wanted - fresh.keys()),
            "registry_cuis_from_cache": len(fresh),
            "mappings_file": str(customer_mappings.file),
            "mappings_used": len(mappings.entries),
            "mappings_problems": dg.MetadataValue.md(
                "\n".join(f"- {p}" for p in mappings.problems) or "_none_"
            ),
            "customers_not_synced": dg.MetadataValue.json(unsynced),
            "preview": dg.MetadataValue.md(_preview(stored)),
            **warehouse_link(warehouse.path),
        }
    )
    yield from evaluate_checks(stored, {b.customer_id: b for b in billed})


def _preview(profiles: list[BuyerProfile]) -> str:
    if not profiles:
        return "_no customers billed on this day_"
    header = ["customer", "classification", "tax id", "legal name", "name from", "blocked"]
    rows = [
        [
            p.customer_id,
            str(p.classification),
            p.cui or p.cnp or p.vat_number or "",
            p.legal_name or "",
            str(p.legal_name_source or ""),
            "yes" if p.submission_blocked else "",
        ]
        for p in profiles
    ]
    return markdown_table(header, rows)
