"""Romanian VAT: rates by chargeability date, UNCL 5305 categories and VATEX exemption codes.

Rates (EFACTURA.md §4.8, Legea 141/2025): until 31 Jul 2025 standard 19 %, reduced 9 % and
5 %; from 1 Aug 2025 standard 21 % and one reduced rate of 11 % (both former reduced rates
become 11 %; some goods formerly at 9 % move to 21 %, which is a product decision, not a date
rule). The rate follows the chargeability date, not the issue date: a credit note for a July
2025 invoice carries July's rate.

Left out on purpose: the transitional 9 % for certain housing supplies to individuals until
31 Jul 2026 (art. III Legea 141/2025) is never chosen by `vat_rate`; it is only listed among the
rates in force (`rates_in_force`) so that a document carrying it is not flagged.

Categories (EFACTURA.md §4.7): what each demands of the rate, the exemption reason and the
parties' identifiers, as EN 16931 (BR-S/Z/E/AE/IC/G/O-*) and CIUS-RO (BR-RO-065/120) state it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

RATE_CHANGE_DATE = date(2025, 8, 1)
HOUSING_TRANSITIONAL_RATE = Decimal("9")
HOUSING_TRANSITIONAL_UNTIL = date(2026, 7, 31)


class RateKind(StrEnum):
    STANDARD = "standard"
    REDUCED = "reduced"  # 9 % before the change, 11 % after
    REDUCED_LOWER = "reduced_lower"  # 5 % before the change, 11 % after


_RATES_BEFORE = {
    RateKind.STANDARD: Decimal("19"),
    RateKind.REDUCED: Decimal("9"),
    RateKind.REDUCED_LOWER: Decimal("5"),
}
_RATES_FROM_CHANGE = {
    RateKind.STANDARD: Decimal("21"),
    RateKind.REDUCED: Decimal("11"),
    RateKind.REDUCED_LOWER: Decimal("11"),
}


def vat_rate(kind: RateKind, chargeable_on: date) -> Decimal:
    """The Romanian rate (a percentage, e.g. `Decimal("21")`) of that kind on that date."""
    table = _RATES_BEFORE if chargeable_on < RATE_CHANGE_DATE else _RATES_FROM_CHANGE
    return table[RateKind(kind)]


def standard_rate(chargeable_on: date) -> Decimal:
    return vat_rate(RateKind.STANDARD, chargeable_on)


def rates_in_force(chargeable_on: date) -> frozenset[Decimal]:
    """Every positive Romanian rate that may appear on a supply chargeable on that date."""
    if chargeable_on < RATE_CHANGE_DATE:
        return frozenset(_RATES_BEFORE.values())
    rates = set(_RATES_FROM_CHANGE.values())
    if chargeable_on <= HOUSING_TRANSITIONAL_UNTIL:
        rates.add(HOUSING_TRANSITIONAL_RATE)
    return frozenset(rates)


class VatCategory(StrEnum):
    """UNCL 5305 VAT category codes used in Romania (L, M are Spanish, B is Italian)."""

    STANDARD = "S"
    ZERO_RATED = "Z"
    EXEMPT = "E"
    REVERSE_CHARGE = "AE"
    INTRA_COMMUNITY = "K"
    EXPORT = "G"
    NOT_SUBJECT = "O"


class RateRule(StrEnum):
    POSITIVE = "positive"  # S: a rate above zero
    ZERO = "zero"  # Z, E, AE, K, G: rate 0
    ABSENT = "absent"  # O: no rate at all (BR-O-05, BR-48)


class PartyIds(StrEnum):
    """Which identifiers of a party a category requires or forbids."""

    ANY = "any"  # no requirement
    VAT_OR_TAX_REGISTRATION = "vat_or_tax_registration"  # seller BT-31 or BT-32
    VAT = "vat"  # seller BT-31 / buyer BT-48
    VAT_OR_LEGAL_REGISTRATION = "vat_or_legal_registration"  # buyer BT-48 or BT-47
    NO_VAT = "no_vat"  # BT-31 / BT-48 must be absent


@dataclass(frozen=True)
class CategorySpec:
    category: VatCategory
    rule_prefix: str  # EN 16931 rule family: BR-S, BR-Z, BR-E, BR-AE, BR-IC, BR-G, BR-O
    rate: RateRule
    exemption_required: bool  # False: an exemption reason is forbidden (S, Z)
    default_exemption_code: str | None
    seller_ids: PartyIds
    buyer_ids: PartyIds


CATEGORY_SPECS: dict[VatCategory, CategorySpec] = {
    spec.category: spec
    for spec in (
        CategorySpec(
            VatCategory.STANDARD, "BR-S", RateRule.POSITIVE, False, None,
            PartyIds.VAT_OR_TAX_REGISTRATION, PartyIds.ANY,
        ),
        CategorySpec(
            VatCategory.ZERO_RATED, "BR-Z", RateRule.ZERO, False, None,
            PartyIds.VAT_OR_TAX_REGISTRATION, PartyIds.ANY,
        ),
        CategorySpec(
            VatCategory.EXEMPT, "BR-E", RateRule.ZERO, True, None,
            PartyIds.VAT_OR_TAX_REGISTRATION, PartyIds.ANY,
        ),
        CategorySpec(
            VatCategory.REVERSE_CHARGE, "BR-AE", RateRule.ZERO, True, "VATEX-EU-AE",
            PartyIds.VAT_OR_TAX_REGISTRATION, PartyIds.VAT_OR_LEGAL_REGISTRATION,
        ),
        CategorySpec(
            VatCategory.INTRA_COMMUNITY, "BR-IC", RateRule.ZERO, True, "VATEX-EU-IC",
            PartyIds.VAT, PartyIds.VAT,
        ),
        CategorySpec(
            VatCategory.EXPORT, "BR-G", RateRule.ZERO, True, "VATEX-EU-G",
            PartyIds.VAT, PartyIds.ANY,
        ),
        CategorySpec(
            VatCategory.NOT_SUBJECT, "BR-O", RateRule.ABSENT, True, "VATEX-EU-O",
            PartyIds.NO_VAT, PartyIds.NO_VAT,
        ),
    )
}  # fmt: skip

# BR-RO-065 / BR-RO-120: with any of these on the document, the seller needs BT-31 or BT-32 and
# the buyer BT-47 or BT-48 (L and M are in the CIUS-RO list too but never used in Romania).
CATEGORIES_NEEDING_PARTY_IDS = frozenset(VatCategory) - {VatCategory.NOT_SUBJECT}
# EN 16931: at most one VAT breakdown for each of these categories (BR-Z-01, BR-E-01, ...).
SINGLE_BREAKDOWN_CATEGORIES = frozenset(VatCategory) - {VatCategory.STANDARD}


def category_spec(category: VatCategory | str) -> CategorySpec:
    try:
        return CATEGORY_SPECS[category]  # type: ignore[index]  # a str finds its StrEnum member
    except KeyError:
        raise KeyError(f"{category!r} is not a UNCL 5305 VAT category used in Romania") from None


def _article_codes(article: str, sections: str, prefix: str) -> dict[str, str]:
    return {
        f"VATEX-EU-{article}-{prefix}{letter}": (
            f"Exempt based on article {article}, section {prefix + ' ' if prefix else ''}"
            f"({letter.lower()}) of Council Directive 2006/112/EC"
        )
        for letter in sections.split()
    }


# CEF VATEX code list (the codes BR-CL-22 accepts) → its English name. The text is written as
# the exemption reason (BT-120) next to the code (BT-121).
EXEMPTION_REASONS: dict[str, str] = {
    "VATEX-EU-79-C": "Exempt based on article 79, point c of Council Directive 2006/112/EC",
    "VATEX-EU-132": "Exempt based on article 132 of Council Directive 2006/112/EC",
    **_article_codes("132", "A B C D E F G H I J K L M N O P Q", "1"),
    "VATEX-EU-143": "Exempt based on article 143 of Council Directive 2006/112/EC",
    **_article_codes("143", "A B C D E F FA G H I J K L", "1"),
    "VATEX-EU-148": "Exempt based on article 148 of Council Directive 2006/112/EC",
    **_article_codes("148", "A B C D E F G", ""),
    "VATEX-EU-151": "Exempt based on article 151 of Council Directive 2006/112/EC",
    **_article_codes("151", "A AA B C D E", "1"),
    "VATEX-EU-309": "Exempt based on article 309 of Council Directive 2006/112/EC",
    "VATEX-EU-AE": "Reverse charge",
    "VATEX-EU-D": "Intra-Community acquisition from second hand means of transport",
    "VATEX-EU-F": "Intra-Community acquisition of second hand goods",
    "VATEX-EU-G": "Export outside the EU",
    "VATEX-EU-I": "Intra-Community acquisition of works of art",
    "VATEX-EU-IC": "Intra-Community supply",
    "VATEX-EU-J": "Intra-Community acquisition of collectors items and antiques",
    "VATEX-EU-O": "Not subject to VAT",
}

# Codes that name a category of their own: using them under another category is a mistake.
_CODE_CATEGORY = {
    "VATEX-EU-AE": VatCategory.REVERSE_CHARGE,
    "VATEX-EU-IC": VatCategory.INTRA_COMMUNITY,
    "VATEX-EU-G": VatCategory.EXPORT,
    "VATEX-EU-O": VatCategory.NOT_SUBJECT,
}


def exemption_text(code: str) -> str:
    """The standard text for a VATEX code; KeyError names the code if it is not in the list."""
    try:
        return EXEMPTION_REASONS[code.upper()]
    except KeyError:
        raise KeyError(f"{code!r} is not a CEF VATEX exemption code") from None


def exemption_code_fits(category: VatCategory | str, code: str) -> bool:
    """Whether an exemption code belongs under the category: AE, K, G and O take exactly their
    own code (VATEX-EU-AE, -IC, -G, -O); E takes any other VATEX code; S and Z take none."""
    spec = category_spec(category)
    if not spec.exemption_required:
        return False
    if spec.default_exemption_code is not None:
        return code.upper() == spec.default_exemption_code
    return code.upper() in EXEMPTION_REASONS and code.upper() not in _CODE_CATEGORY
