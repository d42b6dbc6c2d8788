"""Contract: sandbox Stripe objects have exactly the fields of the stripe SDK's model classes.

The SDK (stripe 16.1.0) is generated from Stripe's OpenAPI spec for its pinned API version and
declares every field of every object type as a class annotation, with the nested hashes as
inner classes (`_inner_class_types`). Every object the factories and the seeder produce is
checked against them, recursively: no field the SDK does not declare, anywhere; and every declared
field present, except `stripe_objects.OMITTED_FIELDS` at the top level and inside the few
hashes that Stripe itself fills sparsely (`SPARSE`).
"""

from __future__ import annotations

import copy
import random
import typing
from collections.abc import Iterator
from datetime import date
from functools import cache
from typing import Any

import pytest
import stripe
from stripe._api_version import _ApiVersion
from stripe._charge import Charge
from stripe._event import Event
from stripe._list_object import ListObject
from stripe._object_classes import get_object_class
from stripe._payment_intent import PaymentIntent
from stripe._refund import Refund
from stripe._stripe_object import StripeObject

from invoicesync_dagster.sandbox import seed
from invoicesync_dagster.sandbox import stripe_objects as so

# Hashes where Stripe returns only the keys that apply (the payment method's own key and
# `type`, a tip only when there is one, fraud details only once reported).
SPARSE: frozenset[type] = frozenset(
    {
        Charge.PaymentMethodDetails,
        Charge.FraudDetails,
        PaymentIntent.AmountDetails,
        PaymentIntent.AmountDetails.Tip,
        PaymentIntent.PaymentMethodOptions,
        PaymentIntent.PaymentMethodOptions.Card,
        Refund.DestinationDetails,
    }
)

OBJECT_TYPES = (
    "tax_rate", "coupon", "discount", "customer", "tax_id", "invoice", "line_item",
    "invoice_payment", "payment_intent", "charge", "refund", "credit_note",
    "credit_note_line_item", "event",
)  # fmt: skip
EVENT_TYPES = (
    "invoice.finalized", "invoice.paid", "invoice.voided", "invoice.marked_uncollectible",
    "charge.succeeded", "charge.refunded", "credit_note.created",
)  # fmt: skip


@cache
def declared_fields(cls: type) -> frozenset[str]:
    fields = set()
    for klass in cls.__mro__:
        for name, hint in vars(klass).get("__annotations__", {}).items():
            if not name.startswith("_") and typing.get_origin(hint) is not typing.ClassVar:
                fields.add(name)
    if issubclass(cls, ListObject):
        fields.add("object")  # every Stripe object says what it is; ListObject doesn't annotate it
    return frozenset(fields)


def model_of(obj: dict[str, Any]) -> type:
    cls = get_object_class("V1", obj["object"])
    assert cls is not StripeObject, f"no SDK model class for object type {obj['object']!r}"
    return cls


def contract_problems(
    value: dict[str, Any], cls: type, path: str, *, top: bool = False, partial: bool = False
) -> Iterator[str]:
    """What in `value` differs from the SDK model `cls`. `partial` checks only that nothing is
    invented (for `previous_attributes`, which holds just the changed fields)."""
    declared = declared_fields(cls)
    for key in sorted(set(value) - declared):
        yield f"{path}.{key}: not a field of {cls.__qualname__}"
    if not partial and cls not in SPARSE:
        omitted = so.OMITTED_FIELDS.get(value.get("object", ""), frozenset()) if top else set()
        expected = declared - omitted
        for key in sorted(expected - set(value)):
            yield f"{path}.{key}: field of {cls.__qualname__} missing"
    inner: dict[str, type] = getattr(cls, "_inner_class_types", {})
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in inner:
            for i, element in enumerate(item if isinstance(item, list) else [item]):
                if element is not None:
                    at = f"{where}[{i}]" if isinstance(item, list) else where
                    yield from contract_problems(element, inner[key], at, partial=partial)
        elif isinstance(item, dict) and isinstance(item.get("object"), str):
            if item["object"] == "list":
                yield from contract_problems(item, ListObject, where, partial=partial)
                for i, element in enumerate(item["data"]):
                    yield from contract_problems(
                        element, model_of(element), f"{where}.data[{i}]", top=True
                    )
            else:  # an embedded object, e.g. an event's data.object
                yield from contract_problems(item, model_of(item), where, top=True)
    if cls is Event.Data and value.get("previous_attributes"):
        yield from contract_problems(
            value["previous_attributes"],
            model_of(value["object"]),
            f"{path}.previous_attributes",
            partial=True,
        )


def check(obj: dict[str, Any]) -> list[str]:
    return list(contract_problems(obj, model_of(obj), obj["object"], top=True))


# --- samples ----------------------------------------------------------------------------------


def factory_fixtures() -> list[dict[str, Any]]:
    """Every factory, called directly the way a test or the sandbox server would."""
    ids = so.StripeIds(random.Random(1))
    d0 = 1_754_000_000
    paid_at = d0 + 3 * 86_400
    vat = so.tax_rate(id=ids("txr"), created=d0, percentage=21, country="RO", jurisdiction="RO")
    coupon = so.coupon(id="SUMMER10", created=d0, name="Vară 10%", percent_off=10)
    cus_id = ids("cus")
    tax_id = so.tax_id(
        id=ids("txi"), created=d0, customer=cus_id, type="eu_vat", value="RO4221306",
        country="RO", verified_name="EXEMPLU", verified_address="Str. Exemplului 10",
    )  # fmt: skip
    customer = so.customer(
        id=cus_id,
        created=d0,
        name="Popescu & Fiii S.R.L.",
        email="office@popescu.ro",
        address=so.address(line1="Str. Lungă 1", city="Sector 3", state="B", country="RO"),
        tax_ids=[tax_id],
        metadata={"reg_com": "J40/1/2020"},
    )
    inv_id, discount_id = ids("in"), ids("di")
    line = so.line_item(
        id=ids("il"), invoice=inv_id, currency="ron", description="Consultanță <oră>",
        unit_amount=25_000, quantity=2, price=ids("price"), product=ids("prod"),
        period_start=d0, period_end=d0,
        discount_amounts=[so.discount_amount(amount=5_000, discount=discount_id)],
        taxes=[so.line_tax(amount=9_450, taxable_amount=45_000, tax_rate=vat["id"])],
    )  # fmt: skip
    pi_id, ch_id = ids("pi"), ids("ch")
    payment = so.invoice_payment(
        id=ids("inpay"), invoice=inv_id, created=paid_at, amount=54_450, currency="ron",
        payment_intent=pi_id, paid_at=paid_at,
    )  # fmt: skip
    common = dict(id=inv_id, created=d0, customer=customer, currency="ron", lines=[line],
                  discounts=[discount_id])  # fmt: skip
    draft = so.invoice(**common)
    opened = so.invoice(**common, status="open", number="ABC-0001", finalized_at=d0)
    paid = so.invoice(
        **common, status="paid", number="ABC-0001", finalized_at=d0, paid_at=paid_at,
        payments=[payment],
    )  # fmt: skip
    card = so.card_details(brand="mastercard", last4="4444", fingerprint="f1ngerpr1nt")
    charge = so.charge(
        id=ch_id, created=paid_at, amount=54_450, currency="ron", customer=cus_id,
        payment_intent=pi_id, description="Payment for Invoice", card=card,
        billing=so.billing_details(name=customer["name"], address=customer["address"]),
    )  # fmt: skip
    refund = so.refund(
        id=ids("re"), created=paid_at + 7 * 86_400, amount=10_000, charge=ch_id,
        currency="ron", payment_intent=pi_id, customer=cus_id, reason="requested_by_customer",
    )  # fmt: skip
    refunded = so.charge(**{**_charge_args(charge), "amount_refunded": 10_000})
    cn_line = so.credit_note_line_from(line, id=ids("cnli"), quantity=1)
    custom_line = so.credit_note_line_item(
        id=ids("cnli"), description="Ajustare", quantity=1, unit_amount=100
    )
    note = so.credit_note(
        id=ids("cn"), created=paid_at + 86_400, invoice=paid, lines=[cn_line], refund=refund["id"]
    )
    pre_payment = so.credit_note(id=ids("cn"), created=d0, invoice=opened, lines=[custom_line])
    return [
        vat, coupon, so.discount(id=discount_id, coupon=coupon["id"], start=d0),
        customer, draft, opened, paid,
        so.payment_intent(id=pi_id, created=paid_at, amount=54_450, currency="ron",
                          latest_charge=ch_id),
        charge, refund, refunded, note, pre_payment,
        so.event(id=ids("evt"), type="invoice.finalized", created=d0, data_object=opened,
                 request_id="req_1", idempotency_key="k1"),
        so.event(id=ids("evt"), type="invoice.paid", created=paid_at, data_object=paid,
                 previous_attributes={"status": "open", "status_transitions": {"paid_at": None}}),
        so.event(id=ids("evt"), type="charge.refunded", created=refund["created"],
                 data_object=refunded, previous_attributes={"amount_refunded": 0}),
    ]  # fmt: skip


def _charge_args(charge: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": charge["id"],
        "created": charge["created"],
        "amount": charge["amount"],
        "currency": charge["currency"],
        "customer": charge["customer"],
        "payment_intent": charge["payment_intent"],
        "card": charge["payment_method_details"]["card"],
        "billing": charge["billing_details"],
    }


@pytest.fixture(scope="module")
def seeded() -> list[dict[str, Any]]:
    return list(seed.generate(10, end_date=date(2025, 8, 5)))


@pytest.fixture(scope="module")
def samples(seeded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return factory_fixtures() + seeded


def kinds(objects: list[dict[str, Any]]) -> set[str]:
    """Object types present, embedded ones included, and event types."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("object"), str):
                found.add(value["object"])
                if value["object"] == "event":
                    found.add(value["type"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(objects)
    return found


# --- tests ------------------------------------------------------------------------------------


def test_api_version_is_the_sdks() -> None:
    assert so.API_VERSION == _ApiVersion.CURRENT == stripe.api_version


def test_samples_cover_every_object_and_event_type(seeded: list[dict[str, Any]]) -> None:
    expected = {*OBJECT_TYPES, *EVENT_TYPES, "list"}
    assert expected - kinds(seeded) == set()
    assert set(OBJECT_TYPES) - kinds(factory_fixtures()) == set()


def test_every_object_matches_the_sdk_model(samples: list[dict[str, Any]]) -> None:
    problems = [problem for obj in samples for problem in check(obj)]
    assert problems == [], "\n".join(problems[:40])


def test_omitted_fields_are_declared_by_the_sdk() -> None:
    # The exemption list can only name real SDK fields, so it cannot hide an invented one.
    for object_type, fields in so.OMITTED_FIELDS.items():
        cls = get_object_class("V1", object_type)
        assert fields <= declared_fields(cls), (object_type, fields - declared_fields(cls))


def test_sdk_round_trip_gives_back_the_same_data(samples: list[dict[str, Any]]) -> None:
    firsts: dict[str, dict[str, Any]] = {}
    for obj in samples:
        firsts.setdefault(obj["type"] if obj["object"] == "event" else obj["object"], obj)
    for kind, obj in firsts.items():
        restored = model_of(obj).construct_from(obj, "sk_test_contract").to_dict(for_json=True)
        assert restored == obj, kind


def _mutations() -> Iterator[tuple[str, Any]]:
    def drop(*path: Any) -> Any:
        def apply(obj: dict[str, Any]) -> None:
            target = obj
            for key in path[:-1]:
                target = target[key]
            del target[path[-1]]

        return apply

    def add(*path: Any) -> Any:
        def apply(obj: dict[str, Any]) -> None:
            target = obj
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = None

        return apply

    yield "dropped top-level field", drop("number")
    yield "invented top-level field", add("invoice_number")
    yield "dropped status transition", drop("status_transitions", "paid_at")
    yield "dropped address field", drop("customer_address", "state")
    yield "invented total_taxes field", add("total_taxes", 0, "percentage_decimal")
    yield "dropped line field", drop("lines", "data", 0, "quantity")
    yield "invented line tax field", add("lines", "data", 0, "taxes", 0, "rate")
    yield "total_count on lines", add("lines", "total_count")
    yield "dropped invoice payment field", drop("payments", "data", 0, "status_transitions")


@pytest.mark.parametrize(("change", "mutate"), list(_mutations()), ids=lambda v: str(v)[:40])
def test_contract_catches_a_wrong_field(change: str, mutate: Any, seeded: list) -> None:
    paid = next(
        o for o in seeded
        if o["object"] == "invoice" and o["status"] == "paid" and o["total_taxes"]
    )  # fmt: skip
    assert check(paid) == []
    broken = copy.deepcopy(paid)
    mutate(broken)
    assert check(broken), f"{change} went unnoticed"


def test_contract_catches_a_wrong_event_snapshot(seeded: list[dict[str, Any]]) -> None:
    event = copy.deepcopy(next(o for o in seeded if o.get("type") == "invoice.paid"))
    event["data"]["object"]["surprise"] = 1
    event["data"]["previous_attributes"]["statut"] = "open"
    assert check(event) == [
        "event.data.object.surprise: not a field of Invoice",
        "event.data.previous_attributes.statut: not a field of Invoice",
    ]
