"""SQL of table `customer_tax_profiles`: who was billed on a day, and the buyer profiles.

A customer is billed on day D when one of its invoices (other than a draft) or charges was
written by partition D (`partition_date`, see warehouse/stripe.py: created that day, or changed
that day). Profiles are written one row per Stripe customer: a day's run replaces the rows of the
customers it profiled, in one transaction, and leaves every other customer's row alone.

`submission_blocks` is what the document step asks before filing a customer's documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
import pandas as pd

from invoicesync_dagster.clients.anaf_registry import RegistryAnswer
from invoicesync_dagster.efactura.customers import BuyerProfile, RegistryFacts
from invoicesync_dagster.warehouse.registry import CachedAnswer

PROFILE_COLUMNS = tuple(BuyerProfile.model_fields)


@dataclass
class BilledCustomer:
    """A customer billed on the day, with its Stripe object (None if it was never synced)."""

    customer_id: str
    raw: dict[str, Any] | None
    invoices: list[str] = field(default_factory=list)  # invoice numbers (ids of unnumbered)
    charges: int = 0
    invoice_tax_ids: list[dict[str, Any]] = field(default_factory=list)


def billed_customers(connection: duckdb.DuckDBPyConnection, day: date) -> list[BilledCustomer]:
    """Every customer with a non-draft invoice or a charge in partition `day`, by id."""
    rows = connection.execute(
        """
        WITH documents AS (
            SELECT customer, coalesce(number, id) AS invoice, NULL AS charge,
                   raw->'customer_tax_ids' AS tax_ids
            FROM stripe_invoices
            WHERE partition_date = ? AND customer IS NOT NULL AND status <> 'draft'
            UNION ALL
            SELECT customer, NULL, id, NULL
            FROM stripe_charges WHERE partition_date = ? AND customer IS NOT NULL
        ), billed AS (
            SELECT customer,
                   list(DISTINCT invoice ORDER BY invoice) FILTER (WHERE invoice IS NOT NULL)
                       AS invoices,
                   count(charge) AS charges,
                   list(tax_ids) FILTER (WHERE tax_ids IS NOT NULL) AS tax_ids
            FROM documents GROUP BY customer
        )
        SELECT billed.customer, c.raw, billed.invoices, billed.charges, billed.tax_ids
        FROM billed LEFT JOIN stripe_customers AS c ON c.id = billed.customer
        ORDER BY billed.customer
        """,
        [day, day],
    ).fetchall()
    customers = []
    for customer_id, raw, invoices, charges, tax_id_lists in rows:
        tax_ids = [t for text in tax_id_lists or [] for t in (json.loads(text) or [])]
        customers.append(
            BilledCustomer(
                customer_id=customer_id,
                raw=json.loads(raw) if raw is not None else None,
                invoices=list(invoices or []),
                charges=int(charges),
                invoice_tax_ids=tax_ids,
            )
        )
    return customers


def replace_profiles(
    connection: duckdb.DuckDBPyConnection, profiles: Sequence[BuyerProfile], partition_date: date
) -> int:
    """Write the profiles (replacing those customers' rows) in one transaction."""
    if not profiles:
        return 0
    frame = pd.DataFrame([profile.model_dump(mode="json") for profile in profiles])
    frame = frame[list(PROFILE_COLUMNS)]
    connection.execute("BEGIN")
    try:
        connection.execute(
            "DELETE FROM customer_tax_profiles WHERE customer_id IN (SELECT customer_id FROM frame)"
        )
        columns = ", ".join(PROFILE_COLUMNS)
        connection.execute(
            f"INSERT INTO customer_tax_profiles ({columns}, partition_date, updated_at) "
            f"SELECT {columns}, ?::DATE, now() FROM frame",
            [partition_date],
        )
        connection.execute("COMMIT")
    except Exception:
        connection.execute("ROLLBACK")
        raise
    return len(frame)


def load_profiles(
    connection: duckdb.DuckDBPyConnection, customer_ids: Iterable[str]
) -> list[BuyerProfile]:
    """The stored profiles of these customers, as written (ordered by customer id)."""
    cursor = connection.execute(
        f"SELECT {', '.join(PROFILE_COLUMNS)} FROM customer_tax_profiles "
        "WHERE customer_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY customer_id",
        [sorted(set(customer_ids))],
    )
    return [
        BuyerProfile.model_validate(dict(zip(PROFILE_COLUMNS, row, strict=True)))
        for row in cursor.fetchall()
    ]


def submission_blocks(
    connection: duckdb.DuckDBPyConnection, customer_ids: Iterable[str]
) -> dict[str, str]:
    """The customers among `customer_ids` whose documents must not be filed, with the reason.

    A customer without a profile is not in the answer: profiles are built before documents."""
    rows = connection.execute(
        "SELECT customer_id, block_reason FROM customer_tax_profiles "
        "WHERE submission_blocked AND customer_id IN (SELECT unnest(?::VARCHAR[]))",
        [sorted(set(customer_ids))],
    ).fetchall()
    return {customer_id: reason or "blocked" for customer_id, reason in rows}


def registry_facts(
    answer: RegistryAnswer, cached: Mapping[str, CachedAnswer], cui: str | None, asked_on: date
) -> RegistryFacts | None:
    """The registry's answer about `cui` in the domain's terms (None: it was not asked). A
    not-found answer is dated by its cache row when it came from the cache, else `asked_on`."""
    if cui is None:
        return None
    record = answer.found.get(cui)
    if record is not None:
        return RegistryFacts.model_validate(record, from_attributes=True)
    if cui in answer.not_found:
        row = cached.get(cui)
        return RegistryFacts(cui=cui, found=False, queried_date=row.queried_on if row else asked_on)
    return None
