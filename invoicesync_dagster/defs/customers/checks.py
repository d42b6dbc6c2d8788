"""The checks of `customer_tax_profiles`, evaluated in the asset's own step on the rows it has
just written (DAGSTER-NOTES §3.4: inline checks never read another partition's data).

Each check looks at the customers billed on the partition's day and, when it fails, names them
in a markdown table with what to do, so the UI shows the offending customers on that day.
"""

import warnings
from collections.abc import Callable, Mapping, Sequence

import dagster as dg

from invoicesync_dagster.defs.metadata import markdown_table
from invoicesync_dagster.defs.partitions import daily_partitions
from invoicesync_dagster.efactura.customers import BuyerProfile
from invoicesync_dagster.warehouse.customers import BilledCustomer

ASSET = "customer_tax_profiles"
MISSING_CUI = "missing_cui"
INVALID_CUI = "invalid_cui"
INACTIVE_BUYER = "inactive_buyer"

with warnings.catch_warnings():
    # Partitioned check specs are Preview in 1.13; without them a result is not tied to its day.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    CUSTOMER_CHECK_SPECS = [
        dg.AssetCheckSpec(
            MISSING_CUI,
            asset=ASSET,
            partitions_def=daily_partitions,
            description="WARN when a customer billed that day looks like a business (a company "
            "name such as SRL/GmbH/Ltd, a VAT number elsewhere, a business-type Stripe tax id) "
            "but has no CUI or VAT number: its invoices would go out as to a private person. "
            "Add `email,CUI` to the mappings CSV (or the tax id in Stripe) and re-materialize.",
        ),
        dg.AssetCheckSpec(
            INVALID_CUI,
            asset=ASSET,
            partitions_def=daily_partitions,
            blocking=False,
            description="ERROR when a customer billed that day has a CUI whose check digit fails "
            "or that ANAF's registry does not know. Such a customer's documents must not be "
            "filed: its profile row is marked `submission_blocked` (with `block_reason`) and the "
            "document step skips exactly those customers. The check is deliberately not a "
            "Dagster-blocking check: that would stop every customer's documents of the day "
            "because of one wrong CUI. Correct the CUI and re-materialize the day.",
        ),
        dg.AssetCheckSpec(
            INACTIVE_BUYER,
            asset=ASSET,
            partitions_def=daily_partitions,
            description="WARN when ANAF's registry flags a customer billed that day as inactive "
            "(declared inactive by ANAF: the buyer cannot deduct the VAT of its invoices). The "
            "invoices are still filed; tell the customer and the accountant.",
        ),
    ]


def evaluate_checks(
    profiles: Sequence[BuyerProfile], billed: Mapping[str, BilledCustomer]
) -> list[dg.AssetCheckResult]:
    """The three check results for the day's profiles (`billed` gives their documents)."""
    missing = [p for p in profiles if p.missing_cui]
    invalid = [p for p in profiles if p.invalid_cui]
    inactive = [p for p in profiles if p.inactive]
    return [
        _result(
            MISSING_CUI,
            missing,
            billed,
            dg.AssetCheckSeverity.WARN,
            {"looks like a business because": lambda p: "; ".join(p.business_signals)},
            _missing_cui_fix,
        ),
        _result(
            INVALID_CUI,
            invalid,
            billed,
            dg.AssetCheckSeverity.ERROR,
            {"CUI": lambda p: p.cui or "", "from": lambda p: str(p.cui_source or "")},
            lambda p: p.block_reason or "",
            extra={"blocked_customer_ids": dg.MetadataValue.json([p.customer_id for p in invalid])},
        ),
        _result(
            INACTIVE_BUYER,
            inactive,
            billed,
            dg.AssetCheckSeverity.WARN,
            {"CUI": lambda p: p.cui or "", "legal name": lambda p: p.legal_name or ""},
            lambda p: (
                "ANAF declared this buyer inactive: its invoices are filed, but it cannot "
                "deduct their VAT; tell the customer and check with the accountant"
            ),
        ),
    ]


def _missing_cui_fix(profile: BuyerProfile) -> str:
    if profile.country not in (None, "RO"):
        return "add the customer's VAT number in Stripe (Customers → Tax IDs, eu_vat)"
    return (
        f"add `{profile.email or '<email>'},<CUI>` to the mappings CSV, or the CUI as a tax id "
        "(eu_vat RO…) in Stripe, then re-materialize this day"
    )


def _result(
    name: str,
    offenders: Sequence[BuyerProfile],
    billed: Mapping[str, BilledCustomer],
    severity: dg.AssetCheckSeverity,
    columns: Mapping[str, Callable[[BuyerProfile], str]],
    fix: Callable[[BuyerProfile], str],
    extra: Mapping[str, dg.MetadataValue] | None = None,
) -> dg.AssetCheckResult:
    header = ["customer", "email", *columns, "invoices", "what to do"]
    rows = [
        [
            f"{p.stripe_name or '(no name)'} ({p.customer_id})",
            p.email or "",
            *(value(p) for value in columns.values()),
            _documents(billed.get(p.customer_id)),
            fix(p),
        ]
        for p in offenders
    ]
    return dg.AssetCheckResult(
        check_name=name,
        passed=not offenders,
        severity=severity,
        metadata={
            "count": len(offenders),
            "customers": dg.MetadataValue.md(markdown_table(header, rows)),
            "customer_ids": dg.MetadataValue.json([p.customer_id for p in offenders]),
            **(extra or {}),
        },
    )


def _documents(customer: BilledCustomer | None) -> str:
    if customer is None:
        return ""
    parts = list(customer.invoices)
    if customer.charges:
        parts.append(f"{customer.charges} charge{'s' if customer.charges > 1 else ''}")
    return ", ".join(parts)
