"""What must be documented on a day, and why (ARCHITECTURE.md §1). Pure: Stripe objects in.

A document belongs to the day its trigger happened, in Europe/Bucharest:

* a Stripe invoice → an invoice, on the day it was paid (`INVOICE_ON=paid`, the default) or
  finalized (`INVOICE_ON=finalized`);
* a succeeded, captured charge that pays no invoice → an invoice with one line, on the day it
  was created (Stripe's `created`; a card charge succeeds within seconds);
* a Stripe credit note → a credit note, on the day it was created;
* a refund → a credit note for the refunded amount, on the day it was created, unless a Stripe
  credit note already carries it (refunding through a credit note creates both; the credit note
  is the document, so the money is credited once).

Every trigger of the day gets an event, also those that are not documented (a charge that pays an
invoice, a failed refund, ...): `decision` says which, `reason` says why, so "why has this charge
no invoice?" has an answer in the `billable_events` table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from invoicesync_dagster.efactura.money import from_minor_units
from invoicesync_dagster.efactura.numbering import SourceKind, source_key

Obj = Mapping[str, Any]

# Refunds in these states moved (or are moving) money back to the buyer. A `pending` card refund
# is Stripe's normal state for up to days; waiting for `succeeded` could push the credit note past
# the filing deadline, and Stripe reports failures as a separate state we skip.
DOCUMENTED_REFUND_STATES = frozenset({"succeeded", "pending", "requires_action"})


class Decision(StrEnum):
    DOCUMENT = "document"
    SKIP = "skip"


class BillableEvent(BaseModel):
    """One `billable_events` row: a Stripe trigger of the day and what becomes of it."""

    model_config = ConfigDict(frozen=True)

    source_key: str  # stripe_invoice:in_…, the document's id (efactura_documents.document_id)
    source_type: SourceKind
    source_id: str
    trigger: str  # invoice_paid, invoice_finalized, charge_succeeded, refund, credit_note
    occurred_at: datetime  # the trigger's moment (UTC)
    customer_id: str | None
    currency: str  # upper-case ISO 4217
    amount: Decimal  # Stripe's total of the source, in major units, positive
    kind: str  # invoice | credit_note
    corrects: str | None = None  # credit notes: source key of the document they correct
    decision: Decision
    reason: str


@dataclass(frozen=True)
class StripeDay:
    """The Stripe objects a day's events are chosen from.

    `invoices`, `charges`, `refunds`, `credit_notes`: the objects of the day's partition (created
    that day, or changed that day). `invoice_by_payment`: payment intent or charge id → invoice id
    for every known invoice payment (any day), so a charge paying an older invoice is recognised.
    `credit_note_refunds`: refund id → credit note id for every known credit note (any day).
    """

    start: datetime
    end: datetime
    invoice_on: str = "paid"
    invoices: tuple[Obj, ...] = ()
    charges: tuple[Obj, ...] = ()
    refunds: tuple[Obj, ...] = ()
    credit_notes: tuple[Obj, ...] = ()
    invoice_by_payment: Mapping[str, str] = field(default_factory=dict)
    credit_note_refunds: Mapping[str, str] = field(default_factory=dict)


def invoice_payment_links(invoices: Iterable[Obj]) -> dict[str, str]:
    """Payment intent / charge id → invoice id, from each invoice's `payments` list (the current
    API's only link between an invoice and what paid it)."""
    links: dict[str, str] = {}
    for invoice in invoices:
        payments = invoice.get("payments") or {}
        for payment in payments.get("data") or () if isinstance(payments, Mapping) else ():
            target = payment.get("payment") or {}
            for key in ("payment_intent", "charge"):
                if target.get(key):
                    links[str(target[key])] = str(invoice["id"])
    return links


def credit_note_refund_links(credit_notes: Iterable[Obj]) -> dict[str, str]:
    """Refund id → credit note id, for credit notes refunded through Stripe."""
    links: dict[str, str] = {}
    for note in credit_notes:
        for entry in note.get("refunds") or ():
            refund = entry.get("refund") if isinstance(entry, Mapping) else entry
            if isinstance(refund, Mapping):
                refund = refund.get("id")
            if refund:
                links[str(refund)] = str(note["id"])
    return links


def charge_invoice(charge: Obj, invoice_by_payment: Mapping[str, str]) -> str | None:
    """The invoice a charge pays, if any."""
    for key in (charge.get("payment_intent"), charge.get("id")):
        if key and key in invoice_by_payment:
            return invoice_by_payment[key]
    return None


def _moment(unix: int | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


def _amount(obj: Obj, field: str = "total") -> Decimal:
    currency = str(obj["currency"])
    return from_minor_units(int(obj.get(field) or 0), currency)


def events_for_day(day: StripeDay) -> list[BillableEvent]:
    """Every trigger inside [start, end), documented or not, in trigger order."""

    def within(moment: datetime | None) -> bool:
        return moment is not None and day.start <= moment < day.end

    events: list[BillableEvent] = []
    trigger = "finalized_at" if day.invoice_on == "finalized" else "paid_at"
    for invoice in day.invoices:
        moment = _moment((invoice.get("status_transitions") or {}).get(trigger))
        if within(moment):
            event = _invoice_event(invoice, day.invoice_on)
            if event is not None:
                events.append(event)
    for charge in day.charges:
        created = _moment(charge.get("created"))
        if within(created):
            events.append(_charge_event(charge, created, day.invoice_by_payment))  # type: ignore[arg-type]
    for refund in day.refunds:
        created = _moment(refund.get("created"))
        if within(created):
            events.append(_refund_event(refund, created, day))  # type: ignore[arg-type]
    for note in day.credit_notes:
        created = _moment(note.get("created"))
        if within(created):
            events.append(_credit_note_event(note, created))  # type: ignore[arg-type]
    events.sort(key=lambda e: (e.occurred_at, e.source_key))
    return events


def _base(source_type: SourceKind, obj: Obj, **fields: Any) -> dict[str, Any]:
    return {
        "source_key": source_key(source_type, str(obj["id"])),
        "source_type": source_type,
        "source_id": str(obj["id"]),
        "currency": str(obj["currency"]).upper(),
        **fields,
    }


def _invoice_event(invoice: Obj, invoice_on: str) -> BillableEvent | None:
    transitions = invoice.get("status_transitions") or {}
    status = invoice.get("status")
    if not transitions.get("finalized_at" if invoice_on == "finalized" else "paid_at"):
        return None
    base = _base(
        SourceKind.STRIPE_INVOICE,
        invoice,
        customer_id=invoice.get("customer"),
        amount=_amount(invoice),
        kind="invoice",
    )
    name = invoice.get("number") or invoice["id"]
    if invoice_on == "finalized":
        finalized = _moment(transitions.get("finalized_at"))
        if finalized is None:
            return None
        if status == "void":
            return BillableEvent(
                **base,
                trigger="invoice_finalized",
                occurred_at=finalized,
                decision=Decision.SKIP,
                reason=f"Stripe invoice {name} was voided before it was documented; nothing was "
                "sold (a voided invoice that was already filed needs a credit note instead)",
            )
        return BillableEvent(
            **base,
            trigger="invoice_finalized",
            occurred_at=finalized,
            decision=Decision.DOCUMENT,
            reason=f"Stripe invoice {name} was finalized (INVOICE_ON=finalized)",
        )
    paid = _moment(transitions.get("paid_at"))
    if paid is None or status != "paid":
        return None
    return BillableEvent(
        **base,
        trigger="invoice_paid",
        occurred_at=paid,
        decision=Decision.DOCUMENT,
        reason=f"Stripe invoice {name} was paid (INVOICE_ON=paid)",
    )


def _charge_event(
    charge: Obj, created: datetime, invoice_by_payment: Mapping[str, str]
) -> BillableEvent:
    base = _base(
        SourceKind.STRIPE_CHARGE,
        charge,
        customer_id=charge.get("customer"),
        # What was taken: a partly captured charge sells only its captured amount.
        amount=_amount(charge, "amount_captured" if charge.get("amount_captured") else "amount"),
        kind="invoice",
        trigger="charge_succeeded",
        occurred_at=created,
    )
    if charge.get("status") != "succeeded" or not charge.get("paid", True):
        return BillableEvent(
            **base,
            decision=Decision.SKIP,
            reason=f"charge {charge['id']} is {charge.get('status')}: no money was taken",
        )
    if charge.get("captured") is False:
        return BillableEvent(
            **base,
            decision=Decision.SKIP,
            reason=f"charge {charge['id']} is authorised but not captured: no money was taken "
            "yet (an authorisation may still be released)",
        )
    invoice = charge_invoice(charge, invoice_by_payment)
    if invoice is not None:
        return BillableEvent(
            **base,
            decision=Decision.SKIP,
            reason=f"charge {charge['id']} pays Stripe invoice {invoice}, which is documented "
            "itself",
        )
    return BillableEvent(
        **base,
        decision=Decision.DOCUMENT,
        reason=f"charge {charge['id']} succeeded without a Stripe invoice",
    )


def _refund_event(refund: Obj, created: datetime, day: StripeDay) -> BillableEvent:
    charge_id = refund.get("charge")
    corrects = None
    if charge_id:
        invoice = charge_invoice(
            {"id": charge_id, "payment_intent": refund.get("payment_intent")},
            day.invoice_by_payment,
        )
        corrects = (
            source_key(SourceKind.STRIPE_INVOICE, invoice)
            if invoice is not None
            else source_key(SourceKind.STRIPE_CHARGE, str(charge_id))
        )
    base = _base(
        SourceKind.STRIPE_REFUND,
        refund,
        customer_id=refund.get("customer"),
        amount=_amount(refund, "amount"),
        kind="credit_note",
        corrects=corrects,
        trigger="refund",
        occurred_at=created,
    )
    note = day.credit_note_refunds.get(str(refund["id"]))
    if note is not None:
        return BillableEvent(
            **base,
            decision=Decision.SKIP,
            reason=f"refund {refund['id']} pays out Stripe credit note {note}, which is "
            "documented itself",
        )
    if refund.get("status") not in DOCUMENTED_REFUND_STATES:
        return BillableEvent(
            **base,
            decision=Decision.SKIP,
            reason=f"refund {refund['id']} is {refund.get('status')}: no money went back",
        )
    if corrects is None:
        return BillableEvent(
            **base,
            decision=Decision.SKIP,
            reason=f"refund {refund['id']} names no charge, so there is no document to correct",
        )
    return BillableEvent(
        **base,
        decision=Decision.DOCUMENT,
        reason=f"refund {refund['id']} of charge {charge_id}",
    )


def _credit_note_event(note: Obj, created: datetime) -> BillableEvent:
    invoice = note.get("invoice")
    base = _base(
        SourceKind.STRIPE_CREDIT_NOTE,
        note,
        customer_id=note.get("customer"),
        amount=_amount(note),
        kind="credit_note",
        corrects=source_key(SourceKind.STRIPE_INVOICE, str(invoice)) if invoice else None,
        trigger="credit_note",
        occurred_at=created,
    )
    if note.get("status") == "void":
        return BillableEvent(
            **base,
            decision=Decision.SKIP,
            reason=f"Stripe credit note {note.get('number') or note['id']} was voided",
        )
    return BillableEvent(
        **base,
        decision=Decision.DOCUMENT,
        reason=f"Stripe credit note {note.get('number') or note['id']} on invoice {invoice}",
    )
