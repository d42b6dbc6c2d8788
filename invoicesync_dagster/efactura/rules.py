"""The CIUS-RO checks this project can make before uploading a document (EFACTURA.md §4).

`check(document, source=...)` returns every finding: the rule id, the severity, the field (the
model path and its BT number), a message saying what to fix, and the `source` the caller
passes in (e.g. the Stripe invoice id), so that a held document names what to correct where.

Rule ids are the ones the official validator reports for the same fault (BR-RO-081, BR-S-08,
BR-RO-L1024, BR-DEC-23, UBL-DT-01 for BT-110/111, ...), so a finding can be compared with
`validate.py`'s. BR-RO-L1017 (allowance reason length), BR-RO-L1019, BR-RO-A051 and BR-RO-A500
are CIUS-RO rules that the published schematron never fires (RULES-CIUS-RO-1.0.9.md); they are
checked here as the specification states them. Checks that are the project's own, with no
official counterpart, are prefixed `IS-`:

* IS-LINE-NET: line net ≠ quantity × price − line allowances (beyond a cent of rounding);
* IS-LINE-ID: two lines with the same id;
* IS-VAT-AMOUNT: a breakdown's VAT differs from taxable × rate by more than the document's
  rounding tolerance (what `build_document` may allocate);
* IS-VAT-RATE (warning): an S rate that is not a Romanian rate on the chargeability date (the
  issue date, or the corrected invoice's date for a credit note);
* IS-EXEMPTION-CODE: an exemption code that belongs to another category (VATEX-EU-IC on AE);
* IS-TAX-CURRENCY-AMOUNT: BT-111 ≠ BT-110 × the exchange rate, rounded;
* IS-CREDIT-NOTE-SIGN: a credit note whose total is negative (the signs were flipped twice);
* IS-CREDIT-NOTE-REFERENCE (warning): a credit note that names no invoice it corrects;
* IS-CREDIT-NOTE-DUE-DATE (warning): a credit note due date with no payment means to carry it.

Partial on purpose (the official validator has the full lists): currency, country and unit
codes are checked for their shape only (BR-CL-04/14/23). Dates cannot be malformed in the model
(BR-RO-DT*), CustomizationID is a constant (BR-RO-001), and the model has no tax
representative, payee or item attributes, so their rules do not apply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from invoicesync_dagster.efactura.counties import BUCHAREST, BUCHAREST_SECTORS, is_county_code
from invoicesync_dagster.efactura.model import (
    RON,
    Address,
    Document,
    DocumentKind,
    Party,
    rounding_tolerance,
)
from invoicesync_dagster.efactura.money import CENT, ZERO, is_whole_cents, round_money
from invoicesync_dagster.efactura.vat import (
    CATEGORIES_NEEDING_PARTY_IDS,
    EXEMPTION_REASONS,
    SINGLE_BREAKDOWN_CATEGORIES,
    PartyIds,
    RateRule,
    VatCategory,
    category_spec,
    exemption_code_fits,
    rates_in_force,
)


class Severity(StrEnum):
    ERROR = "error"  # the document must not be filed
    WARNING = "warning"  # worth a look; filing may go ahead


class RuleViolation(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: str
    severity: Severity
    field: str
    message: str
    source: str

    def __str__(self) -> str:
        origin = f" [{self.source}]" if self.source else ""
        return f"{self.severity.value} {self.rule} {self.field}: {self.message}{origin}"


INVOICE_TYPE_CODES = frozenset({"380", "384", "389", "751"})  # BR-RO-020
# UNCL 4461 payment means codes EN 16931 accepts (BR-CL-16).
PAYMENT_MEANS_CODES = frozenset(
    [str(n) for n in (*range(1, 71), 74, 75, 76, 77, 78, *range(91, 98))] + ["ZZZ"]
)
# UNCL 5189 allowance reason codes EN 16931 accepts (BR-CL-19).
ALLOWANCE_REASON_CODES = frozenset({
    "41", "42", "60", "62", "63", "64", "65", "66", "67", "68", "70", "71", "88", "95", "100",
    "102", "103", "104", "105",
})  # fmt: skip
CREDIT_TRANSFER_CODES = frozenset({"30", "58"})  # BR-61: need the payee's account
_DIGIT = re.compile(r"[0-9]")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z0-9]{2}$")
_UNIT_CODE = re.compile(r"^[A-Z0-9]{1,3}$")
_VAT_PREFIX = re.compile(r"^(?:[A-Z]{2}|1A)")  # 1A: Kosovo in EN 16931's country list
_XML_SPACE = re.compile(r"[ \t\r\n]+")


def _length(text: str | None) -> int:
    """Characters as the schematron counts them: after XPath normalize-space."""
    return len(_XML_SPACE.sub(" ", text).strip()) if text else 0


def _blank(text: str | None) -> bool:
    return _length(text) == 0


def _rate_text(rate: Decimal | None) -> str:
    return "no rate" if rate is None else f"{rate.normalize():f}%"


class _Findings:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[RuleViolation] = []

    def add(self, rule: str, field: str, message: str, severity: Severity = Severity.ERROR) -> None:
        violation = RuleViolation(
            rule=rule, severity=severity, field=field, message=message, source=self.source
        )
        self.items.append(violation)

    def max_length(self, rule: str, field: str, text: str | None, limit: int) -> None:
        # normalize-space only shortens a text: most texts are cleared by their raw length.
        if text and len(text) > limit and _length(text) > limit:
            self.add(rule, field, f"{_length(text)} characters, at most {limit} are allowed")

    def whole_cents(self, rule: str, field: str, value: Decimal | None) -> None:
        if value is not None and not is_whole_cents(value):
            self.add(rule, field, f"amount {value} has more than 2 decimals; round it to the cent")


def check(document: Document, source: str = "") -> list[RuleViolation]:
    """Every CIUS-RO / EN 16931 finding this project can verify on the document (see the module
    docstring); an empty list means none. `source` is copied into each finding."""
    findings = _Findings(source)
    _check_identity(document, findings)
    _check_party(document.seller, "seller", findings)
    _check_party(document.buyer, "buyer", findings)
    _check_delivery(document, findings)
    _check_lines(document, findings)
    _check_allowances(document, findings)
    _check_party_ids(document, findings)
    _check_breakdown(document, findings)
    _check_totals(document, findings)
    _check_payment(document, findings)
    _check_references(document, findings)
    return findings.items


# -- document identity ------------------------------------------------------------------------


def _check_identity(doc: Document, findings: _Findings) -> None:
    if not _DIGIT.search(doc.number or ""):
        findings.add(
            "BR-RO-010",
            "number (BT-1)",
            f"invoice number {doc.number!r} must contain at least one digit 0-9",
        )
    findings.max_length("BR-RO-L155", "number (BT-1)", doc.number, 200)
    if doc.kind is DocumentKind.INVOICE and doc.invoice_type_code not in INVOICE_TYPE_CODES:
        findings.add(
            "BR-RO-020_1",
            "invoice_type_code (BT-3)",
            f"invoice type {doc.invoice_type_code!r} is not allowed on an Invoice; use "
            "380, 384, 389 or 751 (a credit note is a CreditNote document, 381)",
        )
    if not doc.lines:
        findings.add("BR-16", "lines (BG-25)", "a document needs at least one line")
    if len(doc.notes) > 20:
        findings.add("BR-RO-A020", "notes (BT-22)", f"{len(doc.notes)} notes, at most 20 allowed")
    for i, note in enumerate(doc.notes):
        findings.max_length("BR-RO-L302", f"notes[{i}] (BT-22)", note, 300)
    if not _CURRENCY.match(doc.currency):
        findings.add(
            "BR-CL-04", "currency (BT-5)", f"{doc.currency!r} is not an ISO 4217 currency code"
        )
    if doc.currency != RON and doc.tax_currency != RON:
        findings.add(
            "BR-RO-030",
            "tax_currency (BT-6)",
            f"the document is in {doc.currency}, so its VAT accounting currency must be "
            "RON: build it with the RON exchange rate",
        )
    if doc.tax_currency and doc.tax_currency_vat_total is None:
        findings.add(
            "BR-53",
            "tax_currency_vat_total (BT-111)",
            f"with tax currency {doc.tax_currency} the VAT total in {doc.tax_currency} "
            "must be given",
        )
    # BR-DEC-15 never fires in either rule set; UBL-DT-01 (any amount) is what reports it.
    findings.whole_cents("UBL-DT-01", "tax_currency_vat_total (BT-111)", doc.tax_currency_vat_total)
    if doc.tax_exchange_rate is not None and doc.tax_currency_vat_total is not None:
        expected = round_money(doc.totals.vat_total * doc.tax_exchange_rate)
        if doc.tax_currency_vat_total != expected:
            findings.add(
                "IS-TAX-CURRENCY-AMOUNT",
                "tax_currency_vat_total (BT-111)",
                f"VAT in RON is {doc.tax_currency_vat_total}, but {doc.totals.vat_total} "
                f"× rate {doc.tax_exchange_rate} = {expected}",
            )
    owed = doc.kind is DocumentKind.INVOICE and doc.totals.payable_amount > 0
    if owed and doc.due_date is None and _blank(doc.payment_terms):
        findings.add(
            "BR-CO-25",
            "due_date (BT-9)",
            "an amount is due, so the invoice needs a due date or payment terms "
            "(or record the payment as paid_amount)",
        )
    period = doc.invoice_period
    if period and period.start and period.end and period.end < period.start:
        findings.add(
            "BR-29",
            "invoice_period.end (BT-74)",
            f"the period ends ({period.end}) before it starts ({period.start})",
        )
    if doc.kind is DocumentKind.CREDIT_NOTE:
        if doc.totals.tax_exclusive_total < 0:
            findings.add(
                "IS-CREDIT-NOTE-SIGN",
                "totals.tax_exclusive_total (BT-109)",
                f"a credit note states what is credited in positive amounts, this one totals "
                f"{doc.totals.tax_exclusive_total}: flip the signs of its lines",
            )
        if not doc.preceding_invoices:
            findings.add(
                "IS-CREDIT-NOTE-REFERENCE",
                "preceding_invoices (BG-3)",
                "the credit note names no invoice it corrects; add its number and date",
                Severity.WARNING,
            )
        if doc.due_date and not doc.payment_means:
            findings.add(
                "IS-CREDIT-NOTE-DUE-DATE",
                "due_date (BT-9)",
                "a credit note carries its due date in its payment means, and it has "
                "none: the due date will not be written",
                Severity.WARNING,
            )


# -- parties ----------------------------------------------------------------------------------

# (seller id, buyer id) of each rule, and the BT numbers of the fields it is about.
_PARTY_RULES = {
    "name": ("BR-06", "BR-07"),
    "name_length": ("BR-RO-L201", "BR-RO-L203"),
    "trading_name_length": ("BR-RO-L202", "BR-RO-L204"),
    "street": ("BR-RO-081", "BR-RO-082"),
    "city": ("BR-RO-091", "BR-RO-092"),
    "sector": ("BR-RO-100", "BR-RO-101"),
    "county": ("BR-RO-110", "BR-RO-111"),
    "street_length": ("BR-RO-L151", "BR-RO-L152"),
    "additional_street_length": ("BR-RO-L1002", "BR-RO-L1007"),
    "city_length": ("BR-RO-L0501", "BR-RO-L0502"),
    "postal_code_length": ("BR-RO-L0201", "BR-RO-L0202"),
    "contact_name_length": ("BR-RO-L1004", "BR-RO-L1009"),
    "phone_length": ("BR-RO-L1005", "BR-RO-L1010"),
    "email_length": ("BR-RO-L1006", "BR-RO-L1011"),
}
_PARTY_TERMS = {
    "name": ("BT-27", "BT-44"), "trading_name": ("BT-28", "BT-45"), "street": ("BT-35", "BT-50"),
    "additional_street": ("BT-36", "BT-51"), "city": ("BT-37", "BT-52"),
    "postal_code": ("BT-38", "BT-53"), "county": ("BT-39", "BT-54"),
    "country": ("BT-40", "BT-55"), "contact_name": ("BT-41", "BT-56"),
    "phone": ("BT-42", "BT-57"), "email": ("BT-43", "BT-58"), "vat_id": ("BT-31", "BT-48"),
}  # fmt: skip


_ADDRESS_FIELDS = frozenset({"street", "additional_street", "city", "postal_code", "county",
                             "country"})  # fmt: skip


def _party_fields(role: str, side: int) -> dict[str, str]:
    return {
        name: f"{role}.{'address.' if name in _ADDRESS_FIELDS else ''}{name} ({terms[side]})"
        for name, terms in _PARTY_TERMS.items()
    }


# role → rule key → rule id, and role → field name → "seller.address.street (BT-35)"
_RULE_IDS = {
    role: {key: ids[side] for key, ids in _PARTY_RULES.items()}
    for side, role in enumerate(("seller", "buyer"))
}
_FIELDS = {role: _party_fields(role, side) for side, role in enumerate(("seller", "buyer"))}


def _check_party(party: Party, role: str, findings: _Findings) -> None:
    rule, field = _RULE_IDS[role], _FIELDS[role]
    if _blank(party.name):
        findings.add(rule["name"], field["name"], f"the {role}'s name is missing")
    findings.max_length(rule["name_length"], field["name"], party.name, 200)
    findings.max_length(rule["trading_name_length"], field["trading_name"], party.trading_name, 200)
    for key in ("contact_name", "phone", "email"):
        findings.max_length(rule[f"{key}_length"], field[key], getattr(party, key), 100)
    if party.vat_id and not _VAT_PREFIX.match(party.vat_id):
        findings.add(
            "BR-CO-09",
            field["vat_id"],
            f"VAT id {party.vat_id!r} must start with its country's ISO 3166 code "
            "(EL for Greece), e.g. RO12345674",
        )
    _check_address(party.address, findings, role, rule, field)


def _check_address(
    address: Address,
    findings: _Findings,
    role: str,
    rule: Mapping[str, str],
    field: Mapping[str, str],
) -> None:
    if _blank(address.street):
        findings.add(
            rule["street"], field["street"], f"the {role}'s street (address line 1) is missing"
        )
    if _blank(address.city):
        findings.add(rule["city"], field["city"], f"the {role}'s city is missing")
    findings.max_length(rule["street_length"], field["street"], address.street, 150)
    findings.max_length(
        rule["additional_street_length"], field["additional_street"], address.additional_street, 100
    )
    findings.max_length(rule["city_length"], field["city"], address.city, 50)
    findings.max_length(rule["postal_code_length"], field["postal_code"], address.postal_code, 20)
    if not _COUNTRY.match(address.country):
        findings.add(
            "BR-CL-14",
            field["country"],
            f"{address.country!r} is not an ISO 3166-1 alpha-2 country code",
        )
    if address.country != "RO":
        return
    if not is_county_code(address.county or ""):
        findings.add(
            rule["county"],
            field["county"],
            f"county {address.county!r} must be an ISO 3166-2:RO code such as RO-CJ, "
            "or RO-B for Bucharest",
        )
    elif address.county == BUCHAREST and address.city not in BUCHAREST_SECTORS:
        findings.add(
            rule["sector"],
            field["city"],
            f"in Bucharest the city must be the sector, SECTOR1 to SECTOR6, not "
            f"{address.city!r}: find the sector from the street address",
        )


_DELIVERY_RULES = {
    "street": "BR-RO-180", "city": "BR-RO-201", "sector": "BR-RO-202", "county": "BR-RO-212",
    "street_length": "BR-RO-L154", "additional_street_length": "BR-RO-L1014",
    "city_length": "BR-RO-L0504", "postal_code_length": "BR-RO-L0204",
}  # fmt: skip
_DELIVERY_FIELDS = {
    name: f"delivery.address.{name} ({term})"
    for name, term in (
        ("street", "BT-75"), ("additional_street", "BT-76"), ("city", "BT-77"),
        ("postal_code", "BT-78"), ("county", "BT-79"), ("country", "BT-80"),
    )
}  # fmt: skip


def _check_delivery(doc: Document, findings: _Findings) -> None:
    address = doc.delivery.address if doc.delivery else None
    if address is None:
        return
    _check_address(address, findings, "delivery", _DELIVERY_RULES, _DELIVERY_FIELDS)
    if _blank(address.county) and address.country != "RO":  # in RO, BR-RO-212 reported it
        findings.add(
            "BR-RO-211",
            _DELIVERY_FIELDS["county"],
            "a delivery address needs its country subdivision, in any country",
        )


# -- lines and allowances ---------------------------------------------------------------------


def _check_rate(
    category: VatCategory, rate: Decimal | None, rule_suffix: str, field: str, findings: _Findings
) -> None:
    spec = category_spec(category)
    rule = f"{spec.rule_prefix}-{rule_suffix}"
    if spec.rate is RateRule.POSITIVE and (rate is None or rate <= 0):
        findings.add(
            rule, field, f"category {category} needs a VAT rate above 0, got {_rate_text(rate)}"
        )
    elif spec.rate is RateRule.ZERO and rate != 0:
        findings.add(rule, field, f"category {category} has VAT rate 0, got {_rate_text(rate)}")
    elif spec.rate is RateRule.ABSENT and rate is not None:
        findings.add(
            rule,
            field,
            f"category {category} (not subject to VAT) takes no VAT rate, got {_rate_text(rate)}",
        )


def _chargeability_date(doc: Document) -> date:
    dated = [p.issue_date for p in doc.preceding_invoices if p.issue_date]
    if doc.kind is DocumentKind.CREDIT_NOTE and dated:
        return min(dated)
    return doc.issue_date


def _check_lines(doc: Document, findings: _Findings) -> None:
    rates = rates_in_force(_chargeability_date(doc))
    ids_seen: set[str] = set()
    for i, line in enumerate(doc.lines):
        at = f"lines[{i}]"
        if line.id in ids_seen:
            findings.add("IS-LINE-ID", f"{at}.id (BT-126)", f"line id {line.id!r} is used twice")
        ids_seen.add(line.id)
        if _blank(line.name):
            findings.add("BR-25", f"{at}.name (BT-153)", "the item name is missing")
        findings.max_length("BR-RO-L1024", f"{at}.name (BT-153)", line.name, 100)
        findings.max_length("BR-RO-L212", f"{at}.description (BT-154)", line.description, 200)
        findings.max_length("BR-RO-L303", f"{at}.note (BT-127)", line.note, 300)
        if not _UNIT_CODE.match(line.unit_code or ""):
            findings.add(
                "BR-CL-23",
                f"{at}.unit_code (BT-130)",
                f"{line.unit_code!r} is not a UN/ECE Rec 20 unit code (e.g. C62, H87)",
            )
        if line.unit_price < 0:
            findings.add(
                "BR-27",
                f"{at}.unit_price (BT-146)",
                f"the item price {line.unit_price} is negative; put the sign on the "
                "quantity (storno) or issue a credit note",
            )
        findings.whole_cents("BR-DEC-23", f"{at}.net_amount (BT-131)", line.net_amount)
        allowances = ZERO
        for j, allowance in enumerate(line.allowances):
            where = f"{at}.allowances[{j}]"
            allowances += allowance.amount
            findings.whole_cents("BR-DEC-RO-24", f"{where}.amount (BT-136)", allowance.amount)
            findings.max_length("BR-RO-L1022", f"{where}.reason (BT-139)", allowance.reason, 100)
            _check_allowance_reason(
                allowance.reason,
                allowance.reason_code,
                "BR-42",
                where,
                "BT-139/BT-140",
                findings,
            )
        expected = round_money(line.quantity * line.unit_price) - allowances
        if abs(expected - line.net_amount) > CENT:
            findings.add(
                "IS-LINE-NET",
                f"{at}.net_amount (BT-131)",
                f"net amount {line.net_amount} ≠ quantity {line.quantity} × price "
                f"{line.unit_price} − allowances {allowances} = {expected}",
            )
        _check_rate(line.vat_category, line.vat_rate, "05", f"{at}.vat_rate (BT-152)", findings)
        if (
            line.vat_category is VatCategory.STANDARD
            and line.vat_rate is not None
            and line.vat_rate > 0
            and line.vat_rate not in rates
        ):
            findings.add(
                "IS-VAT-RATE",
                f"{at}.vat_rate (BT-152)",
                f"{_rate_text(line.vat_rate)} is not a Romanian VAT rate on "
                f"{_chargeability_date(doc)} (rates then: "
                f"{', '.join(_rate_text(r) for r in sorted(rates))})",
                Severity.WARNING,
            )


def _check_allowance_reason(
    reason: str | None, code: str | None, rule: str, at: str, terms: str, findings: _Findings
) -> None:
    """`terms` names the reason and code business terms, e.g. "BT-97/BT-98"."""
    reason_term, code_term = terms.split("/")
    if _blank(reason) and _blank(code):
        findings.add(
            rule,
            f"{at}.reason ({reason_term})",
            "an allowance needs a reason text or a reason code",
        )
    if code and code not in ALLOWANCE_REASON_CODES:
        findings.add(
            "BR-CL-19",
            f"{at}.reason_code ({code_term})",
            f"{code!r} is not a UNCL 5189 allowance reason code (95 = discount)",
        )


def _check_allowances(doc: Document, findings: _Findings) -> None:
    for i, allowance in enumerate(doc.allowances):
        at = f"allowances[{i}]"
        findings.whole_cents("BR-DEC-RO-01", f"{at}.amount (BT-92)", allowance.amount)
        findings.max_length("BR-RO-L1017", f"{at}.reason (BT-97)", allowance.reason, 100)
        _check_allowance_reason(
            allowance.reason, allowance.reason_code, "BR-33", at, "BT-97/BT-98", findings
        )
        _check_rate(
            allowance.vat_category, allowance.vat_rate, "06", f"{at}.vat_rate (BT-96)", findings
        )


# -- identifiers by VAT category --------------------------------------------------------------


def _check_party_ids(doc: Document, findings: _Findings) -> None:
    seller, buyer = doc.seller, doc.buyer
    on_lines = {line.vat_category for line in doc.lines}
    on_allowances = {allowance.vat_category for allowance in doc.allowances} - on_lines
    used = on_lines | on_allowances
    if used & CATEGORIES_NEEDING_PARTY_IDS:
        if not (seller.vat_id or seller.tax_registration_id):
            findings.add(
                "BR-RO-065",
                "seller.vat_id (BT-31)",
                "the seller needs its VAT id (BT-31) or tax registration id/CUI (BT-32)",
            )
        if not (buyer.vat_id or buyer.tax_registration_id or buyer.trade_register_number):
            findings.add(
                "BR-RO-120",
                "buyer.tax_registration_id (BT-47)",
                "the buyer needs a legal registration id (CUI, CNP, or 0000000000000 for "
                "a private person without one) or a VAT id",
            )
    if not (seller.vat_id or seller.trade_register_number):
        findings.add(
            "BR-CO-26",
            "seller.trade_register_number (BT-30)",
            "the seller needs its VAT id (BT-31) or legal registration number (BT-30)",
        )
    for categories, suffix in ((on_lines, "02"), (on_allowances, "03")):
        for category in sorted(categories):
            _check_category_ids(
                category, f"{category_spec(category).rule_prefix}-{suffix}", seller, buyer, findings
            )


def _check_category_ids(
    category: VatCategory, rule: str, seller: Party, buyer: Party, findings: _Findings
) -> None:
    spec = category_spec(category)
    has_buyer_legal = bool(buyer.tax_registration_id or buyer.trade_register_number)
    seller_ok = {
        PartyIds.ANY: True,
        PartyIds.VAT_OR_TAX_REGISTRATION: bool(seller.vat_id or seller.tax_registration_id),
        PartyIds.VAT: bool(seller.vat_id),
        PartyIds.NO_VAT: not seller.vat_id,
    }[spec.seller_ids]
    buyer_ok = {
        PartyIds.ANY: True,
        PartyIds.VAT_OR_LEGAL_REGISTRATION: bool(buyer.vat_id) or has_buyer_legal,
        PartyIds.VAT: bool(buyer.vat_id),
        PartyIds.NO_VAT: not buyer.vat_id,
    }[spec.buyer_ids]
    if not seller_ok:
        need = {
            PartyIds.VAT_OR_TAX_REGISTRATION: "needs its VAT id (BT-31) or CUI (BT-32)",
            PartyIds.VAT: "needs its VAT id (BT-31)",
            PartyIds.NO_VAT: "must not show a VAT id (BT-31): leave it out of this document",
        }[spec.seller_ids]
        findings.add(
            rule, "seller.vat_id (BT-31)", f"with VAT category {category} the seller {need}"
        )
    if not buyer_ok:
        need = {
            PartyIds.VAT_OR_LEGAL_REGISTRATION: "needs its VAT id (BT-48) or legal registration "
            "id (BT-47)",
            PartyIds.VAT: "needs its VAT id (BT-48)",
            PartyIds.NO_VAT: "must not show a VAT id (BT-48): leave it out of this document",
        }[spec.buyer_ids]
        findings.add(rule, "buyer.vat_id (BT-48)", f"with VAT category {category} the buyer {need}")


# -- VAT breakdown ----------------------------------------------------------------------------


def _key(category: VatCategory, rate: Decimal | None) -> tuple[VatCategory, Decimal | None]:
    return category, (None if rate is None else rate.normalize())


def _check_breakdown(doc: Document, findings: _Findings) -> None:
    expected: dict[tuple[VatCategory, Decimal | None], Decimal] = {}
    for line in doc.lines:
        key = _key(line.vat_category, line.vat_rate)
        expected[key] = expected.get(key, ZERO) + line.net_amount
    for allowance in doc.allowances:
        key = _key(allowance.vat_category, allowance.vat_rate)
        expected[key] = expected.get(key, ZERO) - allowance.amount
    if not doc.tax_subtotals:
        findings.add("BR-CO-18", "tax_subtotals (BG-23)", "the document has no VAT breakdown")
    tolerance = rounding_tolerance(doc)
    categories = [sub.category for sub in doc.tax_subtotals]
    for category in sorted(set(categories)):
        if category in SINGLE_BREAKDOWN_CATEGORIES and categories.count(category) > 1:
            findings.add(
                f"{category_spec(category).rule_prefix}-01",
                "tax_subtotals (BG-23)",
                f"category {category} must have exactly one VAT breakdown, it has "
                f"{categories.count(category)}",
            )
    if VatCategory.NOT_SUBJECT in categories and len(categories) > 1:
        findings.add(
            "BR-O-11",
            "tax_subtotals (BG-23)",
            "a document not subject to VAT (O) cannot have other VAT categories: "
            "issue the O supplies on a document of their own",
        )
    covered = set()
    for i, sub in enumerate(doc.tax_subtotals):
        at = f"tax_subtotals[{i}]"
        spec = category_spec(sub.category)
        key = _key(sub.category, sub.rate)
        covered.add(key)
        findings.whole_cents("BR-DEC-RO-1009", f"{at}.taxable_amount (BT-116)", sub.taxable_amount)
        findings.whole_cents("BR-DEC-RO-1010", f"{at}.tax_amount (BT-117)", sub.tax_amount)
        if sub.taxable_amount != expected.get(key, ZERO):
            findings.add(
                f"{spec.rule_prefix}-08",
                f"{at}.taxable_amount (BT-116)",
                f"taxable amount {sub.taxable_amount} for {sub.category} "
                f"{_rate_text(sub.rate)} ≠ its lines minus its allowances, "
                f"{expected.get(key, ZERO)}",
            )
        _check_subtotal_tax(
            sub.category,
            sub.rate,
            sub.taxable_amount,
            sub.tax_amount,
            tolerance,
            f"{at}.tax_amount (BT-117)",
            findings,
        )
        _check_exemption(sub.category, sub.exemption_code, sub.exemption_reason, at, findings)
    for category, rate in sorted(expected.keys() - covered, key=str):
        # -01: the category has no breakdown at all; -08: not at this rate.
        suffix = "08" if category in categories else "01"
        findings.add(
            f"{category_spec(category).rule_prefix}-{suffix}",
            "tax_subtotals (BG-23)",
            f"lines or allowances use {category} {_rate_text(rate)} but no VAT breakdown does",
        )
    if VatCategory.INTRA_COMMUNITY in categories:
        delivery = doc.delivery
        period = doc.invoice_period
        if not (delivery and delivery.delivery_date) and not (
            period and (period.start or period.end)
        ):
            findings.add(
                "BR-IC-11",
                "delivery.delivery_date (BT-72)",
                "an intra-community supply needs the actual delivery date or the invoicing period",
            )
        if not (delivery and delivery.address and delivery.address.country):
            findings.add(
                "BR-IC-12",
                "delivery.address.country (BT-80)",
                "an intra-community supply needs the deliver-to country",
            )


def _check_subtotal_tax(
    category: VatCategory,
    rate: Decimal | None,
    taxable: Decimal,
    tax: Decimal,
    tolerance: Decimal,
    field: str,
    findings: _Findings,
) -> None:
    spec = category_spec(category)
    if spec.rate is not RateRule.POSITIVE:
        if tax != 0:
            findings.add(
                f"{spec.rule_prefix}-09",
                field,
                f"category {category} carries no VAT, but the breakdown has {tax}",
            )
        return
    if rate is None:
        findings.add(
            "BR-48",
            field.replace("tax_amount (BT-117)", "rate (BT-119)"),
            f"the {category} breakdown needs its VAT rate",
        )
        return
    computed = round_money(taxable * rate / 100)
    difference = abs(tax - computed)
    if difference >= 1:  # the official BR-S-09 / BR-CO-17 tolerance
        message = f"VAT {tax} ≠ taxable {taxable} × {_rate_text(rate)} = {computed}"
        findings.add("BR-S-09", field, message)
        findings.add("BR-CO-17", field, message)
    elif difference > tolerance:
        findings.add(
            "IS-VAT-AMOUNT",
            field,
            f"VAT {tax} differs from taxable {taxable} × {_rate_text(rate)} = {computed} "
            f"by {difference}, more than the rounding tolerance {tolerance}",
        )


def _check_exemption(
    category: VatCategory, code: str | None, reason: str | None, at: str, findings: _Findings
) -> None:
    spec = category_spec(category)
    field = f"{at}.exemption_code (BT-121)"
    if not spec.exemption_required:
        if code or reason:
            findings.add(
                f"{spec.rule_prefix}-10",
                field,
                f"category {category} takes no exemption reason, got {code or reason!r}",
            )
        return
    if _blank(code) and _blank(reason):
        default = f" ({spec.default_exemption_code})" if spec.default_exemption_code else ""
        findings.add(
            f"{spec.rule_prefix}-10",
            field,
            f"category {category} needs an exemption reason code{default} or text",
        )
    if code and code.upper() not in EXEMPTION_REASONS:
        findings.add("BR-CL-22", field, f"{code!r} is not a CEF VATEX exemption code")
    elif code and not exemption_code_fits(category, code):
        findings.add(
            "IS-EXEMPTION-CODE",
            field,
            f"{code!r} does not belong to category {category}"
            + (f"; use {spec.default_exemption_code}" if spec.default_exemption_code else ""),
        )
    findings.max_length("BR-RO-L1019", f"{at}.exemption_reason (BT-120)", reason, 100)


# -- totals -----------------------------------------------------------------------------------


def _sum(values: Iterable[Decimal]) -> Decimal:
    return sum(values, ZERO)


def _check_totals(doc: Document, findings: _Findings) -> None:
    totals = doc.totals
    decimals = (
        ("BR-DEC-RO-09", "line_total (BT-106)", totals.line_total),
        ("BR-DEC-RO-10", "allowance_total (BT-107)", totals.allowance_total),
        ("BR-DEC-RO-12", "tax_exclusive_total (BT-109)", totals.tax_exclusive_total),
        ("UBL-DT-01", "vat_total (BT-110)", totals.vat_total),  # BR-DEC-13 never fires
        ("BR-DEC-RO-14", "tax_inclusive_total (BT-112)", totals.tax_inclusive_total),
        ("BR-DEC-RO-16", "paid_amount (BT-113)", totals.paid_amount),
        ("BR-DEC-RO-17", "rounding_amount (BT-114)", totals.rounding_amount),
        ("BR-DEC-RO-18", "payable_amount (BT-115)", totals.payable_amount),
    )
    for rule, field, value in decimals:
        findings.whole_cents(rule, f"totals.{field}", value)
    sums = (
        ("BR-CO-10", "line_total (BT-106)", totals.line_total,
         _sum(line.net_amount for line in doc.lines), "the sum of the line net amounts"),
        ("BR-CO-11", "allowance_total (BT-107)", totals.allowance_total,
         _sum(a.amount for a in doc.allowances), "the sum of the document allowances"),
        ("BR-CO-13", "tax_exclusive_total (BT-109)", totals.tax_exclusive_total,
         totals.line_total - totals.allowance_total, "BT-106 − BT-107"),
        ("BR-CO-14", "vat_total (BT-110)", totals.vat_total,
         _sum(sub.tax_amount for sub in doc.tax_subtotals), "the sum of the breakdown VAT"),
        ("BR-CO-15", "tax_inclusive_total (BT-112)", totals.tax_inclusive_total,
         totals.tax_exclusive_total + totals.vat_total, "BT-109 + BT-110"),
        ("BR-CO-16", "payable_amount (BT-115)", totals.payable_amount,
         totals.tax_inclusive_total - totals.paid_amount + totals.rounding_amount,
         "BT-112 − BT-113 + BT-114"),
    )  # fmt: skip
    for rule, field, actual, expected, meaning in sums:
        if actual != expected:
            findings.add(rule, f"totals.{field}", f"{actual} ≠ {meaning} = {expected}")


# -- payment and references -------------------------------------------------------------------


def _check_payment(doc: Document, findings: _Findings) -> None:
    for i, means in enumerate(doc.payment_means):
        at = f"payment_means[{i}]"
        if means.code not in PAYMENT_MEANS_CODES:
            findings.add(
                "BR-CL-16",
                f"{at}.code (BT-81)",
                f"{means.code!r} is not a UNCL 4461 payment means code",
            )
        if means.code in CREDIT_TRANSFER_CODES and _blank(means.iban):
            findings.add(
                "BR-61",
                f"{at}.iban (BT-84)",
                f"payment means {means.code} (credit transfer) needs the payee's IBAN",
            )
        findings.max_length("BR-RO-L1016", f"{at}.text (BT-82)", means.text, 100)
        findings.max_length("BR-RO-L140", f"{at}.payment_id (BT-83)", means.payment_id, 140)
        findings.max_length("BR-RO-L208", f"{at}.account_name (BT-85)", means.account_name, 200)
    findings.max_length("BR-RO-L301", "payment_terms (BT-20)", doc.payment_terms, 300)


def _check_references(doc: Document, findings: _Findings) -> None:
    findings.max_length("BR-RO-L0303", "order_reference (BT-13)", doc.order_reference, 200)
    if len(doc.preceding_invoices) > 500:
        findings.add(
            "BR-RO-A500",
            "preceding_invoices (BG-3)",
            f"{len(doc.preceding_invoices)} preceding invoices, at most 500",
        )
    for i, preceding in enumerate(doc.preceding_invoices):
        field = f"preceding_invoices[{i}].number (BT-25)"
        if _blank(preceding.number):
            findings.add("BR-55", field, "a preceding invoice reference needs its number")
        findings.max_length("BR-RO-L156", field, preceding.number, 200)
    if len(doc.additional_references) > 50:
        findings.add(
            "BR-RO-A051",
            "additional_references (BG-24)",
            f"{len(doc.additional_references)} supporting documents, at most 50",
        )
    for i, reference in enumerate(doc.additional_references):
        at = f"additional_references[{i}]"
        findings.max_length("BR-RO-L0308", f"{at}.id (BT-122)", reference.id, 200)
        findings.max_length("BR-RO-L1020", f"{at}.description (BT-123)", reference.description, 100)
