"""Stripe objects and buyer profiles for the document tests, built with the sandbox factories
(`sandbox/stripe_objects.py`) so they have exactly the shape Stripe's API returns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from invoicesync_dagster.efactura import rules
from invoicesync_dagster.efactura.customers import BuyerProfile, StripeCustomer, merge_profile
from invoicesync_dagster.efactura.from_stripe import (
    Buyer,
    DocumentPolicy,
    Mapped,
    buyer_from_profile,
    invoice_document,
)
from invoicesync_dagster.efactura.model import Document, build_document
from invoicesync_dagster.sandbox import stripe_objects as so
from invoicesync_dagster.sandbox.offline_documents import SANDBOX_POLICY

BUCHAREST = ZoneInfo("Europe/Bucharest")
Obj = dict[str, Any]


def at(day: date, hour: int = 12, minute: int = 0) -> int:
    """Unix seconds of a Bucharest wall-clock time."""
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=BUCHAREST).timestamp())


def tax_rate_id(percent: int | str) -> str:
    return f"txr_RO{percent}"


def ro_company(
    id: str = "cus_RoCompany001",
    *,
    name: str = "Carpați Soft S.R.L.",
    cui: str = "RO8486152",
    city: str = "Cluj-Napoca",
    state: str = "Cluj",
    line1: str = "Str. Memorandumului nr. 28",
    email: str = "facturi@carpati-soft.ro",
) -> Obj:
    return so.customer(
        id=id,
        created=at(date(2024, 1, 10)),
        name=name,
        email=email,
        address=so.address(line1=line1, city=city, state=state, postal_code="400114", country="RO"),
        tax_ids=[
            so.tax_id(
                id=f"txi_{id[4:]}",
                created=0,
                customer=id,
                type="eu_vat",
                value=cui,
                country="RO",
            )
        ],
        currency="ron",
    )


def ro_person(id: str = "cus_RoPerson0001", *, cnp: str | None = None) -> Obj:
    return so.customer(
        id=id,
        created=at(date(2024, 2, 1)),
        name="Ioana Popescu",
        email="ioana.popescu@example.com",
        address=so.address(
            line1="Str. Lăpușneanu nr. 12",
            city="Iași",
            state="IS",
            postal_code="700057",
            country="RO",
        ),
        metadata={"cnp": cnp} if cnp else None,
        currency="ron",
    )


def eu_business(id: str = "cus_DeBusiness01", *, vat: str = "DE123456789") -> Obj:
    return so.customer(
        id=id,
        created=at(date(2024, 3, 1)),
        name="Müller & Söhne GmbH",
        email="buchhaltung@mueller.example",
        address=so.address(
            line1="Invalidenstraße 42", city="Berlin", postal_code="10115", country="DE"
        ),
        tax_ids=[
            so.tax_id(
                id=f"txi_{id[4:]}", created=0, customer=id, type="eu_vat", value=vat, country="DE"
            )
        ],
        tax_exempt="reverse",
        currency="eur",
    )


def non_eu_business(id: str = "cus_GbBusiness01") -> Obj:
    return so.customer(
        id=id,
        created=at(date(2024, 3, 1)),
        name="Thames & Partners Ltd",
        email="accounts@thames.example",
        address=so.address(
            line1="1 King's Road", city="London", postal_code="SW3 4TR", country="GB"
        ),
        tax_ids=[
            so.tax_id(
                id=f"txi_{id[4:]}",
                created=0,
                customer=id,
                type="gb_vat",
                value="GB123456789",
                country="GB",
            )
        ],
        tax_exempt="exempt",
        currency="usd",
    )


def profile_of(customer: Obj) -> BuyerProfile:
    return merge_profile(StripeCustomer.from_stripe(customer))


def buyer_of(customer: Obj) -> Buyer:
    return buyer_from_profile(profile_of(customer))


def vat_of(taxable: int, percent: int | str) -> int:
    """Stripe's tax on a line, in minor units, rounded half up."""
    exact = Decimal(taxable) * Decimal(percent) / 100
    return int(exact.quantize(Decimal(1), ROUND_HALF_UP))


def invoice_line(
    id: str,
    *,
    invoice: str = "in_Test000000000000000001",
    description: str = "Abonament lunar InvoiceSync — plan Profesional",
    unit: int = 29900,
    quantity: int = 1,
    percent: int | str | None = 21,
    tax: int | None = None,
    discount: int = 0,
    currency: str = "ron",
    taxability_reason: str = "standard_rated",
) -> Obj:
    """A line; `percent` None: no Stripe tax entry; `tax` overrides Stripe's tax amount."""
    taxable = unit * quantity - discount
    taxes = []
    if percent is not None:
        taxes.append(
            so.line_tax(
                amount=vat_of(taxable, percent) if tax is None else tax,
                taxable_amount=taxable,
                tax_rate=tax_rate_id(percent),
                taxability_reason=taxability_reason,
            )
        )
    return so.line_item(
        id=id,
        invoice=invoice,
        currency=currency,
        description=description,
        unit_amount=unit,
        quantity=quantity,
        price=f"price_{id[3:]}",
        product=f"prod_{id[3:]}",
        period_start=0,
        period_end=0,
        discount_amounts=[so.discount_amount(amount=discount, discount="di_Test1")]
        if discount
        else (),
        taxes=taxes,
    )


def stripe_invoice(
    id: str,
    customer: Obj,
    lines: Sequence[Obj],
    *,
    finalized: int,
    paid: int | None = None,
    status: str = "paid",
    number: str | None = None,
    currency: str | None = None,
    payment_intent: str | None = None,
    description: str | None = None,
    voided: int | None = None,
) -> Obj:
    """A finalized invoice; paid (with its payment intent linked) when `paid` is given."""
    payments = []
    if paid is not None and payment_intent is not None:
        payments.append(
            so.invoice_payment(
                id=f"inpay_{id[3:]}",
                invoice=id,
                created=paid,
                amount=0,
                currency=currency or lines[0]["currency"],
                payment_intent=payment_intent,
                paid_at=paid,
            )
        )
    return so.invoice(
        id=id,
        created=finalized - 60,
        customer=customer,
        currency=currency or lines[0]["currency"],
        lines=lines,
        status=status,
        number=number or f"SANDBOX-{id[-4:]}",
        finalized_at=finalized,
        paid_at=paid if status == "paid" else None,
        voided_at=voided,
        discounts=["di_Test1"] if any(line["discount_amounts"] for line in lines) else (),
        payments=payments,
        description=description,
    )


def one_off_charge(
    id: str,
    *,
    created: int,
    amount: int,
    currency: str = "ron",
    customer: str | None = None,
    description: str | None = "Bilet eveniment <Tech Cluj>",
    name: str | None = "Andrei Ionescu",
    address: Obj | None = None,
    payment_intent: str | None = None,
) -> Obj:
    return so.charge(
        id=id,
        created=created,
        amount=amount,
        currency=currency,
        customer=customer,
        payment_intent=payment_intent,
        description=description,
        billing=so.billing_details(
            name=name,
            email="andrei.ionescu@example.com",
            address=address
            if address is not None
            else so.address(
                line1="Calea Moșilor nr. 12",
                city="Sector 2",
                state="București",
                postal_code="020881",
                country="RO",
            ),
        ),
    )


def stripe_refund(
    id: str, *, charge: str, amount: int, created: int, currency: str = "ron", **more: Any
) -> Obj:
    return so.refund(
        id=id, created=created, amount=amount, charge=charge, currency=currency, **more
    )


def built(mapped: Mapped, source: str = "test") -> Document:
    """The document `documents.build_day` would build: reconciled to Stripe's figures."""
    return build_document(mapped.draft, mapped.expected, source=source)


def map_invoice(
    invoice: Obj,
    customer: Obj,
    *,
    issue_date: date,
    number: str = "INV-2025-000001",
    policy: DocumentPolicy = SANDBOX_POLICY,
    fx_rate: Decimal | None = None,
) -> Document:
    return built(
        invoice_document(
            invoice,
            invoice["lines"]["data"],
            buyer_of(customer),
            policy,
            number=number,
            issue_date=issue_date,
            fx_rate=fx_rate,
        ),
        invoice["id"],
    )


def errors(document: Document) -> list[str]:
    return [str(f) for f in rules.check(document) if f.severity is rules.Severity.ERROR]


def major(minor: int) -> Decimal:
    return Decimal(minor).scaleb(-2)
