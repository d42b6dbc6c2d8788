from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from invoicesync_dagster.efactura.model import (
    Address,
    BuildError,
    Document,
    DocumentAllowance,
    ExpectedTotals,
    InvoiceLine,
    LineAllowance,
    ReconciliationError,
    bucharest_sector,
    build_document,
    split_item_name,
)
from invoicesync_dagster.efactura.money import round_money
from invoicesync_dagster.efactura.rules import check
from invoicesync_dagster.efactura.ubl import xml_bytes
from invoicesync_dagster.efactura.vat import VatCategory
from invoicesync_dagster_tests.efactura import samples
from invoicesync_dagster_tests.efactura.samples import LONG_PRODUCT_NAME, draft, line

D = Decimal


# -- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("city", "sector"),
    [
        ("Sector 3", "SECTOR3"),
        ("sectorul 6", "SECTOR6"),
        ("București, Sector 1", "SECTOR1"),
        ("Sect. 2", "SECTOR2"),
        ("SECTOR4", "SECTOR4"),
        ("București", None),
        ("Sector 7", None),
    ],
)
def test_bucharest_sector(city: str, sector: str | None) -> None:
    assert bucharest_sector(city) == sector


def test_address_writes_romanian_codes() -> None:
    address = Address(street="Calea Victoriei 1", city="sectorul 5", county="ro-b", country="ro")
    assert (address.country, address.county, address.city) == ("RO", "RO-B", "SECTOR5")
    # Outside Bucharest and abroad the city stays as written.
    assert Address(street="x", city="Sector 5", county="RO-IF", country="RO").city == "Sector 5"
    assert Address(street="x", city="Paris", county="Île-de-France", country="fr").county == (
        "Île-de-France"
    )


# -- lines --------------------------------------------------------------------------------------


def test_line_net_defaults_to_quantity_times_price_minus_allowances() -> None:
    item = line(
        1,
        "x",
        "10.005",
        quantity="3",
        allowances=(LineAllowance(amount=D("1.00"), reason="promo"),),
    )
    assert item.net_amount == D("29.02")  # round(30.015) = 30.02, minus 1.00
    explicit = line(2, "y", "3.333333", quantity="3", net_amount=D("10.00"))
    assert explicit.net_amount == D("10.00")


def test_amounts_refuse_floats() -> None:
    with pytest.raises(ValidationError, match="never a float"):
        InvoiceLine(id="1", name="x", quantity=1, unit_price=0.1, vat_category="S", vat_rate=21)


def test_split_item_name_keeps_everything() -> None:
    name, description = split_item_name(LONG_PRODUCT_NAME, "Facturat anual")
    assert len(name) <= 100 and not name.endswith(" ")
    assert description is not None
    assert f"{name} {description}" == f"{LONG_PRODUCT_NAME} | Facturat anual"
    assert split_item_name("Scurt", "desc") == ("Scurt", "desc")


def test_split_item_name_without_spaces_and_overlong_descriptions() -> None:
    name, description = split_item_name("x" * 150)
    assert (name, description) == ("x" * 100, "x" * 50)
    name, description = split_item_name("y " * 200)
    assert len(name) <= 100
    assert description is not None and len(description) == 200 and description.endswith("…")


# -- building -----------------------------------------------------------------------------------


def test_breakdown_and_totals_from_lines() -> None:
    doc = build_document(
        draft(
            lines=(
                line(1, "A", "10.00", quantity="3", rate="21"),
                line(2, "B", "0.99", quantity="7", rate="11"),
                line(3, "C", "4.55", rate="21"),
            ),
            allowances=(
                DocumentAllowance(
                    amount=D("2.50"), reason="Cupon", vat_category="S", vat_rate=D("21")
                ),
            ),
        )
    )
    s21, s11 = doc.tax_subtotals
    assert (s21.rate, s21.taxable_amount, s21.tax_amount) == (D(21), D("32.05"), D("6.73"))
    assert (s11.rate, s11.taxable_amount, s11.tax_amount) == (D(11), D("6.93"), D("0.76"))
    t = doc.totals
    assert (t.line_total, t.allowance_total, t.tax_exclusive_total) == (
        D("41.48"),
        D("2.50"),
        D("38.98"),
    )
    assert (t.vat_total, t.tax_inclusive_total, t.payable_amount) == (
        D("7.49"),
        D("46.47"),
        D("46.47"),
    )
    assert doc.adjustments == ()
    assert check(doc) == []


def test_vat_is_rounded_per_category_not_per_line() -> None:
    # Three lines of 0.33 at 21 %: per line 0.0693 → 0.07 each (0.21); per category
    # 0.99 × 21 % = 0.2079 → 0.21. EN 16931 computes per category.
    doc = build_document(draft(lines=tuple(line(n, "x", "0.35") for n in (1, 2, 3))))
    assert doc.tax_subtotals[0].tax_amount == round_money(D("1.05") * 21 / 100) == D("0.22")


def test_same_rate_written_differently_is_one_breakdown() -> None:
    doc = build_document(
        draft(lines=(line(1, "a", "1", rate="10"), line(2, "b", "1", rate="10.00")))
    )
    (subtotal,) = doc.tax_subtotals
    assert str(subtotal.rate) == "10"  # as first written, not normalised to 1E+1


@pytest.mark.parametrize("situation", sorted(samples.SITUATIONS))
def test_documents_survive_a_json_round_trip(situation: str) -> None:
    doc = samples.SITUATIONS[situation]()
    again = Document.model_validate_json(doc.model_dump_json())
    assert again == doc
    assert xml_bytes(again) == xml_bytes(doc)


def test_exemption_defaults_to_the_category_code_and_text() -> None:
    doc = build_document(
        draft(lines=(line(1, "SaaS", "100", rate="0", category=VatCategory.REVERSE_CHARGE),))
    )
    (sub,) = doc.tax_subtotals
    assert (sub.exemption_code, sub.exemption_reason) == ("VATEX-EU-AE", "Reverse charge")


def test_conflicting_exemption_codes_in_one_breakdown_are_refused() -> None:
    lines = (
        line(1, "a", "1", rate="0", category=VatCategory.EXEMPT, exemption_code="VATEX-EU-132-1I"),
        line(2, "b", "1", rate="0", category=VatCategory.EXEMPT, exemption_code="VATEX-EU-132-1G"),
    )
    with pytest.raises(BuildError, match="different exemption codes"):
        build_document(draft(lines=lines))


def test_foreign_currency_needs_an_exchange_rate() -> None:
    with pytest.raises(BuildError, match="tax_exchange_rate"):
        build_document(draft(currency="EUR"))
    doc = build_document(draft(currency="EUR", tax_exchange_rate=D("5.0843")))
    # 100 × 21 % = 21.00 EUR of VAT; × 5.0843 = 106.7703 → 106.77 RON
    assert (doc.tax_currency, doc.tax_currency_vat_total) == ("RON", D("106.77"))


def test_ron_vat_is_rounded_half_up() -> None:
    # 21.00 EUR × 5.005 = 105.105 RON exactly: half up gives 105.11 (half even would give .10).
    doc = build_document(draft(currency="EUR", tax_exchange_rate=D("5.005")))
    assert doc.tax_currency_vat_total == D("105.11")


def test_paid_amount_reduces_what_is_due() -> None:
    doc = build_document(draft(paid_amount=D("121.00")))
    assert (doc.totals.paid_amount, doc.totals.payable_amount) == (D("121.00"), D("0.00"))


# -- reconciliation with the source system ------------------------------------------------------


def test_totals_that_tie_need_no_adjustment() -> None:
    doc = build_document(draft(), ExpectedTotals(total=D("121.00"), vat_total=D("21.00")))
    assert doc.adjustments == () and doc.totals.rounding_amount == 0


def test_a_vat_residual_within_tolerance_goes_to_the_largest_breakdown() -> None:
    base = draft(
        lines=(line(1, "a", "10.00", rate="11"), line(2, "b", "50.00"), line(3, "c", "0.10"))
    )
    ours = build_document(base)
    doc = build_document(
        base,
        ExpectedTotals(
            total=ours.totals.tax_inclusive_total - D("0.02"),
            vat_total=ours.totals.vat_total - D("0.02"),
        ),
    )
    s11, s21 = doc.tax_subtotals
    assert s11.tax_amount == ours.tax_subtotals[0].tax_amount
    assert s21.tax_amount == ours.tax_subtotals[1].tax_amount - D("0.02")
    assert doc.totals.vat_total == ours.totals.vat_total - D("0.02")
    assert doc.totals.rounding_amount == 0
    (adjustment,) = doc.adjustments
    assert (adjustment.field, adjustment.amount) == ("BT-117 S 21%", D("-0.02"))
    assert check(doc) == []


def test_a_total_residual_within_tolerance_becomes_the_rounding_amount() -> None:
    ours = build_document(draft())
    doc = build_document(draft(), ExpectedTotals(total=ours.totals.tax_inclusive_total + D("0.01")))
    assert doc.totals.rounding_amount == D("0.01")
    assert doc.totals.payable_amount == ours.totals.payable_amount + D("0.01")
    assert doc.totals.tax_inclusive_total == ours.totals.tax_inclusive_total  # BR-CO-15 holds
    assert [a.field for a in doc.adjustments] == ["BT-114"]
    assert check(doc) == []


def test_a_vat_residual_beyond_tolerance_is_an_error() -> None:
    with pytest.raises(ReconciliationError, match=r"VAT total 22\.00 RON .* by 1\.00") as error:
        build_document(
            draft(), ExpectedTotals(total=D("122.00"), vat_total=D("22.00")), source="in_1Abc"
        )
    assert str(error.value).startswith("document FCT-2025-000123 (from in_1Abc): ")


def test_a_total_residual_beyond_tolerance_is_an_error() -> None:
    with pytest.raises(ReconciliationError, match=r"total 121\.05 RON .* by 0\.05.*tolerance"):
        build_document(draft(), ExpectedTotals(total=D("121.05")))


def test_vat_on_a_document_without_taxed_lines_cannot_be_absorbed() -> None:
    exempt = draft(
        lines=(
            line(
                1,
                "x",
                "100",
                rate="0",
                category=VatCategory.EXEMPT,
                exemption_code="VATEX-EU-132-1I",
            ),
        )
    )
    with pytest.raises(ReconciliationError, match="no line is in a taxed category"):
        build_document(exempt, ExpectedTotals(total=D("100.01"), vat_total=D("0.01")))


def test_tolerance_grows_with_lines_but_is_capped() -> None:
    many = draft(lines=tuple(line(n, "x", "1.00") for n in range(1, 101)))
    ours = build_document(many)
    ok = build_document(many, ExpectedTotals(total=ours.totals.tax_inclusive_total + D("0.50")))
    assert ok.totals.rounding_amount == D("0.50")
    with pytest.raises(ReconciliationError, match=r"tolerance 0\.50"):
        build_document(many, ExpectedTotals(total=ours.totals.tax_inclusive_total + D("0.51")))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=1_000_000),  # price in cents
            st.integers(min_value=1, max_value=20),  # quantity
            st.sampled_from(["21", "11", "19", "9", "5"]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_totals_always_tie(items: list[tuple[int, int, str]]) -> None:
    lines = tuple(
        line(n, "x", str(D(cents) / 100), quantity=str(qty), rate=rate)
        for n, (cents, qty, rate) in enumerate(items, start=1)
    )
    doc = build_document(draft(lines=lines))
    assert [v.rule for v in check(doc) if v.severity == "error"] == []
    t = doc.totals
    assert t.line_total == sum(item.net_amount for item in doc.lines)
    assert t.vat_total == sum(sub.tax_amount for sub in doc.tax_subtotals)
    assert t.tax_inclusive_total == t.tax_exclusive_total + t.vat_total
    for sub in doc.tax_subtotals:
        assert sub.tax_amount == round_money(sub.taxable_amount * sub.rate / 100)
