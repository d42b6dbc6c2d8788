from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from invoicesync_dagster.efactura.vat import (
    CATEGORIES_NEEDING_PARTY_IDS,
    EXEMPTION_REASONS,
    PartyIds,
    RateKind,
    RateRule,
    VatCategory,
    category_spec,
    exemption_code_fits,
    exemption_text,
    rates_in_force,
    standard_rate,
    vat_rate,
)

LAST_OLD_DAY = date(2025, 7, 31)
FIRST_NEW_DAY = date(2025, 8, 1)


@pytest.mark.parametrize(
    ("kind", "before", "after"),
    [
        (RateKind.STANDARD, "19", "21"),
        (RateKind.REDUCED, "9", "11"),
        (RateKind.REDUCED_LOWER, "5", "11"),
    ],
)
def test_rates_change_on_1_august_2025(kind: RateKind, before: str, after: str) -> None:
    assert vat_rate(kind, LAST_OLD_DAY) == Decimal(before)
    assert vat_rate(kind, FIRST_NEW_DAY) == Decimal(after)
    assert vat_rate(kind, date(2017, 1, 1)) == Decimal(before)
    assert vat_rate(kind, date(2030, 1, 1)) == Decimal(after)


def test_standard_rate_shortcut() -> None:
    assert standard_rate(LAST_OLD_DAY) == 19
    assert standard_rate(FIRST_NEW_DAY) == 21


def test_rates_in_force_include_the_transitional_housing_rate_for_a_year() -> None:
    assert rates_in_force(LAST_OLD_DAY) == {Decimal(19), Decimal(9), Decimal(5)}
    assert rates_in_force(FIRST_NEW_DAY) == {Decimal(21), Decimal(11), Decimal(9)}
    assert rates_in_force(date(2026, 8, 1)) == {Decimal(21), Decimal(11)}


def test_category_requirements_follow_en16931() -> None:
    assert category_spec("S").rate is RateRule.POSITIVE
    assert category_spec("O").rate is RateRule.ABSENT
    assert category_spec("AE").buyer_ids is PartyIds.VAT_OR_LEGAL_REGISTRATION
    assert category_spec("K").seller_ids is PartyIds.VAT
    assert category_spec("G").seller_ids is PartyIds.VAT
    assert category_spec("O").seller_ids is PartyIds.NO_VAT
    assert category_spec("O").buyer_ids is PartyIds.NO_VAT
    assert VatCategory.NOT_SUBJECT not in CATEGORIES_NEEDING_PARTY_IDS
    assert VatCategory.EXPORT in CATEGORIES_NEEDING_PARTY_IDS
    defaults = {c: category_spec(c).default_exemption_code for c in VatCategory}
    assert defaults == {
        VatCategory.STANDARD: None,
        VatCategory.ZERO_RATED: None,
        VatCategory.EXEMPT: None,
        VatCategory.REVERSE_CHARGE: "VATEX-EU-AE",
        VatCategory.INTRA_COMMUNITY: "VATEX-EU-IC",
        VatCategory.EXPORT: "VATEX-EU-G",
        VatCategory.NOT_SUBJECT: "VATEX-EU-O",
    }


def test_exemption_codes_cover_the_cef_list() -> None:
    assert len(EXEMPTION_REASONS) == 57  # what BR-CL-22 of CIUS-RO 1.0.9 accepts
    assert exemption_text("vatex-eu-ae") == "Reverse charge"
    assert exemption_text("VATEX-EU-132-1I") == (
        "Exempt based on article 132, section 1 (i) of Council Directive 2006/112/EC"
    )
    assert exemption_text("VATEX-EU-148-A").startswith("Exempt based on article 148, section (a)")
    assert all(len(text) <= 100 for text in EXEMPTION_REASONS.values())  # BR-RO-L1019
    with pytest.raises(KeyError, match="VATEX-EU-XX"):
        exemption_text("VATEX-EU-XX")


@pytest.mark.parametrize(
    ("category", "code", "fits"),
    [
        ("AE", "VATEX-EU-AE", True),
        ("AE", "VATEX-EU-IC", False),
        ("K", "VATEX-EU-IC", True),
        ("G", "VATEX-EU-G", True),
        ("O", "VATEX-EU-O", True),
        ("E", "VATEX-EU-132-1I", True),
        ("E", "VATEX-EU-AE", False),
        ("S", "VATEX-EU-132", False),
    ],
)
def test_exemption_code_fits_category(category: str, code: str, fits: bool) -> None:
    assert exemption_code_fits(category, code) is fits
