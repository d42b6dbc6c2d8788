"""A day's documents: billable events → mapped, built, checked, numbered documents. Pure: the
caller passes the Stripe objects, buyer profiles, exchange rates and earlier documents in, and an
`allocate` function that hands out numbers (the DuckDB ledger in the asset, a dict in tests).

Order matters for numbers and references: invoices first (numbered in trigger order), then the
credit notes, which may correct an invoice of the same day and must name its final number.

Each event ends in one status:
* `ready`: built, passes every local rule (warnings allowed), numbered, XML can be written;
* `held`: it cannot be filed as it stands (a mapping error, a Stripe total it does not tie to, a
  local rule broken, no exchange rate, the document it corrects missing); it has no number,
  so it leaves no gap, and `errors` says what to fix; a re-run after the fix numbers it;
* `blocked`: the buyer is blocked for submission (invalid CUI, see customer_tax_profiles).
A number belongs to its source forever: the allocator hands a source that was numbered once the
same number again on every re-run (and the asset shows it on the row even while held).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from invoicesync_dagster.efactura import from_stripe, rules, ubl
from invoicesync_dagster.efactura.billable import BillableEvent, Decision
from invoicesync_dagster.efactura.customers import BuyerProfile
from invoicesync_dagster.efactura.fx import FxRateMissing, PublishedRate, rate_for
from invoicesync_dagster.efactura.model import BuildError, Document, build_document
from invoicesync_dagster.efactura.numbering import NumberingRequest, SourceKind

Obj = Mapping[str, Any]
# Source keys → document numbers (BT-1), for the requests given; see `allocate` in the module doc.
Allocator = Callable[[Sequence[NumberingRequest]], Mapping[str, str]]


class DocumentStatus(StrEnum):
    READY = "ready"
    HELD = "held"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class StripeSources:
    """Everything the day's events refer to, by Stripe id (plain containers: the objects are
    Stripe's JSON as stored, not copied or validated again)."""

    invoices: Mapping[str, Obj] = field(default_factory=dict)
    invoice_lines: Mapping[str, Sequence[Obj]] = field(default_factory=dict)  # complete lines
    charges: Mapping[str, Obj] = field(default_factory=dict)
    refunds: Mapping[str, Obj] = field(default_factory=dict)
    credit_notes: Mapping[str, Obj] = field(default_factory=dict)
    profiles: Mapping[str, BuyerProfile] = field(default_factory=dict)  # by customer id
    fx_rates: Mapping[date, Mapping[str, PublishedRate]] = field(default_factory=dict)
    # source key → numbered document of an earlier day, for the credit notes that correct it
    preceding: Mapping[str, Document] = field(default_factory=dict)
    # customer id → buyer, filled as the documents are built (one Party per customer)
    buyers: dict[str, from_stripe.Buyer] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DocumentOutcome:
    event: BillableEvent
    issue_date: date
    status: DocumentStatus
    document: Document | None = None  # numbered when ready
    xml: bytes | None = None  # the UBL document, when ready
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    fx_rate_date: date | None = None

    @property
    def source_key(self) -> str:
        return self.event.source_key


def provisional_number(series: str, issue_date: date) -> str:
    """BT-1 while the local rules run; replaced by the allocated number before the XML exists."""
    return f"{series}-{issue_date.year}-0"


def build_day(
    events: Iterable[BillableEvent],
    sources: StripeSources,
    policy: from_stripe.DocumentPolicy,
    allocate: Allocator,
) -> list[DocumentOutcome]:
    """Outcomes of the events to document, invoices first, each in trigger order."""
    with _collector_paused():
        return _build_day(list(events), sources, policy, allocate)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Building allocates a great many small objects and leaves no garbage cycles behind (the
    models and decimals are plain trees), so Python's cyclic collector would only rescan the
    day's inputs and results again and again: measured, 12-17 % of the build time. It is off for
    the build and back on (as it was) after; reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build_day(
    events: list[BillableEvent],
    sources: StripeSources,
    policy: from_stripe.DocumentPolicy,
    allocate: Allocator,
) -> list[DocumentOutcome]:
    chosen = [e for e in events if e.decision is Decision.DOCUMENT]
    invoices = [e for e in chosen if e.kind == "invoice"]
    credit_notes = [e for e in chosen if e.kind == "credit_note"]
    outcomes = _numbered([_build(e, sources, policy, {}) for e in invoices], policy, allocate)
    # Only numbered documents can be corrected: a held invoice still carries its provisional number.
    today = {
        o.source_key: o.document
        for o in outcomes
        if o.status is DocumentStatus.READY and o.document is not None
    }
    notes = [_build(e, sources, policy, today) for e in credit_notes]
    return outcomes + _numbered(notes, policy, allocate)


def _numbered(
    outcomes: list[DocumentOutcome], policy: from_stripe.DocumentPolicy, allocate: Allocator
) -> list[DocumentOutcome]:
    requests = [
        NumberingRequest(o.source_key, policy.series, o.event.occurred_at)
        for o in outcomes
        if o.status is DocumentStatus.READY
    ]
    numbers = allocate(requests) if requests else {}
    result = []
    for outcome in outcomes:
        number = numbers.get(outcome.source_key)
        if outcome.status is DocumentStatus.READY and outcome.document is not None and number:
            document = outcome.document.model_copy(update={"number": number})
            outcome = replace(outcome, document=document, xml=ubl.xml_bytes(document))
        elif outcome.status is DocumentStatus.READY:
            outcome = replace(
                outcome, status=DocumentStatus.HELD, errors=("no number was allocated",)
            )
        result.append(outcome)
    return result


def _build(
    event: BillableEvent,
    sources: StripeSources,
    policy: from_stripe.DocumentPolicy,
    today: Mapping[str, Document],
) -> DocumentOutcome:
    issue_date = from_stripe.bucharest_date(event.occurred_at)
    base: dict[str, Any] = {"event": event, "issue_date": issue_date}
    number = provisional_number(policy.series, issue_date)
    fx_rate_date = None
    try:
        if event.kind == "credit_note":
            preceding = _preceding(event, sources, today)
            mapped = _map_credit_note(event, sources, preceding, number, issue_date)
        else:
            buyer = _buyer(event, sources)
            if buyer.hold_reason and buyer.customer_id is not None:
                profile = sources.profiles.get(buyer.customer_id)
                if profile is not None and profile.submission_blocked:
                    return DocumentOutcome(
                        **base, status=DocumentStatus.BLOCKED, errors=(buyer.hold_reason,)
                    )
            fx_rate, fx_rate_date = _fx(event, issue_date, sources)
            mapped = _map_invoice(event, sources, buyer, policy, number, issue_date, fx_rate)
        document = build_document(mapped.draft, mapped.expected, source=event.source_key)
    except (from_stripe.MappingError, BuildError, FxRateMissing) as error:
        return DocumentOutcome(**base, status=DocumentStatus.HELD, errors=(str(error),))
    findings = rules.check(document, source=event.source_key)
    errors = tuple(str(f) for f in findings if f.severity is rules.Severity.ERROR)
    warnings = tuple(str(f) for f in findings if f.severity is rules.Severity.WARNING)
    adjustments = tuple(f"{a.field}: {a.amount} ({a.reason})" for a in document.adjustments)
    return DocumentOutcome(
        **base,
        status=DocumentStatus.HELD if errors else DocumentStatus.READY,
        document=document,
        errors=errors,
        warnings=warnings,
        notes=mapped.notes + adjustments,
        fx_rate_date=fx_rate_date,
    )


def _buyer(event: BillableEvent, sources: StripeSources) -> from_stripe.Buyer:
    if event.customer_id:
        profile = sources.profiles.get(event.customer_id)
        if profile is None:
            raise from_stripe.MappingError(
                f"{event.source_key}: customer {event.customer_id} has no buyer profile: "
                f"materialize customer_tax_profiles for {event.occurred_at.date()} first"
            )
        buyer = sources.buyers.get(event.customer_id)
        if buyer is None:
            buyer = sources.buyers[event.customer_id] = from_stripe.buyer_from_profile(profile)
        return buyer
    if event.source_type is SourceKind.STRIPE_CHARGE:
        return from_stripe.buyer_from_billing(_source(sources.charges, event))
    raise from_stripe.MappingError(
        f"{event.source_key} has no customer: Stripe invoices always have one; re-sync it"
    )


def _fx(
    event: BillableEvent, issue_date: date, sources: StripeSources
) -> tuple[Decimal | None, date | None]:
    if event.currency == "RON":
        return None, None
    fx = rate_for(issue_date, sources.fx_rates, event.currency)
    return fx.ron_per_unit, fx.rate_date


def _source(table: Mapping[str, Obj], event: BillableEvent) -> Obj:
    found = table.get(event.source_id)
    if found is None:
        raise from_stripe.MappingError(
            f"{event.source_key} is not in DuckDB: re-materialize the Stripe assets for its day"
        )
    return found


def _map_invoice(
    event: BillableEvent,
    sources: StripeSources,
    buyer: from_stripe.Buyer,
    policy: from_stripe.DocumentPolicy,
    number: str,
    issue_date: date,
    fx_rate: Decimal | None,
) -> from_stripe.Mapped:
    common = {"number": number, "issue_date": issue_date, "fx_rate": fx_rate}
    if event.source_type is SourceKind.STRIPE_CHARGE:
        return from_stripe.charge_document(_source(sources.charges, event), buyer, policy, **common)
    invoice = _source(sources.invoices, event)
    lines = sources.invoice_lines.get(event.source_id) or (invoice.get("lines") or {}).get(
        "data", ()
    )
    return from_stripe.invoice_document(invoice, lines, buyer, policy, **common)


def _preceding(
    event: BillableEvent, sources: StripeSources, today: Mapping[str, Document]
) -> Document:
    key = event.corrects
    found = today.get(key) if key else None
    if found is None and key:
        found = sources.preceding.get(key)
    if found is None:
        raise from_stripe.MappingError(
            f"{event.source_key} corrects {key or 'an unknown document'}, which has no numbered "
            "document yet (its day was not built, or it is held): build and fix that document "
            "first, then re-materialize this day"
        )
    return found


def _map_credit_note(
    event: BillableEvent,
    sources: StripeSources,
    preceding: Document,
    number: str,
    issue_date: date,
) -> from_stripe.Mapped:
    if event.source_type is SourceKind.STRIPE_REFUND:
        refund = _source(sources.refunds, event)
        return from_stripe.refund_document(refund, preceding, number=number, issue_date=issue_date)
    note = _source(sources.credit_notes, event)
    return from_stripe.credit_note_document(note, preceding, number=number, issue_date=issue_date)
