"""Seeded Stripe objects → documents, in memory: the domain core alone, with no HTTP and no DuckDB.

What `benchmarks/documents.py` times and what the validator run over a long seed checks. Buyer
profiles come from the customers alone (no registry), exchange rates from the BNR fake's
deterministic rates, numbers from a dict; otherwise it is the pipeline's own code: billable
events, `documents.build_day` day by day, and the XML writer.
"""

from __future__ import annotations

import gc
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from invoicesync_dagster.efactura import billable, documents
from invoicesync_dagster.efactura.customers import StripeCustomer, merge_profile
from invoicesync_dagster.efactura.from_stripe import DocumentPolicy, bucharest_date
from invoicesync_dagster.efactura.fx import MAX_RATE_AGE_DAYS, PublishedRate
from invoicesync_dagster.efactura.model import Address, Party
from invoicesync_dagster.efactura.numbering import (
    NumberingRequest,
    format_document_number,
    issue_year,
)
from invoicesync_dagster.sandbox.bnr_fake import banking_days, rates_on

Obj = Mapping[str, Any]

# The demo company of sandbox.dotenv.
SANDBOX_POLICY = DocumentPolicy(
    seller=Party(
        name="Exemplu Software S.R.L.",
        vat_id="RO4221306",
        trade_register_number="J40/1234/2020",
        address=Address(
            street="Strada Exemplului 10",
            city="SECTOR1",
            postal_code="010011",
            county="RO-B",
            country="RO",
        ),
    ),
    series="INV",
    iban="RO49AAAA1B31007593840000",
)


class MemoryNumbers:
    """`documents.Allocator` over a dict: consecutive per (series, year), stable per source."""

    def __init__(self) -> None:
        self.numbers: dict[str, str] = {}
        self._counters: dict[tuple[str, int], itertools.count[int]] = {}

    def __call__(self, requests: Sequence[NumberingRequest]) -> dict[str, str]:
        for request in sorted(requests, key=lambda r: (r.issued_at, r.source_key)):
            if request.source_key not in self.numbers:
                year = issue_year(request.issued_at)
                counter = self._counters.setdefault((request.series, year), itertools.count(1))
                number = format_document_number(request.series, year, next(counter))
                self.numbers[request.source_key] = number
        return {r.source_key: self.numbers[r.source_key] for r in requests}


def sandbox_fx_rates(first: date, last: date) -> dict[date, dict[str, PublishedRate]]:
    """The BNR fake's rates for every banking day that documents issued first..last may use."""
    start = first - timedelta(days=MAX_RATE_AGE_DAYS)
    return {day: rates_on(day) for day in banking_days(start, last)}


def build_documents(
    objects: Iterable[Obj],
    policy: DocumentPolicy = SANDBOX_POLICY,
    *,
    invoice_on: str = "paid",
) -> Iterator[documents.DocumentOutcome]:
    """Every document the objects call for, day by day (numbered in memory)."""
    # The asset builds one day per run; here every day shares one process and one set of inputs,
    # so those are frozen once: the collector need not rescan them at each day's end.
    gc.freeze()
    try:
        yield from _build(objects, policy, invoice_on)
    finally:
        gc.unfreeze()


def _build(
    objects: Iterable[Obj], policy: DocumentPolicy, invoice_on: str
) -> Iterator[documents.DocumentOutcome]:
    by_type: dict[str, dict[str, Obj]] = defaultdict(dict)
    for obj in objects:
        by_type[obj["object"]][obj["id"]] = obj  # the last state of each object wins
    invoices, charges = by_type["invoice"], by_type["charge"]
    refunds, notes = by_type["refund"], by_type["credit_note"]
    everything = [*invoices.values(), *charges.values(), *refunds.values(), *notes.values()]
    if not everything:
        return
    moments = [int(o["created"]) for o in everything]
    window = billable.StripeDay(
        start=datetime.fromtimestamp(min(moments), UTC),
        end=datetime.fromtimestamp(max(moments) + 40 * 86_400, UTC),
        invoice_on=invoice_on,
        invoices=tuple(invoices.values()),
        charges=tuple(charges.values()),
        refunds=tuple(refunds.values()),
        credit_notes=tuple(notes.values()),
        invoice_by_payment=billable.invoice_payment_links(invoices.values()),
        credit_note_refunds=billable.credit_note_refund_links(notes.values()),
    )
    by_day: dict[date, list[billable.BillableEvent]] = defaultdict(list)
    for event in billable.events_for_day(window):
        by_day[bucharest_date(event.occurred_at)].append(event)
    if not by_day:
        return
    profiles = {
        customer_id: merge_profile(StripeCustomer.from_stripe(customer))
        for customer_id, customer in by_type["customer"].items()
    }
    fx_rates = sandbox_fx_rates(min(by_day), max(by_day))
    preceding: dict[str, Any] = {}
    numbers = MemoryNumbers()
    for day in sorted(by_day):
        sources = documents.StripeSources(
            invoices=invoices,
            charges=charges,
            refunds=refunds,
            credit_notes=notes,
            profiles=profiles,
            fx_rates=fx_rates,
            preceding=preceding,
        )
        for outcome in documents.build_day(by_day[day], sources, policy, numbers):
            if outcome.status is documents.DocumentStatus.READY:
                preceding[outcome.source_key] = outcome.document
            yield outcome
