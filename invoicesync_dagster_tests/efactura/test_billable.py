"""Which Stripe triggers of a day become documents, and why (efactura/billable.py)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from invoicesync_dagster.efactura.billable import (
    BillableEvent,
    Decision,
    StripeDay,
    credit_note_refund_links,
    events_for_day,
    invoice_payment_links,
)
from invoicesync_dagster.sandbox import seed
from invoicesync_dagster.sandbox import stripe_objects as so
from invoicesync_dagster_tests.efactura.stripe_builders import (
    BUCHAREST,
    at,
    invoice_line,
    one_off_charge,
    ro_company,
    stripe_invoice,
    stripe_refund,
)

D = date(2025, 9, 10)
CUSTOMER = ro_company()


def window(day: date) -> tuple[datetime, datetime]:
    """Midnight to midnight in Bucharest (23, 24 or 25 hours), in UTC: arithmetic on datetimes
    sharing a ZoneInfo is wall-clock arithmetic, blind to the DST change."""
    start = datetime.combine(day, time(), BUCHAREST)
    end = datetime.combine(day + timedelta(days=1), time(), BUCHAREST)
    return start.astimezone(UTC), end.astimezone(UTC)


def stripe_day(day: date = D, **objects: Any) -> StripeDay:
    start, end = window(day)
    invoices = objects.get("invoices", ())
    notes = objects.get("credit_notes", ())
    objects.setdefault("invoice_by_payment", invoice_payment_links(invoices))
    objects.setdefault("credit_note_refunds", credit_note_refund_links(notes))
    return StripeDay(start=start, end=end, **objects)


def only(events: list[BillableEvent]) -> BillableEvent:
    assert len(events) == 1, events
    return events[0]


def paid_invoice(id: str = "in_Paid0000000000000000001", **times: Any) -> dict[str, Any]:
    times.setdefault("finalized", at(D - timedelta(days=2), 9))
    times.setdefault("paid", at(D, 11))
    return stripe_invoice(id, CUSTOMER, [invoice_line("il_1")], payment_intent="pi_Paid1", **times)


# -- invoices ----------------------------------------------------------------------------------


def test_invoice_on_paid_documents_the_invoice_on_its_payment_day() -> None:
    invoice = paid_invoice()

    event = only(events_for_day(stripe_day(D, invoices=(invoice,))))

    assert (event.decision, event.trigger, event.kind) == (
        Decision.DOCUMENT,
        "invoice_paid",
        "invoice",
    )
    assert event.source_key == "stripe_invoice:in_Paid0000000000000000001"
    assert event.occurred_at == datetime.fromtimestamp(at(D, 11), UTC)
    assert event.amount == Decimal(invoice["total"]) / 100 and event.currency == "RON"
    assert event.customer_id == CUSTOMER["id"]
    assert "paid" in event.reason
    finalized_day = stripe_day(D - timedelta(days=2), invoices=(invoice,))
    assert events_for_day(finalized_day) == []


def test_invoice_on_finalized_documents_the_invoice_on_its_finalization_day() -> None:
    invoice = paid_invoice()

    finalized_day = stripe_day(D - timedelta(days=2), invoices=(invoice,), invoice_on="finalized")
    event = only(events_for_day(finalized_day))

    assert (event.decision, event.trigger) == (Decision.DOCUMENT, "invoice_finalized")
    assert "finalized" in event.reason
    assert events_for_day(stripe_day(D, invoices=(invoice,), invoice_on="finalized")) == []


def test_open_invoice_is_documented_only_when_finalization_is_the_trigger() -> None:
    invoice = stripe_invoice(
        "in_Open0000000000000000001",
        CUSTOMER,
        [invoice_line("il_1")],
        finalized=at(D, 9),
        status="open",
    )

    assert events_for_day(stripe_day(D, invoices=(invoice,))) == []
    event = only(events_for_day(stripe_day(D, invoices=(invoice,), invoice_on="finalized")))
    assert event.decision is Decision.DOCUMENT


def test_voided_invoice_is_skipped_when_finalization_is_the_trigger() -> None:
    invoice = stripe_invoice(
        "in_Void0000000000000000001",
        CUSTOMER,
        [invoice_line("il_1")],
        finalized=at(D, 9),
        status="void",
        voided=at(D, 15),
        number="ABC-0007",
    )

    event = only(events_for_day(stripe_day(D, invoices=(invoice,), invoice_on="finalized")))

    assert event.decision is Decision.SKIP
    assert "ABC-0007" in event.reason and "voided" in event.reason
    assert events_for_day(stripe_day(D, invoices=(invoice,))) == []  # never paid


# -- charges -----------------------------------------------------------------------------------


def test_charge_paying_an_invoice_is_skipped_naming_the_invoice() -> None:
    invoice = paid_invoice()
    charge = so.charge(
        id="ch_PaysInvoice00000000001",
        created=at(D, 11),
        amount=invoice["total"],
        currency="ron",
        customer=CUSTOMER["id"],
        payment_intent="pi_Paid1",
    )

    events = events_for_day(stripe_day(D, invoices=(invoice,), charges=(charge,)))

    by_type = {e.source_type.value: e for e in events}
    assert by_type["stripe_invoice"].decision is Decision.DOCUMENT
    skipped = by_type["stripe_charge"]
    assert skipped.decision is Decision.SKIP
    assert "in_Paid0000000000000000001" in skipped.reason


def test_charge_is_linked_to_an_older_invoice_or_through_a_charge_payment() -> None:
    older = paid_invoice(finalized=at(D - timedelta(days=9)), paid=at(D - timedelta(days=8)))
    by_charge = {
        "id": "in_ByCharge000000000000001",
        "payments": {"data": [{"payment": {"type": "charge", "charge": "ch_Direct1"}}]},
    }
    links = invoice_payment_links([older, by_charge])
    assert links == {"pi_Paid1": older["id"], "ch_Direct1": "in_ByCharge000000000000001"}
    charges = (
        so.charge(
            id="ch_Late1", created=at(D, 8), amount=100, currency="ron", payment_intent="pi_Paid1"
        ),
        so.charge(id="ch_Direct1", created=at(D, 9), amount=100, currency="ron"),
    )

    events = events_for_day(stripe_day(D, charges=charges, invoice_by_payment=links))

    late, direct = events
    assert late.decision is direct.decision is Decision.SKIP
    assert f"pays Stripe invoice {older['id']}" in late.reason
    assert "pays Stripe invoice in_ByCharge000000000000001" in direct.reason


def test_lone_charge_is_documented() -> None:
    charge = one_off_charge("ch_Lone0000000000000000001", created=at(D, 13), amount=14999)

    event = only(events_for_day(stripe_day(D, charges=(charge,))))

    assert (event.decision, event.kind, event.trigger) == (
        Decision.DOCUMENT,
        "invoice",
        "charge_succeeded",
    )
    assert event.source_key == "stripe_charge:ch_Lone0000000000000000001"
    assert event.amount == Decimal("149.99") and event.customer_id is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"status": "failed", "paid": False}, "failed"),
        ({"status": "pending"}, "pending"),
        ({"captured": False, "amount_captured": 0}, "not captured"),
    ],
)
def test_charge_that_took_no_money_is_skipped(change: dict[str, Any], words: str) -> None:
    charge = {**one_off_charge("ch_NoMoney000000000000001", created=at(D), amount=5000), **change}

    event = only(events_for_day(stripe_day(D, charges=(charge,))))

    assert event.decision is Decision.SKIP and words in event.reason


def test_partly_captured_charge_is_worth_what_was_captured() -> None:
    charge = {
        **one_off_charge("ch_Partial00000000000000001", created=at(D), amount=5000),
        "amount_captured": 3000,
    }

    assert only(events_for_day(stripe_day(D, charges=(charge,)))).amount == Decimal("30.00")


# -- refunds and credit notes ------------------------------------------------------------------


def test_refund_of_an_invoice_payment_corrects_the_invoice() -> None:
    invoice = paid_invoice(finalized=at(D - timedelta(days=5)), paid=at(D - timedelta(days=5)))
    refund = stripe_refund(
        "re_OfInvoice000000000000001",
        charge="ch_Paid1",
        amount=1000,
        created=at(D, 10),
        payment_intent="pi_Paid1",
    )

    event = only(events_for_day(stripe_day(D, invoices=(invoice,), refunds=(refund,))))

    assert (event.decision, event.kind, event.trigger) == (
        Decision.DOCUMENT,
        "credit_note",
        "refund",
    )
    assert event.corrects == f"stripe_invoice:{invoice['id']}"
    assert event.amount == Decimal("10.00")


def test_refund_of_a_lone_charge_corrects_the_charge() -> None:
    refund = stripe_refund(
        "re_OfCharge0000000000000001", charge="ch_Lone1", amount=500, created=at(D, 10)
    )

    event = only(events_for_day(stripe_day(D, refunds=(refund,))))

    assert event.decision is Decision.DOCUMENT
    assert event.corrects == "stripe_charge:ch_Lone1"


def test_refund_carried_by_a_stripe_credit_note_is_skipped_and_the_note_documented() -> None:
    invoice = paid_invoice(finalized=at(D - timedelta(days=5)), paid=at(D - timedelta(days=5)))
    refund = stripe_refund(
        "re_ByNote00000000000000001",
        charge="ch_Paid1",
        amount=35581,
        created=at(D, 10),
        payment_intent="pi_Paid1",
    )
    note = so.credit_note(
        id="cn_Refunded0000000000000001",
        created=at(D, 10),
        invoice=invoice,
        lines=[so.credit_note_line_from(invoice["lines"]["data"][0], id="cnli_1")],
        refund=refund["id"],
    )

    events = events_for_day(
        stripe_day(D, invoices=(invoice,), refunds=(refund,), credit_notes=(note,))
    )

    by_type = {e.source_type.value: e for e in events}
    assert by_type["stripe_refund"].decision is Decision.SKIP
    assert "cn_Refunded0000000000000001" in by_type["stripe_refund"].reason
    documented = by_type["stripe_credit_note"]
    assert (documented.decision, documented.kind) == (Decision.DOCUMENT, "credit_note")
    assert documented.corrects == f"stripe_invoice:{invoice['id']}"
    assert documented.amount == Decimal(note["total"]) / 100


@pytest.mark.parametrize(
    ("status", "decision"),
    [
        ("failed", Decision.SKIP),
        ("canceled", Decision.SKIP),
        ("pending", Decision.DOCUMENT),
        ("succeeded", Decision.DOCUMENT),
    ],
)
def test_refund_is_documented_unless_it_failed(status: str, decision: Decision) -> None:
    refund = stripe_refund(
        "re_Status0000000000000001", charge="ch_Lone1", amount=500, created=at(D, 10), status=status
    )

    event = only(events_for_day(stripe_day(D, refunds=(refund,))))

    assert event.decision is decision
    if decision is Decision.SKIP:
        assert status in event.reason


def test_voided_stripe_credit_note_is_skipped() -> None:
    invoice = paid_invoice(finalized=at(D - timedelta(days=5)), paid=at(D - timedelta(days=5)))
    note = so.credit_note(
        id="cn_Voided000000000000000001",
        created=at(D, 10),
        invoice=invoice,
        lines=[so.credit_note_line_from(invoice["lines"]["data"][0], id="cnli_1")],
        status="void",
    )

    event = only(events_for_day(stripe_day(D, credit_notes=(note,))))

    assert event.decision is Decision.SKIP and "voided" in event.reason


def test_credit_note_refund_links_accept_ids_and_expanded_refunds() -> None:
    notes = [
        {"id": "cn_1", "refunds": [{"refund": "re_1", "type": "refund"}]},
        {"id": "cn_2", "refunds": [{"refund": {"id": "re_2", "object": "refund"}}]},
        {"id": "cn_3", "refunds": []},
    ]

    assert credit_note_refund_links(notes) == {"re_1": "cn_1", "re_2": "cn_2"}


# -- the day's window --------------------------------------------------------------------------


def test_a_trigger_exactly_at_midnight_belongs_to_the_day_it_opens() -> None:
    start, end = window(D)
    charges = (
        one_off_charge("ch_AtStart00000000000000001", created=int(start.timestamp()), amount=1),
        one_off_charge("ch_AtEnd0000000000000000001", created=int(end.timestamp()), amount=2),
        one_off_charge("ch_BeforeEnd000000000000001", created=int(end.timestamp()) - 1, amount=3),
    )

    today = events_for_day(stripe_day(D, charges=charges))
    tomorrow = events_for_day(stripe_day(D + timedelta(days=1), charges=charges))

    assert [e.source_id for e in today] == [
        "ch_AtStart00000000000000001",
        "ch_BeforeEnd000000000000001",
    ]
    assert [e.source_id for e in tomorrow] == ["ch_AtEnd0000000000000000001"]


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2025, 3, 30), 23), (date(2025, 10, 26), 25), (date(2025, 9, 10), 24)],
)
@pytest.mark.parametrize("bounds_in", ["UTC", "Europe/Bucharest"])
def test_a_dst_day_takes_its_own_23_or_25_hours(day: date, hours: int, bounds_in: str) -> None:
    start, end = window(day)
    assert end - start == timedelta(hours=hours)
    # One charge every 30 minutes from 2 hours before the day to 2 hours after it.
    first = int(start.timestamp()) - 2 * 3600
    charges = tuple(
        one_off_charge(f"ch_Every30Min{n:014d}", created=first + n * 1800, amount=100 + n)
        for n in range(2 * (hours + 4))
    )
    zone = UTC if bounds_in == "UTC" else BUCHAREST  # as the caller's partition gives them

    events = events_for_day(
        StripeDay(start=start.astimezone(zone), end=end.astimezone(zone), charges=charges)
    )

    assert len(events) == 2 * hours
    assert {e.occurred_at.astimezone(BUCHAREST).date() for e in events} == {day}
    assert events[0].occurred_at == start and events[-1].occurred_at == end - timedelta(minutes=30)


def test_events_come_in_trigger_order() -> None:
    charges = tuple(
        one_off_charge(f"ch_Order{n:018d}", created=at(D, hour), amount=100)
        for n, hour in enumerate((15, 9, 12))
    )

    events = events_for_day(stripe_day(D, charges=charges))

    assert [e.occurred_at.astimezone(BUCHAREST).hour for e in events] == [9, 12, 15]


# -- over a seeded month -----------------------------------------------------------------------


def test_over_a_seed_money_is_documented_once() -> None:
    objects = list(seed.generate(20, end_date=D, invoices_per_day=6, charges_per_day=3))
    by_type: dict[str, dict[str, Any]] = {}
    for obj in objects:
        by_type.setdefault(obj["object"], {})[obj["id"]] = obj
    invoices, notes = by_type["invoice"].values(), by_type["credit_note"].values()
    start, _ = window(D - timedelta(days=19))
    _, end = window(D)

    events = events_for_day(
        StripeDay(
            start=start,
            end=end,
            invoices=tuple(invoices),
            charges=tuple(by_type["charge"].values()),
            refunds=tuple(by_type["refund"].values()),
            credit_notes=tuple(notes),
            invoice_by_payment=invoice_payment_links(invoices),
            credit_note_refunds=credit_note_refund_links(notes),
        )
    )

    documented = Counter((e.source_type.value, e.decision.value) for e in events)
    paid = [i for i in invoices if i["status"] == "paid"]
    assert documented[("stripe_invoice", "document")] == len(paid)
    invoice_charges = {p["payment"]["payment_intent"] for i in paid for p in i["payments"]["data"]}
    for event in events:
        assert event.reason
        if event.source_type.value == "stripe_charge":
            pays_invoice = by_type["charge"][event.source_id]["payment_intent"] in invoice_charges
            assert (event.decision is Decision.SKIP) == pays_invoice, event
        if event.source_type.value == "stripe_refund":
            in_a_note = any(r["refund"] == event.source_id for n in notes for r in n["refunds"])
            assert (event.decision is Decision.SKIP) == in_a_note, event
    # Every kind of trigger occurs, so the loop above checked something.
    assert {key for key, n in documented.items() if n} >= {
        ("stripe_charge", "document"),
        ("stripe_charge", "skip"),
        ("stripe_refund", "document"),
        ("stripe_refund", "skip"),
        ("stripe_credit_note", "document"),
    }
