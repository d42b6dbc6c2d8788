"""Stripe objects as plain dicts, in exactly the shape Stripe's API returns them.

The shape is the one of the stripe SDK's pinned API version (`API_VERSION`): every field that the
SDK's model class declares for the object type is present, null where it does not apply, and
nothing else. `invoicesync_dagster_tests/sandbox/test_stripe_objects_contract.py` checks this
against the SDK's own model classes. The exceptions are listed in `OMITTED_FIELDS` (declared by
the SDK but absent from a default API response) and, for the nested hashes that Stripe fills
sparsely (`payment_method_details`, `payment_method_options`, `destination_details`,
`fraud_details`, `amount_details`), only the keys that apply are present, as on Stripe.

Conventions
- Every factory is pure and keyword-only. Amounts are integers in minor units, currencies are
  lowercase ISO codes (`"ron"`), times are unix seconds, ids are given by the caller.
- Related objects are referenced by id, except where Stripe copies data from the related object:
  `invoice(customer=<customer dict>)` takes the customer's name, email, phone, address, tax ids
  and tax exemption from it, and `credit_note(invoice=<invoice dict>)` its customer and currency.
- Totals are computed from the lines, so they always tie (tax is exclusive, as in Romania):
  `subtotal = sum(line amount)`, `total_excluding_tax = subtotal - discounts`,
  `total = total_excluding_tax + sum(line taxes)`, `amount_due = total`,
  `amount_paid = amount_due` once paid, `amount_remaining = amount_due - amount_paid`.
- `customer.tax_ids` and `invoice.payments` are "includable" on Stripe (returned only with
  `expand[]=tax_ids` / `expand[]=payments`); the factories always include them, because fixtures
  must carry them and the sandbox serves the customer's tax ids only when expanded.
- A tax entry (`taxes[]`, `total_taxes[]`) names its rate by id (`tax_rate_details.tax_rate`);
  the percentage is on that `tax_rate` object: the pinned API puts no percentage on the line.
- Ids: `ids = StripeIds(random.Random(seed))`, then `ids("in")` → `"in_" + 24 characters`
  (`cus_` ids have 14, as on Stripe).

Factories
    address(*, line1, city, country, postal_code=None, state=None, line2=None)
    tax_rate(*, id, created, percentage, country, display_name="VAT", jurisdiction=None,
             description=None)
    coupon(*, id, created, name, percent_off=None, amount_off=None, currency=None,
           times_redeemed=0)
    discount(*, id, coupon, start, customer=None, invoice=None)
    tax_id(*, id, created, customer, type, value, country, verification="verified",
           verified_name=None, verified_address=None)
    customer(*, id, created, name, email, address, tax_ids=(), metadata=None,
             tax_exempt="none", currency=None, phone=None, invoice_prefix=None,
             preferred_locales=(), description=None)
    line_tax(*, amount, taxable_amount, tax_rate, taxability_reason="standard_rated",
             tax_behavior="exclusive")
    discount_amount(*, amount, discount)
    line_item(*, id, invoice, currency, description, unit_amount, quantity, price, product,
              period_start, period_end, discount_amounts=(), taxes=(), invoice_item=None,
              metadata=None)
    invoice_payment(*, id, invoice, created, amount, currency, payment_intent, paid_at=None)
    invoice(*, id, created, customer, currency, lines, status="draft", number=None,
            collection_method="charge_automatically", due_date=None, finalized_at=None,
            paid_at=None, voided_at=None, marked_uncollectible_at=None, discounts=(),
            automatic_tax=True, payments=(), post_payment_credit_notes_amount=0,
            account_name=None, account_country="RO", description=None, footer=None,
            metadata=None)
    billing_details(*, name=None, email=None, phone=None, address=None)
    card_details(*, brand="visa", last4="4242", exp_month=12, exp_year=2030, country="RO",
                 funding="credit", fingerprint=None)
    payment_intent(*, id, created, amount, currency, customer=None, description=None,
                   latest_charge=None, payment_method=None, status="succeeded",
                   receipt_email=None, metadata=None)
    charge(*, id, created, amount, currency, customer=None, payment_intent=None,
           description=None, billing=None, payment_method=None, card=None,
           amount_refunded=0, balance_transaction=None, receipt_email=None, metadata=None,
           statement_descriptor=None)
    refund(*, id, created, amount, charge, currency, payment_intent=None, customer=None,
           reason=None, status="succeeded", balance_transaction=None, payment_method=None,
           metadata=None)
    credit_note_line_from(invoice_line, *, id, quantity=None)
    credit_note_line_item(*, id, description, quantity, unit_amount, invoice_line_item=None,
                          discount_amounts=(), taxes=(), metadata=None)
    credit_note(*, id, created, invoice, lines, number=None, sequence=1, reason=None,
                memo=None, refund=None, status="issued")
    event(*, id, type, created, data_object, previous_attributes=None, request_id=None,
          idempotency_key=None)
    list_object(data, *, url, has_more=False)

A late payment and refund (invoice created on D, paid on D+3, refunded on D+10), as of D+10:

    opened = invoice(id=inv_id, created=d, customer=cus, currency="ron", lines=lines,
                     status="open", number="ABC-0001", finalized_at=d)
    paid = invoice(..., status="paid", paid_at=d3, payments=[invoice_payment(..., paid_at=d3)])
    ch = charge(id=ch_id, created=d3, amount=paid["total"], currency="ron", ...)
    re = refund(id=..., created=d10, amount=500, charge=ch_id, currency="ron")
    refunded = charge(id=ch_id, created=d3, ..., amount_refunded=500)
    events = [event(id=..., type="invoice.finalized", created=d, data_object=opened),
              event(id=..., type="invoice.paid", created=d3, data_object=paid),
              event(id=..., type="charge.refunded", created=d10, data_object=refunded,
                    previous_attributes={"amount_refunded": 0})]
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

API_VERSION = "2026-10-28.endive"  # stripe 16.1.0's pinned version; the contract test checks it
ACCOUNT_ID = "acct_1SandboxInvoiceSync"

# Declared by the SDK's model classes, absent from a default API response, and so never set here:
# `deleted` only exists on the stub a DELETE returns; the others are includable fields, returned
# only when the request expands them (`refunds` on a charge since API version 2022-11-15).
OMITTED_FIELDS: dict[str, frozenset[str]] = {
    "customer": frozenset(
        {"deleted", "cash_balance", "invoice_credit_balance", "sources", "subscriptions", "tax"}
    ),
    "charge": frozenset({"refunds"}),
    "invoice": frozenset({"deleted"}),
    "tax_id": frozenset({"deleted"}),
    "coupon": frozenset({"deleted"}),
    "discount": frozenset({"deleted"}),
}

_ID_LENGTHS = {"cus": 14}
_ID_LENGTH = 24
_BASE64_TO_ALNUM = bytes.maketrans(b"+/", b"Zq")  # ids are alphanumeric


class StripeIds:
    """Deterministic Stripe-looking ids drawn from `rng`: `ids("ch")` → `"ch_" + 24 chars`."""

    def __init__(self, rng: random.Random) -> None:
        self._randbytes = rng.randbytes

    def __call__(self, prefix: str) -> str:
        length = _ID_LENGTHS.get(prefix, _ID_LENGTH)
        raw = base64.b64encode(self._randbytes((length * 3 + 3) // 4))
        return prefix + "_" + raw[:length].translate(_BASE64_TO_ALNUM).decode()


def list_object(data: Sequence[Any], *, url: str, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": list(data), "has_more": has_more, "url": url}


def _transaction_url(kind: str, object_id: str) -> str:
    # Where Stripe would host the document; never fetched by anything here.
    return f"https://pay.stripe.com/{kind}/{ACCOUNT_ID}/test_{object_id.partition('_')[2]}"


# --- reference data ---------------------------------------------------------------------------


def address(
    *,
    line1: str | None,
    city: str | None,
    country: str | None,
    postal_code: str | None = None,
    state: str | None = None,
    line2: str | None = None,
) -> dict[str, Any]:
    return {
        "city": city,
        "country": country,
        "line1": line1,
        "line2": line2,
        "postal_code": postal_code,
        "state": state,
    }


def tax_rate(
    *,
    id: str,
    created: int,
    percentage: float,
    country: str | None,
    display_name: str = "VAT",
    jurisdiction: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """A percentage VAT rate, exclusive (the tax is added on top of the price)."""
    return {
        "id": id,
        "object": "tax_rate",
        "active": True,
        "country": country,
        "created": created,
        "description": description,
        "display_name": display_name,
        "effective_percentage": float(percentage),
        "flat_amount": None,
        "inclusive": False,
        "jurisdiction": jurisdiction,
        "jurisdiction_level": "country" if country else None,
        "livemode": False,
        "metadata": {},
        "percentage": float(percentage),
        "rate_type": "percentage",
        "state": None,
        "tax_type": "vat",
    }


def coupon(
    *,
    id: str,
    created: int,
    name: str,
    percent_off: float | None = None,
    amount_off: int | None = None,
    currency: str | None = None,
    times_redeemed: int = 0,
) -> dict[str, Any]:
    """A one-time coupon: give either `percent_off` or `amount_off` with its `currency`."""
    if (percent_off is None) == (amount_off is None):
        raise ValueError(f"coupon {id}: give exactly one of percent_off and amount_off")
    if amount_off is not None and not currency:
        raise ValueError(f"coupon {id}: amount_off needs the coupon's currency")
    return {
        "id": id,
        "object": "coupon",
        "amount_off": amount_off,
        "applies_to": None,
        "created": created,
        "currency": currency if amount_off is not None else None,
        "currency_options": None,
        "duration": "once",
        "duration_in_months": None,
        "livemode": False,
        "max_redemptions": None,
        "metadata": {},
        "name": name,
        "percent_off": None if percent_off is None else float(percent_off),
        "redeem_by": None,
        "times_redeemed": times_redeemed,
        "valid": True,
    }


def discount(
    *, id: str, coupon: str, start: int, customer: str | None = None, invoice: str | None = None
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "discount",
        "checkout_session": None,
        "customer": customer,
        "customer_account": None,
        "end": None,
        "invoice": invoice,
        "invoice_item": None,
        "promotion_code": None,
        "source": {"coupon": coupon, "type": "coupon"},
        "start": start,
        "subscription": None,
        "subscription_item": None,
    }


# --- customers --------------------------------------------------------------------------------


def tax_id(
    *,
    id: str,
    created: int,
    customer: str,
    type: str,
    value: str,
    country: str | None,
    verification: str = "verified",
    verified_name: str | None = None,
    verified_address: str | None = None,
) -> dict[str, Any]:
    """A customer's tax id; `verification` is Stripe's status (verified, unverified, pending,
    unavailable); the verified name and address are only kept when it is `verified`."""
    verified = verification == "verified"
    return {
        "id": id,
        "object": "tax_id",
        "country": country,
        "created": created,
        "customer": customer,
        "customer_account": None,
        "livemode": False,
        "owner": {
            "account": None,
            "application": None,
            "customer": customer,
            "customer_account": None,
            "type": "customer",
        },
        "type": type,
        "value": value,
        "verification": {
            "status": verification,
            "verified_address": verified_address if verified else None,
            "verified_name": verified_name if verified else None,
        },
    }


def customer(
    *,
    id: str,
    created: int,
    name: str | None,
    email: str | None,
    address: Mapping[str, Any] | None,
    tax_ids: Sequence[Mapping[str, Any]] = (),
    metadata: Mapping[str, str] | None = None,
    tax_exempt: str = "none",
    currency: str | None = None,
    phone: str | None = None,
    invoice_prefix: str | None = None,
    preferred_locales: Sequence[str] = (),
    description: str | None = None,
) -> dict[str, Any]:
    """A customer with its tax ids embedded as a list (as `expand[]=tax_ids` returns it)."""
    return {
        "id": id,
        "object": "customer",
        "address": dict(address) if address is not None else None,
        "balance": 0,
        "business_name": None,
        "created": created,
        "currency": currency,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": description,
        "discount": None,
        "email": email,
        "individual_name": None,
        "invoice_prefix": invoice_prefix,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": dict(metadata or {}),
        "name": name,
        # Omitted by Stripe under account-level invoice numbering, which the sandbox uses.
        "next_invoice_sequence": None,
        "phone": phone,
        "preferred_locales": list(preferred_locales),
        "shipping": None,
        "tax_exempt": tax_exempt,
        "tax_ids": list_object(list(tax_ids), url=f"/v1/customers/{id}/tax_ids"),
        "test_clock": None,
    }


# --- invoices ---------------------------------------------------------------------------------


def line_tax(
    *,
    amount: int,
    taxable_amount: int,
    tax_rate: str | None,
    taxability_reason: str = "standard_rated",
    tax_behavior: str = "exclusive",
) -> dict[str, Any]:
    """One entry of a line's `taxes` (same shape as the invoice's `total_taxes` items).
    `tax_rate` is the id of the tax_rate object that holds the percentage."""
    return {
        "amount": amount,
        "tax_behavior": tax_behavior,
        "tax_rate_details": {"tax_rate": tax_rate} if tax_rate else None,
        "taxability_reason": taxability_reason,
        "taxable_amount": taxable_amount,
        "type": "tax_rate_details",
    }


def discount_amount(*, amount: int, discount: str) -> dict[str, Any]:
    return {"amount": amount, "discount": discount}


def line_item(
    *,
    id: str,
    invoice: str,
    currency: str,
    description: str,
    unit_amount: int,
    quantity: int,
    price: str,
    product: str,
    period_start: int,
    period_end: int,
    discount_amounts: Sequence[Mapping[str, Any]] = (),
    taxes: Sequence[Mapping[str, Any]] = (),
    invoice_item: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An invoice line for a one-off invoice item: `amount = unit_amount * quantity`, before
    discounts and exclusive tax. `discount_amounts` are the invoice-level discounts allocated to
    this line; `taxes` are computed on `amount` minus those discounts."""
    amount = unit_amount * quantity
    discount_amounts = [dict(d) for d in discount_amounts]
    return {
        "id": id,
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": description,
        "discount_amounts": discount_amounts,
        "discountable": True,
        "discounts": [],
        "invoice": invoice,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "parent": {
            "invoice_item_details": {
                "invoice_item": invoice_item or f"ii_{id.partition('_')[2]}",
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        },
        "period": {"end": period_end, "start": period_start},
        "pretax_credit_amounts": [
            {
                "amount": d["amount"],
                "credit_balance_transaction": None,
                "discount": d["discount"],
                "type": "discount",
            }
            for d in discount_amounts
        ],
        "pricing": {
            "price_details": {"price": price, "product": product},
            "type": "price_details",
            "unit_amount_decimal": str(unit_amount),
        },
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "subscription": None,
        "subtotal": amount,
        "taxes": [dict(t) for t in taxes],
    }


def invoice_payment(
    *,
    id: str,
    invoice: str,
    created: int,
    amount: int,
    currency: str,
    payment_intent: str,
    paid_at: int | None = None,
) -> dict[str, Any]:
    """The link between an invoice and the payment intent that pays it (`open` until paid)."""
    return {
        "id": id,
        "object": "invoice_payment",
        "amount_paid": amount if paid_at is not None else None,
        "amount_requested": amount,
        "created": created,
        "currency": currency,
        "invoice": invoice,
        "is_default": True,
        "livemode": False,
        "payment": {
            "charge": None,
            "payment_intent": payment_intent,
            "payment_record": None,
            "type": "payment_intent",
        },
        "status": "paid" if paid_at is not None else "open",
        "status_transitions": {"canceled_at": None, "paid_at": paid_at},
    }


def _sum_by_discount(lines: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for line in lines:
        for d in line["discount_amounts"]:
            totals[d["discount"]] = totals.get(d["discount"], 0) + d["amount"]
    return totals


def _total_taxes(lines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Line taxes summed per (rate, reason, behaviour), in order of first appearance."""
    totals: dict[tuple[Any, ...], dict[str, Any]] = {}
    for line in lines:
        for tax in line["taxes"]:
            details = tax["tax_rate_details"]
            key = (
                details and details["tax_rate"],
                tax["taxability_reason"],
                tax["tax_behavior"],
            )
            total = totals.get(key)
            if total is None:
                totals[key] = {**tax, "tax_rate_details": details and dict(details)}
            else:
                total["amount"] += tax["amount"]
                total["taxable_amount"] = (total["taxable_amount"] or 0) + (
                    tax["taxable_amount"] or 0
                )
    return list(totals.values())


_INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")


def invoice(
    *,
    id: str,
    created: int,
    customer: Mapping[str, Any],
    currency: str,
    lines: Sequence[Mapping[str, Any]],
    status: str = "draft",
    number: str | None = None,
    collection_method: str = "charge_automatically",
    due_date: int | None = None,
    finalized_at: int | None = None,
    paid_at: int | None = None,
    voided_at: int | None = None,
    marked_uncollectible_at: int | None = None,
    discounts: Sequence[str] = (),
    automatic_tax: bool = True,
    payments: Sequence[Mapping[str, Any]] = (),
    post_payment_credit_notes_amount: int = 0,
    account_name: str | None = None,
    account_country: str | None = "RO",
    description: str | None = None,
    footer: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A one-off invoice (billing_reason `manual`) in its state `status`.

    The timestamps must match the status: a finalized invoice (open, paid, void,
    uncollectible) needs `finalized_at` and a `number`; paid needs `paid_at`, void `voided_at`
    and uncollectible `marked_uncollectible_at` (an uncollectible invoice paid later is `paid`
    with both). `lines` are the complete lines (see `line_item`), `discounts` the ids of the
    invoice-level discounts they carry, `payments` its invoice_payment objects.
    """
    if status not in _INVOICE_STATUSES:
        raise ValueError(f"invoice {id}: status {status!r} is not one of {_INVOICE_STATUSES}")
    finalized = status != "draft"
    required = {
        "finalized_at": finalized and finalized_at is None,
        "number": finalized and not number,
        "paid_at": status == "paid" and paid_at is None,
        "voided_at": status == "void" and voided_at is None,
        "marked_uncollectible_at": status == "uncollectible" and marked_uncollectible_at is None,
    }
    missing = [name for name, is_missing in required.items() if is_missing]
    if missing:
        raise ValueError(f"invoice {id}: status {status!r} needs {', '.join(missing)}")
    if status == "draft" and (finalized_at or paid_at or voided_at or number):
        raise ValueError(f"invoice {id}: a draft has no number and no status transitions")

    subtotal = sum(line["amount"] for line in lines)
    by_discount = _sum_by_discount(lines)
    total_discount = sum(by_discount.values())
    total_taxes = _total_taxes(lines)
    total_excluding_tax = subtotal - total_discount
    total = total_excluding_tax + sum(t["amount"] for t in total_taxes)
    amount_paid = total if status == "paid" else 0
    paid_or_closed = status in ("paid", "void", "uncollectible")
    payment_url = _transaction_url("invoices", id) if finalized else None
    return {
        "id": id,
        "object": "invoice",
        "account_country": account_country,
        "account_name": account_name,
        "account_tax_ids": None,
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": amount_paid,
        "amount_paid_off_stripe": 0,
        "amount_remaining": total - amount_paid,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 1 if status == "paid" else 0,
        "attempted": status == "paid",
        "auto_advance": not paid_or_closed and finalized,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": automatic_tax,
            "liability": {"account": None, "type": "self"} if automatic_tax else None,
            "provider": "stripe" if automatic_tax else None,
            "status": ("complete" if finalized else "requires_location_inputs")
            if automatic_tax
            else None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": "manual",
        "collection_method": collection_method,
        "confirmation_secret": None,
        "created": created,
        "currency": currency,
        "custom_fields": None,
        "customer": customer["id"],
        "customer_account": None,
        "customer_address": dict(customer["address"]) if customer["address"] else None,
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "customer_phone": customer["phone"],
        "customer_shipping": None,
        "customer_tax_exempt": customer["tax_exempt"],
        "customer_tax_ids": [
            {"type": t["type"], "value": t["value"]} for t in customer["tax_ids"]["data"]
        ],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": list(discounts),
        "due_date": due_date,
        "effective_at": finalized_at,
        "ending_balance": 0 if finalized else None,
        "footer": footer,
        "from_invoice": None,
        "hosted_invoice_url": payment_url,
        "invoice_pdf": f"{payment_url}/pdf?s=ap" if payment_url else None,
        "issuer": {"account": None, "type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": list_object(list(lines), url=f"/v1/invoices/{id}/lines"),
        "livemode": False,
        "metadata": dict(metadata or {}),
        "next_payment_attempt": None,
        "number": number,
        "on_behalf_of": None,
        "parent": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "payments": list_object(
            [dict(p) for p in payments], url=f"/v1/invoice_payments?invoice={id}"
        ),
        "period_end": created,
        "period_start": created,
        "post_payment_credit_notes_amount": post_payment_credit_notes_amount,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": {
            "amount_tax_display": None,
            "pdf": {"page_size": "auto"},
            "template": None,
            "template_version": None,
        },
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": status,
        "status_details": None,
        "status_transitions": {
            "finalized_at": finalized_at,
            "marked_uncollectible_at": marked_uncollectible_at,
            "paid_at": paid_at,
            "voided_at": voided_at,
        },
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal,
        "test_clock": None,
        "threshold_reason": None,
        "total": total,
        "total_discount_amounts": [
            discount_amount(amount=amount, discount=d) for d, amount in by_discount.items()
        ],
        "total_excluding_tax": total_excluding_tax,
        "total_pretax_credit_amounts": [
            {
                "amount": amount,
                "credit_balance_transaction": None,
                "discount": d,
                "type": "discount",
            }
            for d, amount in by_discount.items()
        ],
        "total_taxes": total_taxes,
        "webhooks_delivered_at": finalized_at if finalized else created,
    }


# --- payments ---------------------------------------------------------------------------------


_EMPTY_ADDRESS = address(line1=None, city=None, country=None)


def billing_details(
    *,
    name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    address: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the payer entered at checkout (`charge.billing_details`)."""
    return {
        "address": dict(address) if address else dict(_EMPTY_ADDRESS),
        "email": email,
        "name": name,
        "phone": phone,
        "tax_id": None,
    }


def card_details(
    *,
    brand: str = "visa",
    last4: str = "4242",
    exp_month: int = 12,
    exp_year: int = 2030,
    country: str = "RO",
    funding: str = "credit",
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """The card a charge was paid with (`payment_method_details.card`), without the amount."""
    return {
        "amount_authorized": None,  # set by `charge`
        "authorization_code": None,
        "brand": brand,
        "capture_before": None,
        "checks": {
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "pass",
        },
        "country": country,
        "description": None,
        "electronic_commerce_indicator": None,
        "exp_month": exp_month,
        "exp_year": exp_year,
        "extended_authorization": {"status": "disabled"},
        "fingerprint": fingerprint,
        "funding": funding,
        "iin": None,
        "incremental_authorization": {"status": "unavailable"},
        "installments": None,
        "issuer": None,
        "last4": last4,
        "mandate": None,
        "moto": None,
        "multicapture": {"status": "unavailable"},
        "network": brand,
        "network_token": {"used": False},
        "network_transaction_id": None,
        "overcapture": {"maximum_amount_capturable": 0, "status": "unavailable"},  # by `charge`
        "regulated_status": "unregulated",
        "setup_credential_usage": None,
        "stored_credential_usage": None,
        "three_d_secure": None,
        "transaction_link_id": None,
        "wallet": None,
    }


def payment_intent(
    *,
    id: str,
    created: int,
    amount: int,
    currency: str,
    customer: str | None = None,
    description: str | None = None,
    latest_charge: str | None = None,
    payment_method: str | None = None,
    status: str = "succeeded",
    receipt_email: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A card payment intent; `amount_received` is the amount once it has succeeded."""
    return {
        "id": id,
        "object": "payment_intent",
        "allowed_payment_method_types": None,
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount if status == "succeeded" else 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{id}_secret_{id[-12:]}",
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": customer,
        "customer_account": None,
        "description": description,
        "excluded_payment_method_types": None,
        "hooks": None,
        "last_payment_error": None,
        "latest_charge": latest_charge,
        "livemode": False,
        "managed_payments": None,
        "metadata": dict(metadata or {}),
        "next_action": None,
        "on_behalf_of": None,
        "payment_details": None,
        "payment_method": payment_method,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": ["card"],
        "payment_record": None,
        "presentment_details": None,
        "processing": None,
        "receipt_email": receipt_email,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def charge(
    *,
    id: str,
    created: int,
    amount: int,
    currency: str,
    customer: str | None = None,
    payment_intent: str | None = None,
    description: str | None = None,
    billing: Mapping[str, Any] | None = None,
    payment_method: str | None = None,
    card: Mapping[str, Any] | None = None,
    amount_refunded: int = 0,
    balance_transaction: str | None = None,
    receipt_email: str | None = None,
    metadata: Mapping[str, str] | None = None,
    statement_descriptor: str | None = None,
) -> dict[str, Any]:
    """A succeeded, captured card charge; `refunded` is true once `amount_refunded` reaches
    `amount`. Build it again with the new `amount_refunded` after each refund. `billing` is a
    `billing_details(...)` and `card` a `card_details(...)` (default: a Visa ending 4242)."""
    if not 0 <= amount_refunded <= amount:
        raise ValueError(
            f"charge {id}: amount_refunded {amount_refunded} must be between 0 and {amount}"
        )
    paid_with = dict(card) if card is not None else card_details()
    paid_with["amount_authorized"] = amount
    paid_with["overcapture"] = {"maximum_amount_capturable": amount, "status": "unavailable"}
    return {
        "id": id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "authorization_code": None,
        "balance_transaction": balance_transaction,
        "billing_details": dict(billing) if billing is not None else billing_details(),
        "calculated_statement_descriptor": statement_descriptor,
        "captured": True,
        "created": created,
        "currency": currency,
        "customer": customer,
        "description": description,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "level3": None,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "on_behalf_of": None,
        "outcome": {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 20,
            "rule": None,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": payment_intent,
        "payment_method": payment_method,
        "payment_method_details": {"card": paid_with, "type": "card"},
        "presentment_details": None,
        "radar_options": None,
        "receipt_email": receipt_email,
        "receipt_number": None,
        "receipt_url": _transaction_url("receipts/payment", id),
        "refunded": amount_refunded == amount,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer": None,
        "transfer_data": None,
        "transfer_group": None,
    }


def refund(
    *,
    id: str,
    created: int,
    amount: int,
    charge: str,
    currency: str,
    payment_intent: str | None = None,
    customer: str | None = None,
    reason: str | None = None,
    status: str = "succeeded",
    balance_transaction: str | None = None,
    payment_method: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A card refund of (part of) `charge`. Pair it with the charge rebuilt with its new
    `amount_refunded` and a `charge.refunded` event."""
    return {
        "id": id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": balance_transaction,
        "charge": charge,
        "created": created,
        "currency": currency,
        "customer": customer,
        "customer_account": None,
        "description": None,
        "destination_details": {
            "card": {
                "reference": None,
                "reference_status": "pending",
                "reference_type": "acquirer_reference_number",
                "type": "refund",
            },
            "type": "card",
        },
        "failure_balance_transaction": None,
        "failure_reason": None,
        "instructions_email": None,
        "metadata": dict(metadata or {}),
        "next_action": None,
        "payment_intent": payment_intent,
        "payment_method": payment_method,
        "pending_reason": None,
        "presentment_details": None,
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }


# --- credit notes -----------------------------------------------------------------------------


def credit_note_line_item(
    *,
    id: str,
    description: str | None,
    quantity: int,
    unit_amount: int,
    invoice_line_item: str | None = None,
    discount_amounts: Sequence[Mapping[str, Any]] = (),
    taxes: Sequence[Mapping[str, Any]] = (),
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A credit note line: `amount = unit_amount * quantity`, before discounts and tax."""
    discount_amounts = [dict(d) for d in discount_amounts]
    return {
        "id": id,
        "object": "credit_note_line_item",
        "amount": unit_amount * quantity,
        "description": description,
        "discount_amount": sum(d["amount"] for d in discount_amounts),
        "discount_amounts": discount_amounts,
        "invoice_line_item": invoice_line_item,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "pretax_credit_amounts": [
            {
                "amount": d["amount"],
                "credit_balance_transaction": None,
                "discount": d["discount"],
                "type": "discount",
            }
            for d in discount_amounts
        ],
        "quantity": quantity,
        "tax_rates": [],
        "taxes": [dict(t) for t in taxes],
        "type": "invoice_line_item" if invoice_line_item else "custom_line_item",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def credit_note_line_from(
    invoice_line: Mapping[str, Any], *, id: str, quantity: int | None = None
) -> dict[str, Any]:
    """A credit note line crediting `quantity` (default: all) units of an invoice line, with
    the line's discounts and taxes taken in proportion (the whole line gives them exactly)."""
    full = invoice_line["quantity"]
    quantity = full if quantity is None else quantity
    if not 0 < quantity <= full:
        raise ValueError(
            f"credit note line {id}: quantity {quantity} must be 1..{full} "
            f"(the quantity of invoice line {invoice_line['id']})"
        )

    def share(amount: int) -> int:
        return amount * quantity // full if quantity != full else amount

    discounts = [
        discount_amount(amount=share(d["amount"]), discount=d["discount"])
        for d in invoice_line["discount_amounts"]
    ]
    taxable = share(invoice_line["amount"]) - sum(d["amount"] for d in discounts)
    taxes = [
        {**tax, "amount": _prorate(tax["amount"], taxable, tax["taxable_amount"] or 0),
         "taxable_amount": taxable}
        for tax in invoice_line["taxes"]
    ]  # fmt: skip
    return credit_note_line_item(
        id=id,
        description=invoice_line["description"],
        quantity=quantity,
        unit_amount=int(invoice_line["pricing"]["unit_amount_decimal"]),
        invoice_line_item=invoice_line["id"],
        discount_amounts=discounts,
        taxes=taxes,
    )


def _prorate(amount: int, part: int, whole: int) -> int:
    """`amount * part / whole`, rounded half up (exact when part == whole)."""
    return (2 * amount * part + whole) // (2 * whole) if whole else 0


def credit_note(
    *,
    id: str,
    created: int,
    invoice: Mapping[str, Any],
    lines: Sequence[Mapping[str, Any]],
    number: str | None = None,
    sequence: int = 1,
    reason: str | None = None,
    memo: str | None = None,
    refund: str | None = None,
    status: str = "issued",
) -> dict[str, Any]:
    """A credit note on `invoice` (its state when the note is issued). On a paid invoice it is
    `post_payment`, and its total is refunded by `refund` (a refund id) or, without one,
    settled outside Stripe (`out_of_band_amount`); on an open invoice it is `pre_payment`.
    The number is Stripe's `<invoice number>-CN-<sequence>` unless given."""
    if invoice["status"] not in ("open", "paid"):
        raise ValueError(
            f"credit note {id}: invoice {invoice['id']} is {invoice['status']}; "
            "only open or paid invoices can be credited"
        )
    subtotal = sum(line["amount"] for line in lines)
    by_discount = _sum_by_discount(lines)
    discount_total = sum(by_discount.values())
    total_taxes = _total_taxes(lines)
    total = subtotal - discount_total + sum(t["amount"] for t in total_taxes)
    if total > invoice["total"]:
        raise ValueError(
            f"credit note {id}: total {total} exceeds invoice {invoice['id']} total "
            f"{invoice['total']}"
        )
    post_payment = invoice["status"] == "paid"
    return {
        "id": id,
        "object": "credit_note",
        "amount": total,
        "amount_shipping": 0,
        "created": created,
        "currency": invoice["currency"],
        "customer": invoice["customer"],
        "customer_account": None,
        "customer_balance_transaction": None,
        "discount_amount": discount_total,
        "discount_amounts": [
            discount_amount(amount=amount, discount=d) for d, amount in by_discount.items()
        ],
        "effective_at": created,
        "invoice": invoice["id"],
        "lines": list_object(list(lines), url=f"/v1/credit_notes/{id}/lines"),
        "livemode": False,
        "memo": memo,
        "metadata": {},
        "number": number or f"{invoice['number']}-CN-{sequence:02d}",
        "out_of_band_amount": total if post_payment and refund is None else None,
        "pdf": _transaction_url("credit_notes", id) + "/pdf?s=ap",
        "post_payment_amount": total if post_payment else 0,
        "pre_payment_amount": 0 if post_payment else total,
        "pretax_credit_amounts": [
            {
                "amount": amount,
                "credit_balance_transaction": None,
                "discount": d,
                "type": "discount",
            }
            for d, amount in by_discount.items()
        ],
        "reason": reason,
        "refunds": [
            {
                "amount_refunded": total,
                "payment_record_refund": None,
                "refund": refund,
                "type": "refund",
            }
        ]
        if refund
        else [],
        "shipping_cost": None,
        "status": status,
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal,
        "total": total,
        "total_excluding_tax": subtotal - discount_total,
        "total_taxes": total_taxes,
        "type": "post_payment" if post_payment else "pre_payment",
        "voided_at": None,
    }


# --- events -----------------------------------------------------------------------------------


def event(
    *,
    id: str,
    type: str,
    created: int,
    data_object: Mapping[str, Any],
    previous_attributes: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """An event of `type` carrying `data_object`, the object's snapshot right after the change,
    and for updates the changed fields' previous values. `request_id` is the API request that
    caused it (None for changes Stripe made itself, such as an automatic payment)."""
    return {
        "id": id,
        "object": "event",
        "account": None,
        "api_version": API_VERSION,
        "context": None,
        "created": created,
        "data": {
            "object": data_object,
            "previous_attributes": dict(previous_attributes) if previous_attributes else None,
        },
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": type,
    }
