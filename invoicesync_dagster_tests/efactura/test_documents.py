"""A day's documents: statuses, numbers, references and exchange rates (efactura/documents.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from invoicesync_dagster.efactura import billable
from invoicesync_dagster.efactura.documents import (
    DocumentOutcome,
    DocumentStatus,
    StripeSources,
    build_day,
)
from invoicesync_dagster.efactura.fx import PublishedRate
from invoicesync_dagster.efactura.model import Document
from invoicesync_dagster.efactura.numbering import NumberingRequest
from invoicesync_dagster.sandbox import stripe_objects as so
from invoicesync_dagster.sandbox.offline_documents import SANDBOX_POLICY, MemoryNumbers
from invoicesync_dagster_tests.efactura.stripe_builders import (
    BUCHAREST,
    at,
    eu_business,
    invoice_line,
    one_off_charge,
    profile_of,
    ro_company,
    ro_person,
    stripe_invoice,
    stripe_refund,
)

Obj = dict[str, Any]
D = date(2025, 9, 10)  # a Wednesday

GOOD_COMPANY = ro_company()
PERSON = ro_person()
NO_CUI_COMPANY = so.customer(
    id="cus_NoCuiCompany",
    created=0,
    name="Fermele Bărăganului S.R.L.",
    email="facturare@fermele.example",
    address=so.address(line1="Str. Gării 1", city="Slobozia", state="Ialomița", country="RO"),
)
INVALID_CUI_COMPANY = ro_company("cus_BadCui0000001", cui="RO8486153", name="Cifra Greșită SRL")


class RecordingNumbers(MemoryNumbers):
    """MemoryNumbers that also keeps every request it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def __call__(self, requests: Sequence[NumberingRequest]) -> dict[str, str]:
        self.asked.extend(r.source_key for r in requests)
        return super().__call__(requests)


def paid(id: str, customer: Obj, hour: int, *, lines: Sequence[Obj] = (), pi: str = "") -> Obj:
    return stripe_invoice(
        id,
        customer,
        lines or [invoice_line(f"il_{id[3:12]}")],
        finalized=at(D, hour),
        paid=at(D, hour, 5),
        payment_intent=pi or None,
    )


def day_objects() -> dict[str, list[Obj]]:
    """A day with every outcome: ready, held (no CUI), blocked (invalid CUI), credit notes."""
    invoices = [
        paid("in_Good000000000000000001", GOOD_COMPANY, 9, pi="pi_Good1"),
        paid("in_NoCui00000000000000001", NO_CUI_COMPANY, 10, pi="pi_NoCui1"),
        paid("in_BadCui0000000000000001", INVALID_CUI_COMPANY, 11),
        paid("in_Person00000000000000001", PERSON, 12),
    ]
    charges = [
        so.charge(
            id="ch_Good1",
            created=at(D, 9, 5),
            amount=invoices[0]["total"],
            currency="ron",
            customer=GOOD_COMPANY["id"],
            payment_intent="pi_Good1",
        ),
        one_off_charge("ch_Lone0000000000000000001", created=at(D, 13), amount=14999),
    ]
    refunds = [
        stripe_refund(
            "re_SameDay000000000000001",
            charge="ch_Good1",
            amount=5000,
            created=at(D, 15),
            payment_intent="pi_Good1",
        ),
    ]
    held_invoice = invoices[1]
    notes = [
        so.credit_note(
            id="cn_OnHeld0000000000000001",
            created=at(D, 16),
            invoice=held_invoice,
            lines=[so.credit_note_line_from(held_invoice["lines"]["data"][0], id="cnli_1")],
        ),
    ]
    return {"invoices": invoices, "charges": charges, "refunds": refunds, "credit_notes": notes}


def events_of(day: date, objects: Mapping[str, Sequence[Obj]]) -> list[billable.BillableEvent]:
    start = datetime.combine(day, time(), BUCHAREST)
    return billable.events_for_day(
        billable.StripeDay(
            start=start,
            end=datetime.combine(day + timedelta(days=1), time(), BUCHAREST),
            invoices=tuple(objects.get("invoices", ())),
            charges=tuple(objects.get("charges", ())),
            refunds=tuple(objects.get("refunds", ())),
            credit_notes=tuple(objects.get("credit_notes", ())),
            invoice_by_payment=billable.invoice_payment_links(objects.get("invoices", ())),
            credit_note_refunds=billable.credit_note_refund_links(objects.get("credit_notes", ())),
        )
    )


def sources_of(
    objects: Mapping[str, Sequence[Obj]],
    customers: Sequence[Obj] = (GOOD_COMPANY, PERSON, NO_CUI_COMPANY, INVALID_CUI_COMPANY),
    **more: Any,
) -> StripeSources:
    def by_id(kind: str) -> dict[str, Obj]:
        return {obj["id"]: obj for obj in objects.get(kind, ())}

    return StripeSources(
        invoices=by_id("invoices"),
        charges=by_id("charges"),
        refunds=by_id("refunds"),
        credit_notes=by_id("credit_notes"),
        profiles={c["id"]: profile_of(c) for c in customers},
        **more,
    )


def run(
    objects: Mapping[str, Sequence[Obj]],
    numbers: MemoryNumbers | None = None,
    day: date = D,
    **sources: Any,
) -> dict[str, DocumentOutcome]:
    outcomes = build_day(
        events_of(day, objects),
        sources_of(objects, **sources),
        SANDBOX_POLICY,
        numbers if numbers is not None else MemoryNumbers(),
    )
    return {o.event.source_id: o for o in outcomes}


def numbers_of(outcomes: Mapping[str, DocumentOutcome]) -> dict[str, str]:
    return {
        key: o.document.number
        for key, o in outcomes.items()
        if o.status is DocumentStatus.READY and o.document is not None
    }


# -- statuses and numbers ----------------------------------------------------------------------


def test_each_event_ends_ready_held_or_blocked() -> None:
    outcomes = run(day_objects())

    assert {key: o.status for key, o in outcomes.items()} == {
        "in_Good000000000000000001": DocumentStatus.READY,
        "in_NoCui00000000000000001": DocumentStatus.HELD,
        "in_BadCui0000000000000001": DocumentStatus.BLOCKED,
        "in_Person00000000000000001": DocumentStatus.READY,
        "ch_Lone0000000000000000001": DocumentStatus.READY,
        "re_SameDay000000000000001": DocumentStatus.READY,
        "cn_OnHeld0000000000000001": DocumentStatus.HELD,
    }  # the charge paying in_Good… is skipped: no outcome
    (held_error,) = outcomes["in_NoCui00000000000000001"].errors
    assert "cus_NoCuiCompany" in held_error and "mappings CSV" in held_error
    (blocked_error,) = outcomes["in_BadCui0000000000000001"].errors
    assert "8486153" in blocked_error and "check digit" in blocked_error
    for outcome in outcomes.values():
        assert (outcome.status is DocumentStatus.READY) == (outcome.errors == ())
        assert outcome.issue_date == D


def test_only_ready_documents_get_numbers_consecutive_invoices_first() -> None:
    numbers = RecordingNumbers()

    outcomes = run(day_objects(), numbers)

    assert numbers_of(outcomes) == {
        "in_Good000000000000000001": "INV-2025-000001",
        "in_Person00000000000000001": "INV-2025-000002",
        "ch_Lone0000000000000000001": "INV-2025-000003",
        "re_SameDay000000000000001": "INV-2025-000004",
    }
    assert sorted(numbers.asked) == sorted(
        o.source_key for o in outcomes.values() if o.status is DocumentStatus.READY
    )
    for outcome in outcomes.values():
        if outcome.status is not DocumentStatus.READY:
            assert outcome.document is None or outcome.document.number.endswith("-0")
    xml = outcomes["in_Good000000000000000001"].xml
    assert xml is not None and b"<cbc:ID>INV-2025-000001</cbc:ID>" in xml


def test_a_document_failing_a_local_rule_is_held_without_a_number_and_leaves_no_gap() -> None:
    objects = day_objects()
    broken = invoice_line("il_Broken1", unit=10000, quantity=3)
    broken["amount"] = 29000  # Stripe's amount ≠ quantity × price: IS-LINE-NET
    broken["taxes"][0].update(taxable_amount=29000, amount=6090)
    objects["invoices"].insert(
        1, paid("in_Broken0000000000000001", GOOD_COMPANY, 9, lines=[broken])
    )
    numbers = RecordingNumbers()

    outcomes = run(objects, numbers)

    failing = outcomes["in_Broken0000000000000001"]
    assert failing.status is DocumentStatus.HELD
    assert any(
        "IS-LINE-NET" in error and "in_Broken0000000000000001" in error for error in failing.errors
    )
    assert failing.event.source_key not in numbers.asked
    assert sorted(numbers_of(outcomes).values()) == [f"INV-2025-00000{n}" for n in range(1, 5)]


def test_rerunning_a_day_gives_the_same_numbers_and_bytes() -> None:
    numbers = MemoryNumbers()
    first = run(day_objects(), numbers)

    again = run(day_objects(), numbers)  # same ledger
    fresh = run(day_objects(), MemoryNumbers())  # a new ledger, the same order

    assert numbers_of(again) == numbers_of(first) == numbers_of(fresh)
    assert len(numbers.numbers) == 4  # nothing new was allocated by the re-run
    for key, outcome in first.items():
        assert again[key].xml == outcome.xml


def test_rerun_after_a_fix_numbers_the_fixed_document_next_and_reuses_nothing() -> None:
    numbers = MemoryNumbers()
    first = numbers_of(run(day_objects(), numbers))
    fixed = so.customer(
        id=NO_CUI_COMPANY["id"],
        created=0,
        name=NO_CUI_COMPANY["name"],
        email=NO_CUI_COMPANY["email"],
        address=NO_CUI_COMPANY["address"],
        metadata={"cui": "12345674"},  # the accountant added the CUI
    )

    again = run(
        day_objects(), numbers, customers=(GOOD_COMPANY, PERSON, fixed, INVALID_CUI_COMPANY)
    )

    second = numbers_of(again)
    assert {key: second[key] for key in first} == first
    assert second["in_NoCui00000000000000001"] == "INV-2025-000005"
    assert second["cn_OnHeld0000000000000001"] == "INV-2025-000006"
    note = again["cn_OnHeld0000000000000001"].document
    assert note is not None
    assert [p.number for p in note.preceding_invoices] == ["INV-2025-000005"]


# -- credit notes ------------------------------------------------------------------------------


def test_credit_note_on_a_same_day_invoice_names_its_final_number() -> None:
    outcomes = run(day_objects())

    note = outcomes["re_SameDay000000000000001"].document
    assert note is not None and note.type_code == "381"
    assert [(p.number, p.issue_date) for p in note.preceding_invoices] == [("INV-2025-000001", D)]
    assert note.totals.tax_inclusive_total + note.totals.rounding_amount == Decimal("50.00")
    xml = outcomes["re_SameDay000000000000001"].xml
    assert xml is not None and b"<cbc:ID>INV-2025-000001</cbc:ID>" in xml


def test_credit_note_whose_original_is_held_is_held_naming_the_original() -> None:
    outcome = run(day_objects())["cn_OnHeld0000000000000001"]

    assert outcome.status is DocumentStatus.HELD and outcome.document is None
    (error,) = outcome.errors
    assert "stripe_invoice:in_NoCui00000000000000001" in error


def test_credit_note_on_an_invoice_held_by_a_local_rule_is_held_too() -> None:
    """The invoice was built (it has a provisional number) but failed a rule: a credit note on
    it must not be numbered and name that provisional number."""
    broken = invoice_line("il_Broken1", unit=10000, quantity=3)
    broken["amount"] = 29000  # IS-LINE-NET
    broken["taxes"][0].update(taxable_amount=29000, amount=6090)
    objects: dict[str, list[Obj]] = {
        "invoices": [
            paid("in_Broken0000000000000001", GOOD_COMPANY, 9, lines=[broken], pi="pi_Broken1")
        ],
        "refunds": [
            stripe_refund(
                "re_OfBroken000000000000001",
                charge="ch_Broken1",
                amount=1000,
                created=at(D, 15),
                payment_intent="pi_Broken1",
            )
        ],
    }

    outcomes = run(objects)

    assert outcomes["in_Broken0000000000000001"].status is DocumentStatus.HELD
    note = outcomes["re_OfBroken000000000000001"]
    assert note.status is DocumentStatus.HELD, (
        "documents.build_day: a credit note on a same-day invoice held by a local rule was "
        f"numbered and references {note.document and note.document.preceding_invoices}; "
        "`today` must only hold READY documents"
    )
    assert any("stripe_invoice:in_Broken0000000000000001" in error for error in note.errors)


def test_credit_note_on_an_earlier_days_document() -> None:
    earlier = run({"invoices": [paid("in_Good000000000000000001", GOOD_COMPANY, 9, pi="pi_Good1")]})
    original = earlier["in_Good000000000000000001"].document
    assert original is not None
    later = D + timedelta(days=3)
    refund = stripe_refund(
        "re_Later0000000000000001",
        charge="ch_Good1",
        amount=2500,
        created=at(later, 10),
        payment_intent="pi_Good1",
    )
    objects = {
        "invoices": [paid("in_Good000000000000000001", GOOD_COMPANY, 9, pi="pi_Good1")],
        "refunds": [refund],
    }
    preceding: dict[str, Document] = {"stripe_invoice:in_Good000000000000000001": original}

    outcome = run(objects, day=later, preceding=preceding)["re_Later0000000000000001"]

    assert outcome.status is DocumentStatus.READY and outcome.document is not None
    assert outcome.issue_date == later
    assert [(p.number, p.issue_date) for p in outcome.document.preceding_invoices] == [
        ("INV-2025-000001", D)
    ]


# -- buyers and exchange rates -----------------------------------------------------------------


def test_a_customer_without_a_profile_is_held_naming_it() -> None:
    outcomes = run({"invoices": [paid("in_Good000000000000000001", GOOD_COMPANY, 9)]}, customers=())

    (outcome,) = outcomes.values()
    assert outcome.status is DocumentStatus.HELD
    assert GOOD_COMPANY["id"] in outcome.errors[0] and "customer_tax_profiles" in outcome.errors[0]


def test_a_charge_from_an_eu_consumer_without_customer_is_held() -> None:
    charge = one_off_charge(
        "ch_EuConsumer00000000000001",
        created=at(D, 14),
        amount=4999,
        address=so.address(line1="Hauptstraße 1", city="Berlin", country="DE"),
    )
    rates = {date(2025, 9, 9): {"EUR": PublishedRate(Decimal("5.0785"))}}

    (outcome,) = run({"charges": [charge]}, customers=(), fx_rates=rates).values()

    assert outcome.status is DocumentStatus.HELD and outcome.document is None
    assert "ch_EuConsumer00000000000001" in outcome.errors[0] and "OSS" in outcome.errors[0]


def test_foreign_currency_uses_the_last_bnr_rate_before_the_issue_day() -> None:
    monday = date(2025, 9, 15)
    customer = ro_company("cus_RoEur00000001")
    line = invoice_line("il_Eur1", currency="eur", unit=4762, percent=21)
    invoice = stripe_invoice(
        "in_Eur00000000000000000001",
        customer,
        [line],
        finalized=at(monday, 10),
        paid=at(monday, 10, 5),
    )
    rates = {
        date(2025, 9, 12): {"EUR": PublishedRate(Decimal("5.0785"))},  # Friday
        monday: {"EUR": PublishedRate(Decimal("5.1111"))},  # published after 13:00: not used
    }

    outcomes = run({"invoices": [invoice]}, day=monday, customers=(customer,), fx_rates=rates)
    without = run({"invoices": [invoice]}, day=monday, customers=(customer,))

    outcome = outcomes["in_Eur00000000000000000001"]
    assert outcome.status is DocumentStatus.READY and outcome.document is not None
    assert outcome.fx_rate_date == date(2025, 9, 12)
    assert outcome.document.tax_exchange_rate == Decimal("5.0785")
    assert outcome.document.tax_currency_vat_total == Decimal("50.79")  # 10.00 × 5.0785
    (missing,) = without.values()
    assert missing.status is DocumentStatus.HELD and "fx_rates" in missing.errors[0]


def test_reverse_charge_credit_note_keeps_the_originals_exchange_rate() -> None:
    customer = eu_business()
    line = invoice_line(
        "il_Ae1", currency="eur", unit=5990, percent=0, taxability_reason="reverse_charge"
    )
    invoice = stripe_invoice(
        "in_Ae000000000000000000001",
        customer,
        [line],
        finalized=at(D, 10),
        paid=at(D, 10, 5),
        payment_intent="pi_Ae1",
    )
    refund = stripe_refund(
        "re_Ae000000000000000000001",
        charge="ch_Ae1",
        amount=1000,
        created=at(D, 18),
        currency="eur",
        payment_intent="pi_Ae1",
    )
    rates = {date(2025, 9, 9): {"EUR": PublishedRate(Decimal("5.0785"))}}

    outcomes = run(
        {"invoices": [invoice], "refunds": [refund]}, customers=(customer,), fx_rates=rates
    )

    note = outcomes["re_Ae000000000000000000001"].document
    assert note is not None
    assert note.tax_exchange_rate == Decimal("5.0785") and note.tax_currency == "RON"
    assert [(s.category.value, s.exemption_code) for s in note.tax_subtotals] == [
        ("AE", "VATEX-EU-AE")
    ]
