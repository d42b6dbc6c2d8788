"""Buyers of every kind for the customer tests: Stripe customers billed on DAY, loaded into the
sandbox with the sandbox's own factories."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from invoicesync_dagster.defs.stripe.assets import stripe_charges, stripe_customers, stripe_invoices
from invoicesync_dagster.efactura.identifiers import cui_check_digit
from invoicesync_dagster.sandbox import stripe_objects as so
from invoicesync_dagster_tests.defs.test_stripe_assets import Scenario, at

DAY = date.today() - timedelta(days=3)
STRIPE_ASSETS = [stripe_invoices, stripe_charges, stripe_customers]


def cui(body: int) -> str:
    return f"{body}{cui_check_digit(str(body))}"


class Buyers(Scenario):
    """Customers of every kind, each billed by one paid invoice on DAY."""

    def buyer(
        self,
        name: str,
        email: str,
        *,
        country: str | None = "RO",
        tax_ids: tuple[tuple[str, str], ...] = (),
        **metadata: str,
    ) -> dict[str, Any]:
        created = at(DAY, 1)
        customer_id = self.ids("cus")
        customer = so.customer(
            id=customer_id,
            created=created,
            name=name,
            email=email,
            address=so.address(line1="Str. Lungă 1", city="Cluj-Napoca", state="CJ",
                               country=country) if country else None,
            tax_ids=[
                so.tax_id(id=self.ids("txi"), created=created, customer=customer_id, type=kind,
                          value=value, country=country)
                for kind, value in tax_ids
            ],
            metadata=metadata,
        )  # fmt: skip
        self.load(customer, self.invoice(customer, at(DAY, 10), paid_at=at(DAY, 11)))
        return customer
