"""The e-invoice as data: parties, lines, allowances, VAT breakdown, totals (EN 16931 / CIUS-RO).

The models check types and shapes (Decimal amounts, dates, codes upper-cased); they do not
enforce the CIUS-RO business rules (lengths, identifiers per VAT category, sums): a document that
breaks one can still be built, written and reported by `rules.check` with the rule id, the field
and the source record, so that it is held with an explanation instead of failing with a
validation traceback. BT-nn comments name the EN 16931 business terms.

`build_document(draft, expected)` is the only place that computes money:

* line net (BT-131): given by the source, or quantity × price rounded, minus line allowances;
* sum of line nets (BT-106) = Σ BT-131; tax exclusive (BT-109) = BT-106 − allowances (BT-107);
* one VAT breakdown (BG-23) per (category, rate), in order of first use: taxable (BT-116) = its
  lines − its allowances; tax (BT-117) = taxable × rate, rounded half up to the cent;
* VAT total (BT-110) = Σ BT-117; total with VAT (BT-112) = BT-109 + BT-110;
  amount due (BT-115) = BT-112 − paid (BT-113) + rounding (BT-114);
* non-RON documents: tax currency RON (BT-6) and the VAT total in RON (BT-111) = BT-110 × the
  exchange rate, rounded half up (the rate itself is chosen by the caller, e.g. BNR's).

Reconciliation with the source system (`ExpectedTotals`, e.g. Stripe's `tax` and `total`): the
source rounds each line's tax on its own, so its sums can differ from ours by rounding. A
difference within `rounding_tolerance` (one cent per line and allowance, at most
`MAX_ROUNDING_RESIDUAL`) is kept, never dropped: a VAT difference goes into the largest taxed
breakdown (the source's VAT total wins), a total difference into the rounding amount BT-114
(the source's total is what is due); each is recorded in `Document.adjustments`. Anything larger
raises `ReconciliationError` naming both figures and the source.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator, model_validator

from invoicesync_dagster.efactura.counties import BUCHAREST
from invoicesync_dagster.efactura.money import CENT, ZERO, round_money, to_decimal
from invoicesync_dagster.efactura.vat import EXEMPTION_REASONS, VatCategory, category_spec

CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:efactura.mfinante.ro:CIUS-RO:1.0.1"
RON = "RON"
ITEM_NAME_MAX = 100  # BT-153, BR-RO-L1024
ITEM_DESCRIPTION_MAX = 200  # BT-154, BR-RO-L212
MAX_ROUNDING_RESIDUAL = Decimal("0.50")

Amount = Annotated[Decimal, BeforeValidator(to_decimal)]


def _optional_decimal(value: Any) -> Any:
    return None if value is None else to_decimal(value)


OptionalAmount = Annotated[Decimal | None, BeforeValidator(_optional_decimal)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


M = TypeVar("M", bound=_Model)


@cache
def _fields(model: type[_Model]) -> tuple[frozenset[str], dict[str, Any]]:
    """The required field names and the defaults of the others."""
    required = frozenset(name for name, field in model.model_fields.items() if field.is_required())
    defaults = {
        name: field.get_default(call_default_factory=True)
        for name, field in model.model_fields.items()
        if not field.is_required()
    }
    return required, defaults


def assemble(model: type[M], **values: Any) -> M:
    """`model.model_construct(**values)` for values that are already valid, without pydantic's
    generic alias handling (a document build makes tens of these: measured 4 µs against 14)."""
    required, defaults = _fields(model)
    if not required <= values.keys():
        missing = ", ".join(sorted(required - values.keys()))
        raise TypeError(f"{model.__name__} needs {missing}")
    instance = model.__new__(model)
    object.__setattr__(instance, "__dict__", {**defaults, **values})
    object.__setattr__(instance, "__pydantic_fields_set__", set(values))
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


# -- parties ----------------------------------------------------------------------------------

_SECTOR = re.compile(r"\bsect(?:or(?:ul)?)?\.?\s*([1-6])\b", re.IGNORECASE)


def bucharest_sector(city: str) -> str | None:
    """`Sector 3`, `sectorul 3`, `Sect. 3`, `București, Sector 3` or `SECTOR3` → `SECTOR3`
    (the code BR-RO-100/101 demand); None when no sector can be read (e.g. just `București`)."""
    plain = unicodedata.normalize("NFKD", city).encode("ascii", "ignore").decode()
    found = _SECTOR.search(plain)
    return f"SECTOR{found.group(1)}" if found else None


class Address(_Model):
    street: str = ""  # BT-35/50, address line 1 (required by BR-RO-081/082)
    additional_street: str | None = None  # BT-36/51
    city: str = ""  # BT-37/52 (required by BR-RO-091/092); SECTOR1..6 in Bucharest
    postal_code: str | None = None  # BT-38/53
    # BT-39/54: in Romania the ISO 3166-2:RO code (RO-CJ, RO-B for Bucharest, BR-RO-110/111);
    # abroad the region/state as the buyer writes it, or nothing.
    county: str | None = None
    country: str  # BT-40/55, ISO 3166-1 alpha-2

    @model_validator(mode="before")
    @classmethod
    def _romanian_codes(cls, data: Any) -> Any:
        """Upper-case country and Romanian county codes; write a Bucharest sector as SECTORn."""
        if not isinstance(data, Mapping) or not isinstance(data.get("country"), str):
            return data
        data = {**data, "country": data["country"].strip().upper()}
        county = data.get("county")
        if data["country"] == "RO" and isinstance(county, str) and county.strip():
            data["county"] = county.strip().upper()
            city = data.get("city")
            if data["county"] == BUCHAREST and isinstance(city, str):
                data["city"] = bucharest_sector(city) or city
        return data


class Party(_Model):
    """Seller (BG-4) or buyer (BG-7).

    Identifiers, as written: `vat_id` → BT-31/BT-48 (PartyTaxScheme, scheme VAT, with its
    country prefix: RO12345674, DE123456789). `tax_registration_id` → for the seller BT-32
    (PartyTaxScheme, scheme TAX: the CUI of a seller that is not a VAT payer), for the buyer
    BT-47 (PartyLegalEntity/CompanyID: the CUI, the CNP, or the B2C placeholder 0000000000000).
    `trade_register_number` → for the seller BT-30 (PartyLegalEntity/CompanyID, J40/123/2020);
    for the buyer it is written as BT-47 only when there is no `tax_registration_id`
    (EN 16931 has one legal registration slot for the buyer).
    """

    name: str  # BT-27/44, legal name
    trading_name: str | None = None  # BT-28/45
    vat_id: str | None = None
    tax_registration_id: str | None = None
    trade_register_number: str | None = None
    address: Address
    contact_name: str | None = None  # BT-41/56
    phone: str | None = None  # BT-42/57
    email: str | None = None  # BT-43/58

    @field_validator("vat_id")
    @classmethod
    def _compact_vat_id(cls, value: str | None) -> str | None:
        return re.sub(r"[\s.\-]", "", value).upper() if value else None


# -- lines and allowances ---------------------------------------------------------------------


class LineAllowance(_Model):
    """A line-level allowance (BG-27), e.g. a discount on that line only."""

    amount: Amount  # BT-136
    reason: str | None = None  # BT-139
    reason_code: str | None = None  # BT-140, UNCL 5189 (95 = discount)


def split_item_name(name: str, description: str | None = None) -> tuple[str, str | None]:
    """Fit a product name into BT-153 (≤ 100 characters, BR-RO-L1024).

    A longer name is cut at the last space within 100 characters (or at 100 if there is
    none); the rest of it starts the item description (BT-154), followed by the original
    description after ` | `. Only if that exceeds 200 characters (BR-RO-L212) is the
    description cut to 199 characters plus `…`.
    """
    name = " ".join(name.split())
    if len(name) <= ITEM_NAME_MAX:
        return name, description
    cut = name.rfind(" ", 0, ITEM_NAME_MAX + 1)
    if cut <= 0:
        cut = ITEM_NAME_MAX
    head, rest = name[:cut].rstrip(), name[cut:].strip()
    extra = " | ".join(part for part in (rest, (description or "").strip()) if part)
    if len(extra) > ITEM_DESCRIPTION_MAX:
        extra = extra[: ITEM_DESCRIPTION_MAX - 1].rstrip() + "…"
    return head, extra


def _amount_of(item: Any) -> Decimal:
    return to_decimal(item["amount"] if isinstance(item, Mapping) else item.amount)


class InvoiceLine(_Model):
    """An invoice or credit note line (BG-25). `net_amount` defaults to quantity × price
    rounded to the cent, minus the line allowances."""

    id: str  # BT-126
    name: str  # BT-153, ≤ 100 characters (see split_item_name)
    description: str | None = None  # BT-154, ≤ 200
    note: str | None = None  # BT-127, ≤ 300
    seller_item_id: str | None = None  # BT-155
    quantity: Amount  # BT-129 (not limited to 2 decimals)
    unit_code: str = "C62"  # BT-130, UN/ECE Rec 20: C62 one, H87 piece, HUR hour, MON month
    unit_price: Amount  # BT-146, net price, not rounded, never negative (BR-27)
    net_amount: Amount  # BT-131
    vat_category: VatCategory  # BT-151
    vat_rate: OptionalAmount = None  # BT-152, a percentage; absent for O
    exemption_code: str | None = None  # BT-121 of its breakdown, for E/AE/K/G/O
    exemption_reason: str | None = None  # BT-120 of its breakdown (default: the code's text)
    allowances: tuple[LineAllowance, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _net_from_price(cls, data: Any) -> Any:
        if (
            isinstance(data, Mapping)
            and data.get("net_amount") is None
            and "quantity" in data
            and "unit_price" in data
        ):
            gross = round_money(to_decimal(data["quantity"]) * to_decimal(data["unit_price"]))
            allowances = sum((_amount_of(a) for a in data.get("allowances") or ()), ZERO)
            data = {**data, "net_amount": gross - allowances}
        return data

    @field_validator("unit_code", "exemption_code")
    @classmethod
    def _upper_code(cls, value: str | None) -> str | None:
        return value.upper() if value else value


class DocumentAllowance(_Model):
    """A document-level allowance (BG-20), e.g. a Stripe coupon on the whole invoice. It lowers
    the taxable amount of its VAT category and rate."""

    amount: Amount  # BT-92
    reason: str | None = None  # BT-97
    reason_code: str | None = None  # BT-98, UNCL 5189 (95 = discount)
    vat_category: VatCategory  # BT-95
    vat_rate: OptionalAmount = None  # BT-96; absent for O


# -- breakdown, totals, references ------------------------------------------------------------


class TaxSubtotal(_Model):
    """One VAT breakdown (BG-23)."""

    category: VatCategory  # BT-118
    rate: OptionalAmount = None  # BT-119; absent for O
    taxable_amount: Amount  # BT-116
    tax_amount: Amount  # BT-117
    exemption_code: str | None = None  # BT-121
    exemption_reason: str | None = None  # BT-120


class Totals(_Model):
    """Document totals (BG-22), all in the document currency."""

    line_total: Amount  # BT-106, sum of line net amounts
    allowance_total: Amount = ZERO  # BT-107
    tax_exclusive_total: Amount  # BT-109
    vat_total: Amount  # BT-110
    tax_inclusive_total: Amount  # BT-112
    paid_amount: Amount = ZERO  # BT-113
    rounding_amount: Amount = ZERO  # BT-114
    payable_amount: Amount  # BT-115


class PaymentMeans(_Model):
    """BG-16. Codes (UNCL 4461): 30 credit transfer, 31 debit transfer, 42 payment to bank
    account, 48 bank card, 54 credit card, 55 debit card, 58 SEPA credit transfer, 59 SEPA
    direct debit, ZZZ other. 30 and 58 need the payee's IBAN (BR-61)."""

    code: str = "30"  # BT-81
    text: str | None = None  # BT-82, ≤ 100
    payment_id: str | None = None  # BT-83, remittance information, ≤ 140
    iban: str | None = None  # BT-84
    account_name: str | None = None  # BT-85, ≤ 200

    @field_validator("iban")
    @classmethod
    def _compact_iban(cls, value: str | None) -> str | None:
        return re.sub(r"\s", "", value).upper() if value else None


class PrecedingInvoice(_Model):
    """BG-3: the invoice a credit note corrects."""

    number: str  # BT-25
    issue_date: date | None = None  # BT-26


class DocumentReference(_Model):
    """An additional supporting document (BG-24), e.g. the Stripe charge id."""

    id: str  # BT-122
    description: str | None = None  # BT-123, ≤ 100


class InvoicePeriod(_Model):
    start: date | None = None  # BT-73
    end: date | None = None  # BT-74


class Delivery(_Model):
    """BG-13/BG-15, needed for intra-community supplies (K: BR-IC-11/12)."""

    delivery_date: date | None = None  # BT-72, actual delivery date
    address: Address | None = None  # BG-15


class Adjustment(_Model):
    """A rounding difference to the source system that was kept in the document."""

    field: str  # e.g. "BT-117 S 21" or "BT-114"
    amount: Amount
    reason: str


class DocumentKind(StrEnum):
    INVOICE = "invoice"  # UBL Invoice, type 380 unless set otherwise
    CREDIT_NOTE = "credit_note"  # UBL CreditNote, type 381, positive amounts


class DocumentDraft(_Model):
    """Everything about a document except the computed breakdown and totals."""

    kind: DocumentKind = DocumentKind.INVOICE
    number: str  # BT-1, series + number, ≥ 1 digit, ≤ 200
    issue_date: date  # BT-2
    due_date: date | None = None  # BT-9 (a credit note writes it in its payment means)
    # BT-7, when VAT became chargeable on another day than the issue date (e.g. a Stripe invoice
    # finalized in July and paid, hence documented, in August keeps July's rate)
    tax_point_date: date | None = None
    invoice_type_code: str = "380"  # BT-3 of an Invoice: 380, 384, 389 or 751 (BR-RO-020)
    currency: str = RON  # BT-5
    tax_exchange_rate: OptionalAmount = None  # RON per 1 unit of `currency`, when not RON
    seller: Party
    buyer: Party
    lines: tuple[InvoiceLine, ...]
    allowances: tuple[DocumentAllowance, ...] = ()
    notes: tuple[str, ...] = ()  # BT-22, ≤ 20 of ≤ 300 characters
    invoice_period: InvoicePeriod | None = None  # BG-14
    delivery: Delivery | None = None
    payment_means: tuple[PaymentMeans, ...] = ()
    payment_terms: str | None = None  # BT-20
    paid_amount: Amount = ZERO  # BT-113, already paid (e.g. by card through Stripe)
    preceding_invoices: tuple[PrecedingInvoice, ...] = ()
    buyer_reference: str | None = None  # BT-10
    order_reference: str | None = None  # BT-13
    additional_references: tuple[DocumentReference, ...] = ()

    @field_validator("currency")
    @classmethod
    def _upper_currency(cls, value: str) -> str:
        return value.upper()

    @property
    def type_code(self) -> str:
        return "381" if self.kind is DocumentKind.CREDIT_NOTE else self.invoice_type_code


class Document(DocumentDraft):
    """A complete document, as `build_document` computes it; what `ubl` writes."""

    tax_subtotals: tuple[TaxSubtotal, ...]
    totals: Totals
    tax_currency: str | None = None  # BT-6, RON when the document currency is not RON
    tax_currency_vat_total: OptionalAmount = None  # BT-111, VAT total in RON
    adjustments: tuple[Adjustment, ...] = ()


# -- building ---------------------------------------------------------------------------------


class BuildError(ValueError):
    """The draft cannot be turned into a consistent document; the message says why."""


class ReconciliationError(BuildError):
    """Our totals differ from the source system's by more than rounding."""


class ExpectedTotals(_Model):
    """The source system's own figures, which the document must match to the cent."""

    total: Amount  # total with VAT (Stripe `total`)
    vat_total: OptionalAmount = None  # total VAT (Stripe's sum of tax amounts), if it has one


def rounding_tolerance(draft: DocumentDraft) -> Decimal:
    """How far the source's sums may differ from ours and still count as rounding: each line
    and allowance amount was rounded to the cent on its own (at most half a cent each); we
    accept a cent each, never more than MAX_ROUNDING_RESIDUAL."""
    return min(CENT * (len(draft.lines) + len(draft.allowances)), MAX_ROUNDING_RESIDUAL)


def _rate_key(rate: Decimal | None) -> Decimal | None:
    return None if rate is None else rate.normalize()


def _describe(category: VatCategory, rate: Decimal | None) -> str:
    return f"{category.value} {rate.normalize():f}%" if rate is not None else category.value


def _breakdown(draft: DocumentDraft, who: str) -> list[TaxSubtotal]:
    # Keyed by the normalised rate so that 21 and 21.00 are one breakdown; the rate is kept as
    # first written.
    taxable: dict[tuple[VatCategory, Decimal | None], Decimal] = {}
    rates: dict[tuple[VatCategory, Decimal | None], Decimal | None] = {}
    exemptions: dict[tuple[VatCategory, Decimal | None], dict[str, str | None]] = {}
    for line in draft.lines:
        key = (line.vat_category, _rate_key(line.vat_rate))
        rates.setdefault(key, line.vat_rate)
        taxable[key] = taxable.get(key, ZERO) + line.net_amount
        if line.exemption_code or line.exemption_reason:
            found = exemptions.setdefault(key, {})
            found.setdefault(line.exemption_code or "", line.exemption_reason)
    for allowance in draft.allowances:
        key = (allowance.vat_category, _rate_key(allowance.vat_rate))
        rates.setdefault(key, allowance.vat_rate)
        taxable[key] = taxable.get(key, ZERO) - allowance.amount
    subtotals = []
    for key, amount in taxable.items():
        category, rate = key[0], rates[key]
        found = exemptions.get(key, {})
        if len(found) > 1:
            raise BuildError(
                f"{who}: the lines in VAT category {_describe(category, rate)} "
                f"give different exemption codes ({', '.join(sorted(found))}); one breakdown "
                "has one exemption reason: split the document or use one code"
            )
        code, reason = next(iter(found.items()), ("", None))
        spec = category_spec(category)
        if spec.exemption_required and not code:
            code = spec.default_exemption_code or ""
        if code and not reason and spec.exemption_required:
            reason = EXEMPTION_REASONS.get(code)
        tax = ZERO if rate is None else round_money(amount * rate / 100)
        subtotals.append(
            assemble(
                TaxSubtotal,
                category=category,
                rate=rate,
                taxable_amount=round_money(amount),
                tax_amount=tax,
                exemption_code=code or None,
                exemption_reason=reason,
            )
        )
    return subtotals


def _allocate_vat_residual(
    subtotals: list[TaxSubtotal], residual: Decimal, draft: DocumentDraft, who: str
) -> Adjustment:
    taxed = [i for i, sub in enumerate(subtotals) if sub.rate is not None and sub.rate > 0]
    if not taxed:
        raise ReconciliationError(
            f"{who}: the source charged {residual} {draft.currency} of VAT "
            "but no line is in a taxed category; check the VAT category of its lines"
        )
    # The largest taxable base absorbs the cent: relative to it the change is smallest.
    index = max(taxed, key=lambda i: (abs(subtotals[i].taxable_amount), -i))
    target = subtotals[index]
    subtotals[index] = target.model_copy(update={"tax_amount": target.tax_amount + residual})
    return Adjustment(
        field=f"BT-117 {_describe(target.category, target.rate)}",
        amount=residual,
        reason="VAT rounding difference to the source system's VAT total "
        "(it rounds each line's tax separately); the source's figure is used",
    )


def build_document(
    draft: DocumentDraft, expected: ExpectedTotals | None = None, *, source: str = ""
) -> Document:
    """The document with its VAT breakdown and totals computed from the lines (see the module
    docstring), reconciled to `expected` when given. Raises BuildError / ReconciliationError,
    whose messages name the document and `source` (e.g. the Stripe invoice id)."""
    who = f"document {draft.number}" + (f" (from {source})" if source else "")
    if draft.currency != RON and draft.tax_exchange_rate is None:
        raise BuildError(
            f"{who} is in {draft.currency}: its VAT must also be stated in "
            "RON (BR-RO-030), so pass tax_exchange_rate (RON per 1 "
            f"{draft.currency}, e.g. BNR's rate)"
        )
    subtotals = _breakdown(draft, who)
    adjustments: list[Adjustment] = []
    tolerance = rounding_tolerance(draft)

    vat_total = sum((sub.tax_amount for sub in subtotals), ZERO)
    if expected is not None and expected.vat_total is not None:
        residual = expected.vat_total - vat_total
        if abs(residual) > tolerance:
            raise ReconciliationError(
                f"{who}: the source's VAT total {expected.vat_total} "
                f"{draft.currency} differs from the VAT computed from the lines, {vat_total}, by "
                f"{residual}, more than rounding explains (tolerance {tolerance}); check the "
                "lines' VAT rates and amounts"
            )
        if residual:
            adjustments.append(_allocate_vat_residual(subtotals, residual, draft, who))
            vat_total = expected.vat_total

    line_total = sum((line.net_amount for line in draft.lines), ZERO)
    allowance_total = sum((allowance.amount for allowance in draft.allowances), ZERO)
    tax_exclusive = line_total - allowance_total
    tax_inclusive = tax_exclusive + vat_total
    rounding = ZERO
    if expected is not None:
        residual = expected.total - tax_inclusive
        if abs(residual) > tolerance:
            raise ReconciliationError(
                f"{who}: the source's total {expected.total} {draft.currency} "
                f"differs from the total computed from the lines, {tax_inclusive}, by {residual}, "
                f"more than rounding explains (tolerance {tolerance}); check the lines, "
                "discounts and taxes taken from the source"
            )
        if residual:
            rounding = residual
            adjustments.append(
                Adjustment(
                    field="BT-114",
                    amount=residual,
                    reason="rounding difference to the source system's total, "
                    "written as the payable rounding amount",
                )
            )
    totals = assemble(
        Totals,
        line_total=line_total,
        allowance_total=allowance_total,
        tax_exclusive_total=tax_exclusive,
        vat_total=vat_total,
        tax_inclusive_total=tax_inclusive,
        paid_amount=draft.paid_amount,
        rounding_amount=rounding,
        payable_amount=tax_inclusive - draft.paid_amount + rounding,
    )
    tax_currency = tax_currency_vat_total = None
    if draft.tax_exchange_rate is not None and draft.currency != RON:
        tax_currency = RON
        tax_currency_vat_total = round_money(vat_total * draft.tax_exchange_rate)
    # The draft and every computed part are already validated: assemble without re-checking.
    return assemble(
        Document,
        **dict(draft),
        tax_subtotals=tuple(subtotals),
        totals=totals,
        tax_currency=tax_currency,
        tax_currency_vat_total=tax_currency_vat_total,
        adjustments=tuple(adjustments),
    )


def used_categories(document: DocumentDraft) -> set[VatCategory]:
    """Every VAT category on the document's lines and allowances."""
    found: Iterable[VatCategory] = (line.vat_category for line in document.lines)
    return set(found) | {allowance.vat_category for allowance in document.allowances}
