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

`check` runs on every document of every day, so it is written for speed without changing what it
reports: one pass over the lines gathers the sums the breakdown and totals checks need, a text is
measured with normalize-space only when its raw length is over the limit, and a field name is
formatted only for a finding. `benchmarks/documents.py` times it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

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
from invoicesync_dagster.efactura.money import CENT, ZERO
from invoicesync_dagster.efactura.vat import (
    CATEGORIES_NEEDING_PARTY_IDS,
    EXEMPTION_REASONS,
    SINGLE_BREAKDOWN_CATEGORIES,
    CategorySpec,
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

RateKey = tuple[VatCategory, Decimal | None]


def _length(text: str | None) -> int:
    """Characters as the schematron counts them: after XPath normalize-space."""
    return len(_XML_SPACE.sub(" ", text).strip()) if text else 0


def _blank(text: str | None) -> bool:
    # `_length(text) == 0` without the regex: str.strip() removes any whitespace, so the
    # normalised text is empty exactly when the text is whitespace only.
    return not text or text.isspace()


def _round_money(value: Decimal) -> Decimal:
    # money.round_money; the rounding mode passed by position, which is faster than by keyword.
    return value.quantize(CENT, ROUND_HALF_UP)


def _whole_cents(value: Decimal) -> bool:
    # money.is_whole_cents, with a shortcut for the usual amount, written with exactly 2
    # decimals (same_quantum compares exponents, which is much cheaper than rounding).
    return value.same_quantum(CENT) or value == value.quantize(CENT, ROUND_HALF_UP)


def _rate_text(rate: Decimal | None) -> str:
    return "no rate" if rate is None else f"{rate.normalize():f}%"


def _key(category: VatCategory, rate: Decimal | None) -> RateKey:
    return category, (None if rate is None else rate.normalize())


# The rates in force depend on the date alone; a day's documents share a few dates.
_rates_on: Callable[[date], frozenset[Decimal]] = lru_cache(maxsize=1024)(rates_in_force)


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
        # normalize-space only shortens a text: most texts are cleared by their raw length, and
        # on the hot paths the caller tests it before formatting the field name.
        if text and len(text) > limit and _length(text) > limit:
            self.add(rule, field, f"{_length(text)} characters, at most {limit} are allowed")

    def whole_cents(self, rule: str, field: str, value: Decimal | None) -> None:
        if value is not None and not _whole_cents(value):
            self.add(rule, field, f"amount {value} has more than 2 decimals; round it to the cent")


class _LineSums(NamedTuple):
    """What the lines pass add up to, for the party id, breakdown and totals checks."""

    net_total: Decimal  # Σ BT-131
    taxable: dict[RateKey, Decimal]  # Σ BT-131 by (category, normalised rate)
    categories: set[VatCategory]


def check(document: Document, source: str = "") -> list[RuleViolation]:
    """Every CIUS-RO / EN 16931 finding this project can verify on the document (see the module
    docstring); an empty list means none. `source` is copied into each finding."""
    findings = _Findings(source)
    _check_identity(document, findings)
    _check_party(document.seller, "seller", findings)
    _check_party(document.buyer, "buyer", findings)
    _check_delivery(document, findings)
    sums = _check_lines(document, findings)
    _check_allowances(document, findings)
    _check_party_ids(document, sums.categories, findings)
    _check_breakdown(document, sums.taxable, findings)
    _check_totals(document, sums.net_total, findings)
    _check_payment(document, findings)
    _check_references(document, findings)
    return findings.items


# -- document identity ------------------------------------------------------------------------


def _check_identity(doc: Document, findings: _Findings) -> None:
    number = doc.number
    if not _DIGIT.search(number or ""):
        findings.add(
            "BR-RO-010",
            "number (BT-1)",
            f"invoice number {number!r} must contain at least one digit 0-9",
        )
    findings.max_length("BR-RO-L155", "number (BT-1)", number, 200)
    kind, totals = doc.kind, doc.totals
    if kind is DocumentKind.INVOICE and doc.invoice_type_code not in INVOICE_TYPE_CODES:
        findings.add(
            "BR-RO-020_1",
            "invoice_type_code (BT-3)",
            f"invoice type {doc.invoice_type_code!r} is not allowed on an Invoice; use "
            "380, 384, 389 or 751 (a credit note is a CreditNote document, 381)",
        )
    if not doc.lines:
        findings.add("BR-16", "lines (BG-25)", "a document needs at least one line")
    notes = doc.notes
    if len(notes) > 20:
        findings.add("BR-RO-A020", "notes (BT-22)", f"{len(notes)} notes, at most 20 allowed")
    for i, note in enumerate(notes):
        if note and len(note) > 300:
            findings.max_length("BR-RO-L302", f"notes[{i}] (BT-22)", note, 300)
    currency, tax_currency = doc.currency, doc.tax_currency
    if not _CURRENCY.match(currency):
        findings.add(
            "BR-CL-04", "currency (BT-5)", f"{currency!r} is not an ISO 4217 currency code"
        )
    if currency != RON and tax_currency != RON:
        findings.add(
            "BR-RO-030",
            "tax_currency (BT-6)",
            f"the document is in {currency}, so its VAT accounting currency must be "
            "RON: build it with the RON exchange rate",
        )
    vat_in_tax_currency = doc.tax_currency_vat_total
    if tax_currency and vat_in_tax_currency is None:
        findings.add(
            "BR-53",
            "tax_currency_vat_total (BT-111)",
            f"with tax currency {tax_currency} the VAT total in {tax_currency} must be given",
        )
    # BR-DEC-15 never fires in either rule set; UBL-DT-01 (any amount) is what reports it.
    findings.whole_cents("UBL-DT-01", "tax_currency_vat_total (BT-111)", vat_in_tax_currency)
    if doc.tax_exchange_rate is not None and vat_in_tax_currency is not None:
        expected = _round_money(totals.vat_total * doc.tax_exchange_rate)
        if vat_in_tax_currency != expected:
            findings.add(
                "IS-TAX-CURRENCY-AMOUNT",
                "tax_currency_vat_total (BT-111)",
                f"VAT in RON is {vat_in_tax_currency}, but {totals.vat_total} "
                f"× rate {doc.tax_exchange_rate} = {expected}",
            )
    owed = kind is DocumentKind.INVOICE and totals.payable_amount > 0
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
    if kind is DocumentKind.CREDIT_NOTE:
        if totals.tax_exclusive_total < 0:
            findings.add(
                "IS-CREDIT-NOTE-SIGN",
                "totals.tax_exclusive_total (BT-109)",
                f"a credit note states what is credited in positive amounts, this one totals "
                f"{totals.tax_exclusive_total}: flip the signs of its lines",
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
# Length limits of a party's own texts and of an address's, in the order they are checked.
_PARTY_LIMITS = (("name", 200), ("trading_name", 200), ("contact_name", 100), ("phone", 100),
                 ("email", 100))  # fmt: skip
_ADDRESS_LIMITS = (("street", 150), ("additional_street", 100), ("city", 50),
                   ("postal_code", 20))  # fmt: skip


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
    for name, limit in _PARTY_LIMITS:
        text = getattr(party, name)
        if text and len(text) > limit:
            findings.max_length(rule[f"{name}_length"], field[name], text, limit)
    vat_id = party.vat_id
    if vat_id and not _VAT_PREFIX.match(vat_id):
        findings.add(
            "BR-CO-09",
            field["vat_id"],
            f"VAT id {vat_id!r} must start with its country's ISO 3166 code "
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
    city = address.city
    if _blank(address.street):
        findings.add(
            rule["street"], field["street"], f"the {role}'s street (address line 1) is missing"
        )
    if _blank(city):
        findings.add(rule["city"], field["city"], f"the {role}'s city is missing")
    for name, limit in _ADDRESS_LIMITS:
        text = getattr(address, name)
        if text and len(text) > limit:
            findings.max_length(rule[f"{name}_length"], field[name], text, limit)
    country = address.country
    if not _COUNTRY.match(country):
        findings.add(
            "BR-CL-14",
            field["country"],
            f"{country!r} is not an ISO 3166-1 alpha-2 country code",
        )
    if country != "RO":
        return
    county = address.county
    if not is_county_code(county or ""):
        findings.add(
            rule["county"],
            field["county"],
            f"county {county!r} must be an ISO 3166-2:RO code such as RO-CJ, or RO-B for Bucharest",
        )
    elif county == BUCHAREST and city not in BUCHAREST_SECTORS:
        findings.add(
            rule["sector"],
            field["city"],
            f"in Bucharest the city must be the sector, SECTOR1 to SECTOR6, not "
            f"{city!r}: find the sector from the street address",
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


def _rate_problem(spec: CategorySpec, rate: Decimal | None) -> str | None:
    """Why the rate does not fit the category (BR-x-05 on a line, -06 on an allowance)."""
    category = spec.category
    if spec.rate is RateRule.POSITIVE:
        if rate is None or rate <= 0:
            return f"category {category} needs a VAT rate above 0, got {_rate_text(rate)}"
    elif spec.rate is RateRule.ZERO:
        if rate != 0:
            return f"category {category} has VAT rate 0, got {_rate_text(rate)}"
    elif spec.rate is RateRule.ABSENT and rate is not None:
        return f"category {category} (not subject to VAT) takes no VAT rate, got {_rate_text(rate)}"
    return None


def _chargeability_date(doc: Document) -> date:
    if doc.tax_point_date is not None:
        return doc.tax_point_date
    dated = [p.issue_date for p in doc.preceding_invoices if p.issue_date]
    if doc.kind is DocumentKind.CREDIT_NOTE and dated:
        return min(dated)
    return doc.issue_date


def _check_lines(doc: Document, findings: _Findings) -> _LineSums:
    rates = _rates_on(_chargeability_date(doc))
    ids_seen: set[str] = set()
    net_total = ZERO
    taxable: dict[RateKey, Decimal] = {}
    categories: set[VatCategory] = set()
    for i, line in enumerate(doc.lines):
        net, category, rate = line.net_amount, line.vat_category, line.vat_rate
        if line.id in ids_seen:
            findings.add(
                "IS-LINE-ID", f"lines[{i}].id (BT-126)", f"line id {line.id!r} is used twice"
            )
        ids_seen.add(line.id)
        name = line.name
        if _blank(name):
            findings.add("BR-25", f"lines[{i}].name (BT-153)", "the item name is missing")
        if name and len(name) > 100:
            findings.max_length("BR-RO-L1024", f"lines[{i}].name (BT-153)", name, 100)
        if line.description and len(line.description) > 200:
            findings.max_length(
                "BR-RO-L212", f"lines[{i}].description (BT-154)", line.description, 200
            )
        if line.note and len(line.note) > 300:
            findings.max_length("BR-RO-L303", f"lines[{i}].note (BT-127)", line.note, 300)
        if not _UNIT_CODE.match(line.unit_code or ""):
            findings.add(
                "BR-CL-23",
                f"lines[{i}].unit_code (BT-130)",
                f"{line.unit_code!r} is not a UN/ECE Rec 20 unit code (e.g. C62, H87)",
            )
        if line.unit_price < 0:
            findings.add(
                "BR-27",
                f"lines[{i}].unit_price (BT-146)",
                f"the item price {line.unit_price} is negative; put the sign on the "
                "quantity (storno) or issue a credit note",
            )
        if net is not None and not net.same_quantum(CENT):  # see _whole_cents
            findings.whole_cents("BR-DEC-23", f"lines[{i}].net_amount (BT-131)", net)
        allowances = ZERO
        for j, allowance in enumerate(line.allowances):
            where = f"lines[{i}].allowances[{j}]"
            allowances += allowance.amount
            findings.whole_cents("BR-DEC-RO-24", f"{where}.amount (BT-136)", allowance.amount)
            findings.max_length("BR-RO-L1022", f"{where}.reason (BT-139)", allowance.reason, 100)
            _check_allowance_reason(
                allowance.reason,
                allowance.reason_code,
                "BR-42",
                where,
                "BT-139",
                "BT-140",
                findings,
            )
        expected = _round_money(line.quantity * line.unit_price) - allowances
        if abs(expected - net) > CENT:
            findings.add(
                "IS-LINE-NET",
                f"lines[{i}].net_amount (BT-131)",
                f"net amount {net} ≠ quantity {line.quantity} × price "
                f"{line.unit_price} − allowances {allowances} = {expected}",
            )
        spec = category_spec(category)
        problem = _rate_problem(spec, rate)
        if problem:
            findings.add(f"{spec.rule_prefix}-05", f"lines[{i}].vat_rate (BT-152)", problem)
        if category is VatCategory.STANDARD and rate is not None and rate > 0 and rate not in rates:
            findings.add(
                "IS-VAT-RATE",
                f"lines[{i}].vat_rate (BT-152)",
                f"{_rate_text(rate)} is not a Romanian VAT rate on "
                f"{_chargeability_date(doc)} (rates then: "
                f"{', '.join(_rate_text(r) for r in sorted(rates))})",
                Severity.WARNING,
            )
        net_total += net
        key = _key(category, rate)
        taxable[key] = taxable.get(key, ZERO) + net
        categories.add(category)
    return _LineSums(net_total, taxable, categories)


def _check_allowance_reason(
    reason: str | None,
    code: str | None,
    rule: str,
    at: str,
    reason_term: str,
    code_term: str,
    findings: _Findings,
) -> None:
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
            allowance.reason, allowance.reason_code, "BR-33", at, "BT-97", "BT-98", findings
        )
        spec = category_spec(allowance.vat_category)
        problem = _rate_problem(spec, allowance.vat_rate)
        if problem:
            findings.add(f"{spec.rule_prefix}-06", f"{at}.vat_rate (BT-96)", problem)


# -- identifiers by VAT category --------------------------------------------------------------

# Whether a party has the identifiers a VAT category asks of it (CategorySpec.seller_ids/buyer_ids).
_SELLER_HAS: dict[PartyIds, Callable[[Party], bool]] = {
    PartyIds.ANY: lambda seller: True,
    PartyIds.VAT_OR_TAX_REGISTRATION: lambda seller: bool(
        seller.vat_id or seller.tax_registration_id
    ),
    PartyIds.VAT: lambda seller: bool(seller.vat_id),
    PartyIds.NO_VAT: lambda seller: not seller.vat_id,
}
_BUYER_HAS: dict[PartyIds, Callable[[Party], bool]] = {
    PartyIds.ANY: lambda buyer: True,
    PartyIds.VAT_OR_LEGAL_REGISTRATION: lambda buyer: (
        bool(buyer.vat_id) or bool(buyer.tax_registration_id or buyer.trade_register_number)
    ),
    PartyIds.VAT: lambda buyer: bool(buyer.vat_id),
    PartyIds.NO_VAT: lambda buyer: not buyer.vat_id,
}


def _check_party_ids(doc: Document, on_lines: set[VatCategory], findings: _Findings) -> None:
    seller, buyer = doc.seller, doc.buyer
    on_allowances = {allowance.vat_category for allowance in doc.allowances} - on_lines
    if not CATEGORIES_NEEDING_PARTY_IDS.isdisjoint(on_lines | on_allowances):
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
            _check_category_ids(category_spec(category), suffix, seller, buyer, findings)


def _check_category_ids(
    spec: CategorySpec, suffix: str, seller: Party, buyer: Party, findings: _Findings
) -> None:
    seller_ok = _SELLER_HAS[spec.seller_ids](seller)
    buyer_ok = _BUYER_HAS[spec.buyer_ids](buyer)
    category, rule = spec.category, f"{spec.rule_prefix}-{suffix}"
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


def _check_breakdown(doc: Document, taxable: dict[RateKey, Decimal], findings: _Findings) -> None:
    """`taxable`: the lines' net by (category, rate) from `_check_lines`; its allowances come off
    here, which leaves what each breakdown's taxable amount must be."""
    expected = taxable
    for allowance in doc.allowances:
        key = _key(allowance.vat_category, allowance.vat_rate)
        expected[key] = expected.get(key, ZERO) - allowance.amount
    subtotals = doc.tax_subtotals
    if not subtotals:
        findings.add("BR-CO-18", "tax_subtotals (BG-23)", "the document has no VAT breakdown")
    tolerance = rounding_tolerance(doc)
    categories = [sub.category for sub in subtotals]
    if len(categories) > 1:  # a single breakdown cannot repeat its category
        for category in sorted(set(categories)):
            if category in SINGLE_BREAKDOWN_CATEGORIES and categories.count(category) > 1:
                findings.add(
                    f"{category_spec(category).rule_prefix}-01",
                    "tax_subtotals (BG-23)",
                    f"category {category} must have exactly one VAT breakdown, it has "
                    f"{categories.count(category)}",
                )
        if VatCategory.NOT_SUBJECT in categories:
            findings.add(
                "BR-O-11",
                "tax_subtotals (BG-23)",
                "a document not subject to VAT (O) cannot have other VAT categories: "
                "issue the O supplies on a document of their own",
            )
    covered = set()
    for i, sub in enumerate(subtotals):
        category, rate, amount, tax = sub.category, sub.rate, sub.taxable_amount, sub.tax_amount
        spec = category_spec(category)
        key = _key(category, rate)
        covered.add(key)
        if amount is not None and not amount.same_quantum(CENT):  # see _whole_cents
            findings.whole_cents(
                "BR-DEC-RO-1009", f"tax_subtotals[{i}].taxable_amount (BT-116)", amount
            )
        if tax is not None and not tax.same_quantum(CENT):
            findings.whole_cents("BR-DEC-RO-1010", f"tax_subtotals[{i}].tax_amount (BT-117)", tax)
        if amount != expected.get(key, ZERO):
            findings.add(
                f"{spec.rule_prefix}-08",
                f"tax_subtotals[{i}].taxable_amount (BT-116)",
                f"taxable amount {amount} for {category} "
                f"{_rate_text(rate)} ≠ its lines minus its allowances, "
                f"{expected.get(key, ZERO)}",
            )
        _check_subtotal_tax(spec, rate, amount, tax, tolerance, i, findings)
        _check_exemption(spec, sub.exemption_code, sub.exemption_reason, i, findings)
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
    spec: CategorySpec,
    rate: Decimal | None,
    taxable: Decimal,
    tax: Decimal,
    tolerance: Decimal,
    index: int,
    findings: _Findings,
) -> None:
    category = spec.category
    field = f"tax_subtotals[{index}].tax_amount (BT-117)"
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
            f"tax_subtotals[{index}].rate (BT-119)",
            f"the {category} breakdown needs its VAT rate",
        )
        return
    computed = _round_money(taxable * rate / 100)
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
    spec: CategorySpec, code: str | None, reason: str | None, index: int, findings: _Findings
) -> None:
    category = spec.category
    field = f"tax_subtotals[{index}].exemption_code (BT-121)"
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
    findings.max_length(
        "BR-RO-L1019", f"tax_subtotals[{index}].exemption_reason (BT-120)", reason, 100
    )


# -- totals -----------------------------------------------------------------------------------

# (rule, Totals attribute, field) of the amounts that must be whole cents.
_TOTAL_AMOUNTS = (
    ("BR-DEC-RO-09", "line_total", "totals.line_total (BT-106)"),
    ("BR-DEC-RO-10", "allowance_total", "totals.allowance_total (BT-107)"),
    ("BR-DEC-RO-12", "tax_exclusive_total", "totals.tax_exclusive_total (BT-109)"),
    ("UBL-DT-01", "vat_total", "totals.vat_total (BT-110)"),  # BR-DEC-13 never fires
    ("BR-DEC-RO-14", "tax_inclusive_total", "totals.tax_inclusive_total (BT-112)"),
    ("BR-DEC-RO-16", "paid_amount", "totals.paid_amount (BT-113)"),
    ("BR-DEC-RO-17", "rounding_amount", "totals.rounding_amount (BT-114)"),
    ("BR-DEC-RO-18", "payable_amount", "totals.payable_amount (BT-115)"),
)


def _check_totals(doc: Document, line_net_total: Decimal, findings: _Findings) -> None:
    """`line_net_total`: Σ BT-131, as `_check_lines` added it up."""
    totals = doc.totals
    for rule, name, field in _TOTAL_AMOUNTS:
        value = getattr(totals, name)
        if value is not None and not value.same_quantum(CENT):  # see _whole_cents
            findings.whole_cents(rule, field, value)
    allowance_total = vat_total = ZERO
    for allowance in doc.allowances:
        allowance_total += allowance.amount
    for sub in doc.tax_subtotals:
        vat_total += sub.tax_amount
    sums = (
        ("BR-CO-10", "line_total (BT-106)", totals.line_total, line_net_total,
         "the sum of the line net amounts"),
        ("BR-CO-11", "allowance_total (BT-107)", totals.allowance_total, allowance_total,
         "the sum of the document allowances"),
        ("BR-CO-13", "tax_exclusive_total (BT-109)", totals.tax_exclusive_total,
         totals.line_total - totals.allowance_total, "BT-106 − BT-107"),
        ("BR-CO-14", "vat_total (BT-110)", totals.vat_total, vat_total,
         "the sum of the breakdown VAT"),
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
        code = means.code
        if code not in PAYMENT_MEANS_CODES:
            findings.add(
                "BR-CL-16",
                f"payment_means[{i}].code (BT-81)",
                f"{code!r} is not a UNCL 4461 payment means code",
            )
        if code in CREDIT_TRANSFER_CODES and _blank(means.iban):
            findings.add(
                "BR-61",
                f"payment_means[{i}].iban (BT-84)",
                f"payment means {code} (credit transfer) needs the payee's IBAN",
            )
        if means.text and len(means.text) > 100:
            findings.max_length("BR-RO-L1016", f"payment_means[{i}].text (BT-82)", means.text, 100)
        if means.payment_id and len(means.payment_id) > 140:
            findings.max_length(
                "BR-RO-L140", f"payment_means[{i}].payment_id (BT-83)", means.payment_id, 140
            )
        if means.account_name and len(means.account_name) > 200:
            findings.max_length(
                "BR-RO-L208", f"payment_means[{i}].account_name (BT-85)", means.account_name, 200
            )
    findings.max_length("BR-RO-L301", "payment_terms (BT-20)", doc.payment_terms, 300)


def _check_references(doc: Document, findings: _Findings) -> None:
    findings.max_length("BR-RO-L0303", "order_reference (BT-13)", doc.order_reference, 200)
    preceding_invoices = doc.preceding_invoices
    if len(preceding_invoices) > 500:
        findings.add(
            "BR-RO-A500",
            "preceding_invoices (BG-3)",
            f"{len(preceding_invoices)} preceding invoices, at most 500",
        )
    for i, preceding in enumerate(preceding_invoices):
        number = preceding.number
        if _blank(number):
            findings.add(
                "BR-55",
                f"preceding_invoices[{i}].number (BT-25)",
                "a preceding invoice reference needs its number",
            )
        if number and len(number) > 200:
            findings.max_length(
                "BR-RO-L156", f"preceding_invoices[{i}].number (BT-25)", number, 200
            )
    references = doc.additional_references
    if len(references) > 50:
        findings.add(
            "BR-RO-A051",
            "additional_references (BG-24)",
            f"{len(references)} supporting documents, at most 50",
        )
    for i, reference in enumerate(references):
        if reference.id and len(reference.id) > 200:
            findings.max_length(
                "BR-RO-L0308", f"additional_references[{i}].id (BT-122)", reference.id, 200
            )
        description = reference.description
        if description and len(description) > 100:
            findings.max_length(
                "BR-RO-L1020",
                f"additional_references[{i}].description (BT-123)",
                description,
                100,
            )
