"""Stripe objects → document drafts (EFACTURA.md §4). Pure: dicts as Stripe's API returns them in,
`DocumentDraft` + the Stripe figures it must tie to out; `model.build_document` does the money.

VAT, by buyer (the `customer_tax_profiles` classification):

* Romanian company or person: category S at the Romanian rate. When Stripe computed tax, the rate
  is the Romanian rate in force on the day Stripe finalized the invoice that reproduces Stripe's
  tax on the line to the cent (the standard rate first, then the reduced ones), and Stripe's
  amounts win over ours when they differ by rounding only; a tax no Romanian rate explains holds
  the document. Without any Stripe tax (Stripe Tax off, a bare charge), Stripe's amounts are
  taken as VAT-inclusive prices, the Romanian retail convention, and the VAT is extracted at the
  standard rate of the day, so the document still totals what the buyer paid.
* EU business with a VAT number: reverse charge, AE with VATEX-EU-AE.
* Outside the EU: not subject, O with VATEX-EU-O (services whose place of supply is abroad,
  the default), or export, G with VATEX-EU-G (`NON_EU_VAT_TREATMENT=export`, for goods). An O
  document carries no VAT identifiers (BR-O-02..04): the seller is named by its CUI (BT-32).
* Zero-VAT categories must have no Stripe tax: Stripe charging VAT to such a buyer holds the
  document (the buyer's classification or Stripe's tax settings are wrong).
* Unknown buyers (a business without a CUI, an EU consumer, no country) are never guessed: the
  document is held with the profile's reason and fix.

Text: Stripe's free text (descriptions, memos, names and addresses typed at checkout) may hold
characters XML 1.0 forbids (C0 controls other than tab, newline and CR, U+FFFE/U+FFFF, lone
surrogates). `clean_text` turns each into a space while mapping, so that a document that got a
number can always be written. A Bucharest address is written with its sector (SECTOR1..6,
BR-RO-100/101), read from the city, the other address fields or the postal code.

Credit notes take their rates and buyer from the document they correct (`preceding`): a refund
of a July 2025 invoice carries July's 19 %.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from invoicesync_dagster.efactura.counties import BUCHAREST as BUCHAREST_COUNTY
from invoicesync_dagster.efactura.customers import (
    EU_COUNTRIES,
    BuyerProfile,
    Classification,
    county_from_state,
)
from invoicesync_dagster.efactura.model import (
    RON,
    Address,
    Document,
    DocumentDraft,
    DocumentKind,
    DocumentReference,
    ExpectedTotals,
    InvoiceLine,
    LineAllowance,
    Party,
    PaymentMeans,
    PrecedingInvoice,
    assemble,
    bucharest_sector,
    split_item_name,
)
from invoicesync_dagster.efactura.money import CENT, ZERO, currency_exponent, round_money
from invoicesync_dagster.efactura.vat import VatCategory, rates_in_force, standard_rate

Obj = Mapping[str, Any]
BUCHAREST = ZoneInfo("Europe/Bucharest")
B2C_PLACEHOLDER = "0000000000000"
DISCOUNT_REASON = "Reducere"
DISCOUNT_CODE = "95"  # UNCL 5189: discount
PRICE_DECIMALS = Decimal("0.0001")
# What XML 1.0 does not allow in text: C0 controls except tab, newline and carriage return, lone
# surrogates (JSON's "\ud800" decodes to one), U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Bucharest postal codes are 0Snnnn, S being the sector.
_BUCHAREST_POSTAL_CODE = re.compile(r"^0([1-6])\d{4}$")


class MappingError(ValueError):
    """A Stripe object that cannot become a correct document; the message names it and the fix."""


class NonEuTreatment(StrEnum):
    NOT_SUBJECT = "not_subject"  # O, VATEX-EU-O
    EXPORT = "export"  # G, VATEX-EU-G


class DocumentPolicy(BaseModel):
    """How this company documents its sales: who sells, the series, the non-EU treatment."""

    model_config = ConfigDict(frozen=True)

    seller: Party  # with vat_id RO… for a VAT payer
    series: str
    non_eu: NonEuTreatment = NonEuTreatment.NOT_SUBJECT
    iban: str | None = None
    # DEFAULT_TAX_RATE: replaces the standard rate of the date where Stripe computed no tax.
    standard_rate: Decimal | None = None


class Buyer(BaseModel):
    model_config = ConfigDict(frozen=True)

    party: Party
    classification: Classification
    customer_id: str | None = None
    hold_reason: str | None = None  # set: no document may be filed for this buyer


@dataclass(frozen=True, slots=True)
class Mapped:
    """A draft and the Stripe figures it must tie to (`build_document(draft, expected)`)."""

    draft: DocumentDraft
    expected: ExpectedTotals
    notes: tuple[str, ...] = ()  # how the figures were read, e.g. VAT extracted from prices


@dataclass(frozen=True, slots=True)
class _Treatment:
    category: VatCategory
    exemption_code: str | None = None
    romanian_vat: bool = False


_ROMANIAN = _Treatment(VatCategory.STANDARD, romanian_vat=True)
_REVERSE_CHARGE = _Treatment(VatCategory.REVERSE_CHARGE, "VATEX-EU-AE")
_EXPORT = _Treatment(VatCategory.EXPORT, "VATEX-EU-G")
_NOT_SUBJECT = _Treatment(VatCategory.NOT_SUBJECT, "VATEX-EU-O")


# -- text and addresses -----------------------------------------------------------------------


def clean_text(value: Any) -> str:
    """Stripe free text as a document may hold it: characters XML 1.0 forbids become spaces."""
    return "" if value is None else _NOT_XML.sub(" ", str(value))


def _clean(value: Any) -> str | None:
    text = clean_text(value).strip()
    return text or None


def _romanian_city_county(
    city: str, county: str | None, postal_code: str | None, *hints: str | None
) -> tuple[str, str | None]:
    """City and county of a Romanian address as CIUS-RO wants them. In Bucharest the city is the
    sector (BR-RO-100/101): from the city (`Sector 3`), else the other address fields (`hints`:
    state, street), else the postal code; an address in `București` without a county is in RO-B.
    """
    if county is None and (bucharest_sector(city) or county_from_state(city) == BUCHAREST_COUNTY):
        county = BUCHAREST_COUNTY
    if county != BUCHAREST_COUNTY or bucharest_sector(city):
        return city, county
    for hint in hints:
        sector = bucharest_sector(hint) if hint else None
        if sector:
            return sector, county
    postal = _BUCHAREST_POSTAL_CODE.match((postal_code or "").replace(" ", ""))
    return (f"SECTOR{postal.group(1)}" if postal else city), county


def _address(
    *,
    street: str | None,
    city: str | None,
    postal_code: str | None,
    county: str | None,
    country: str,
    hints: Sequence[str | None] = (),
) -> Address:
    street, city_text = _clean(street) or "", _clean(city) or ""
    postal_code = _clean(postal_code)
    if country == "RO":
        city_text, county = _romanian_city_county(city_text, county, postal_code, *hints, street)
    else:
        county = None
    return Address(
        street=street, city=city_text, postal_code=postal_code, county=county, country=country
    )


# -- parties ----------------------------------------------------------------------------------


def bucharest_date(moment: datetime) -> date:
    return moment.astimezone(BUCHAREST).date()


def unix_date(unix: int) -> date:
    return bucharest_date(datetime.fromtimestamp(unix, UTC))


def buyer_from_profile(profile: BuyerProfile) -> Buyer:
    """The buyer of a Stripe customer's documents, from its `customer_tax_profiles` row."""
    classification = profile.classification
    country = (profile.country or ("RO" if classification.value.startswith("ro_") else "")).upper()
    address = _address(
        street=profile.street,
        city=profile.city,
        postal_code=profile.postal_code,
        county=profile.county_code,
        country=country or "RO",
    )
    name = _clean(profile.legal_name or profile.stripe_name or profile.email) or profile.customer_id
    fields: dict[str, Any] = {"name": name, "address": address, "email": _clean(profile.email)}
    hold = None
    if classification is Classification.RO_COMPANY:
        cui = profile.cui or ""
        fields["vat_id"] = f"RO{cui}" if profile.vat_payer is not False else None
        fields["tax_registration_id"] = cui
        fields["trade_register_number"] = _clean(profile.registration_number)
        if profile.submission_blocked or profile.invalid_cui:
            hold = profile.block_reason or f"the buyer's CUI {cui} is invalid"
    elif classification is Classification.RO_PERSON:
        fields["tax_registration_id"] = profile.cnp or B2C_PLACEHOLDER
    elif classification is Classification.EU_BUSINESS:
        fields["vat_id"] = _clean(profile.vat_number)
    elif classification is Classification.NON_EU:
        # BT-48 must start with a country code (BR-CO-09): a tax id without one (a US EIN)
        # is the buyer's legal registration id (BT-47) instead.
        number = _clean(profile.vat_number)
        key = "vat_id" if number and number[:2].isalpha() else "tax_registration_id"
        fields[key] = number
    else:
        hold = (
            f"customer {profile.customer_id} ({profile.email or 'no email'}) cannot be "
            f"identified as a buyer: {profile.classification_reason}"
        )
    return Buyer(
        party=Party(**fields),
        classification=classification,
        customer_id=profile.customer_id,
        hold_reason=hold,
    )


def buyer_from_billing(charge: Obj) -> Buyer:
    """The buyer of a charge made without a Stripe customer: its billing details, a private
    person (identified by the B2C placeholder in Romania)."""
    details = charge.get("billing_details") or {}
    address = details.get("address") or {}
    country = str(_clean(address.get("country")) or "").upper()
    email = _clean(details.get("email"))
    name = _clean(details.get("name")) or email or _clean(charge.get("receipt_email"))
    state = _clean(address.get("state"))
    party_address = _address(
        street=", ".join(p for p in (address.get("line1"), address.get("line2")) if p),
        city=address.get("city"),
        postal_code=address.get("postal_code"),
        county=county_from_state(state),
        country=country or "RO",
        hints=(state,),
    )
    fields: dict[str, Any] = {
        "name": name or "Persoană fizică",
        "address": party_address,
        "email": email,
    }
    hold = None
    if country == "RO":
        classification = Classification.RO_PERSON
        fields["tax_registration_id"] = B2C_PLACEHOLDER
    elif country in EU_COUNTRIES:
        classification = Classification.UNKNOWN
        hold = (
            f"charge {charge['id']} was paid by a consumer in {country}: an EU consumer's VAT "
            "is settled through OSS, outside e-Factura; document it outside invoicesync, or "
            "attach the charge to a Stripe customer with a VAT number if it is a business"
        )
    elif country:
        classification = Classification.NON_EU
    else:
        classification = Classification.UNKNOWN
        hold = (
            f"charge {charge['id']} has no customer and no billing country: collect billing "
            "addresses in Stripe (Checkout: billing_address_collection=required), or attach "
            "the charge to a customer"
        )
    return Buyer(party=Party(**fields), classification=classification, hold_reason=hold)


def _treatment(buyer: Buyer, policy: DocumentPolicy, who: str) -> _Treatment:
    if buyer.hold_reason:
        raise MappingError(f"{who}: {buyer.hold_reason}")
    match buyer.classification:
        case Classification.RO_COMPANY | Classification.RO_PERSON:
            return _ROMANIAN
        case Classification.EU_BUSINESS:
            return _REVERSE_CHARGE
        case Classification.NON_EU if policy.non_eu is NonEuTreatment.EXPORT:
            return _EXPORT
        case Classification.NON_EU:
            return _NOT_SUBJECT
    raise MappingError(f"{who}: buyer classification {buyer.classification} has no VAT rule")


def _parties(buyer: Buyer, policy: DocumentPolicy, category: VatCategory) -> dict[str, Party]:
    seller, party = policy.seller, buyer.party
    if category is VatCategory.NOT_SUBJECT:
        # BR-O-02/03/04: no VAT identifiers at all; the seller is named by its bare CUI.
        cui = (seller.vat_id or "").removeprefix("RO") or seller.tax_registration_id
        seller = seller.model_copy(update={"vat_id": None, "tax_registration_id": cui})
        party = party.model_copy(update={"vat_id": None})
    return {"seller": seller, "buyer": party}


# -- amounts ----------------------------------------------------------------------------------


def _money(minor: int | str | Decimal, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-currency_exponent(currency))


def _extract_net(gross: Decimal, rate: Decimal) -> Decimal:
    return round_money(gross * 100 / (100 + rate))


def _pick_rate(taxable: Decimal, tax: Decimal, allowed: Sequence[Decimal]) -> Decimal | None:
    """The rate among `allowed` (preferred first) that turns `taxable` into Stripe's `tax`."""
    for rate in allowed:
        if abs(round_money(taxable * rate / 100) - tax) <= CENT:
            return rate
    return None


def _romanian_rates(chargeable_on: date, override: Decimal | None = None) -> list[Decimal]:
    """The rates a Romanian line may carry, the one to use without Stripe tax first."""
    standard = standard_rate(chargeable_on) if override is None else override
    others = sorted(rates_in_force(chargeable_on) - {standard}, reverse=True)
    return [standard, *others]


@dataclass(frozen=True, slots=True)
class _StripeLine:
    """A Stripe invoice or credit note line reduced to what the document needs."""

    stripe_id: str
    description: str
    quantity: Decimal
    unit_amount: Decimal  # per unit, major units, before discounts, as Stripe prices it
    amount: Decimal  # quantity × unit amount as Stripe rounded it
    discounts: Decimal  # discount amounts allocated to this line
    taxable: Decimal | None  # Stripe's taxable amount, None without a tax entry
    tax: Decimal | None  # Stripe's tax on the line, None without a tax entry
    inclusive: bool = False


def _stripe_lines(lines: Sequence[Obj], currency: str) -> list[_StripeLine]:
    result = []
    for line in lines:
        quantity = Decimal(str(line.get("quantity_decimal") or line.get("quantity") or 1))
        unit = (line.get("pricing") or {}).get("unit_amount_decimal") or line.get(
            "unit_amount_decimal"
        )
        if unit is None:
            unit = line.get("unit_amount")
        amount = _money(int(line.get("amount") or 0), currency)
        unit_amount = _money(unit, currency) if unit is not None else amount / (quantity or 1)
        discounts = sum(
            (_money(int(d["amount"]), currency) for d in line.get("discount_amounts") or ()), ZERO
        )
        taxes = line.get("taxes") or ()
        taxable = tax = None
        if taxes:
            tax = sum((_money(int(t.get("amount") or 0), currency) for t in taxes), ZERO)
            taxable = _money(int(taxes[0].get("taxable_amount") or 0), currency)
        result.append(
            _StripeLine(
                stripe_id=str(line.get("id") or ""),
                description=clean_text(line.get("description")).strip(),
                quantity=quantity,
                unit_amount=unit_amount,
                amount=amount,
                discounts=discounts,
                taxable=taxable,
                tax=tax,
                inclusive=any(t.get("tax_behavior") == "inclusive" for t in taxes),
            )
        )
    return result


def _line_who(who: str, number: int, line: _StripeLine) -> str:
    return f"{who} line {number} ({line.stripe_id or line.description[:40]})"


def _document_lines(
    lines: Sequence[_StripeLine],
    treatment: _Treatment,
    rates: Sequence[Decimal],
    who: str,
    when: str,
) -> tuple[list[InvoiceLine], Decimal | None, list[str]]:
    """The document's lines, the VAT total Stripe's figures ask for (None: none known) and notes.

    Stripe's `amount` is before discounts; its tax is on amount − discounts (exclusive) or inside
    it (inclusive). Without any Stripe tax on a Romanian document, amounts are VAT-inclusive.
    """
    notes: list[str] = []
    any_tax = any(line.tax is not None for line in lines)
    extract = treatment.romanian_vat and not any_tax
    if extract:
        notes.append(
            f"Stripe computed no VAT: amounts taken as VAT-inclusive, VAT extracted at "
            f"{rates[0].normalize():f} %"
        )
    expected_vat: Decimal | None = ZERO if not extract else None
    built: list[InvoiceLine] = []
    for number, line in enumerate(lines, start=1):
        tax = line.tax if line.tax is not None else ZERO
        if treatment.romanian_vat:
            if extract:
                rate = rates[0]
            elif line.tax is None or (line.tax == 0 and (line.taxable or ZERO) != 0):
                raise MappingError(
                    f"{_line_who(who, number, line)}: Stripe charged no VAT on this line but "
                    "the buyer is Romanian and Romanian VAT applies: check the product's tax "
                    "settings in Stripe, or the customer's tax status (tax_exempt)"
                )
            else:
                taxable = line.taxable if line.taxable is not None else line.amount - line.discounts
                found = _pick_rate(taxable, tax, rates)
                if found is None:
                    known = ", ".join(f"{r.normalize():f} %" for r in rates)
                    raise MappingError(
                        f"{_line_who(who, number, line)}: Stripe charged {tax} VAT on {taxable}, "
                        f"which no Romanian rate in force {when} ({known}) gives: check the tax "
                        "rate configured in Stripe for this product"
                    )
                rate = found
        else:
            rate = None if treatment.category is VatCategory.NOT_SUBJECT else ZERO
            if tax != 0:
                raise MappingError(
                    f"{_line_who(who, number, line)}: Stripe charged {tax} VAT to a buyer "
                    f"whose supply is {treatment.category.value} ({treatment.exemption_code}): "
                    "correct the buyer's classification (customer_tax_profiles) or Stripe's tax "
                    "settings"
                )
        vat_inclusive = extract or line.inclusive
        if vat_inclusive and rate:
            quantity = abs(line.quantity) or Decimal(1)
            price = (line.unit_amount * 100 / (100 + rate)).quantize(PRICE_DECIMALS, ROUND_HALF_UP)
            discount = _extract_net(line.discounts, rate)
        else:
            quantity = abs(line.quantity) or Decimal(1)
            price = line.unit_amount
            discount = line.discounts
        sign = -1 if line.amount < 0 else 1
        gross_net = line.amount if not (vat_inclusive and rate) else round_money(quantity * price)
        net = sign * abs(gross_net) - discount
        name, description = split_item_name(line.description or "Serviciu", None)
        built.append(
            assemble(
                InvoiceLine,
                id=str(number),
                name=name,
                description=description,
                note=None,
                seller_item_id=None,
                quantity=sign * quantity,
                unit_code="C62",
                unit_price=abs(price),
                net_amount=round_money(net),
                vat_category=treatment.category,
                vat_rate=rate,
                exemption_code=treatment.exemption_code,
                exemption_reason=None,
                allowances=(
                    (
                        LineAllowance(
                            amount=discount, reason=DISCOUNT_REASON, reason_code=DISCOUNT_CODE
                        ),
                    )
                    if discount
                    else ()
                ),
            )
        )
        if expected_vat is not None:
            expected_vat += tax
    return built, expected_vat, notes


def _expected(total: Decimal, vat: Decimal | None, lines: Sequence[InvoiceLine]) -> ExpectedTotals:
    if vat is None:  # VAT extracted from VAT-inclusive amounts: what is not net is VAT
        vat = total - sum((line.net_amount for line in lines), ZERO)
    return ExpectedTotals(total=total, vat_total=vat)


def _fx(currency: str, fx_rate: Decimal | None, who: str) -> Decimal | None:
    if currency == RON:
        return None
    if fx_rate is None:
        raise MappingError(
            f"{who} is in {currency}: no BNR rate is loaded for its issue date; materialize "
            "fx_rates for this partition first"
        )
    return fx_rate


# -- documents --------------------------------------------------------------------------------


def invoice_document(
    invoice: Obj,
    lines: Sequence[Obj],
    buyer: Buyer,
    policy: DocumentPolicy,
    *,
    number: str,
    issue_date: date,
    fx_rate: Decimal | None = None,
) -> Mapped:
    """A Stripe invoice (with its complete lines) → an invoice draft."""
    currency = str(invoice["currency"]).upper()
    who = f"Stripe invoice {invoice['id']} ({invoice.get('number') or 'no number'})"
    treatment = _treatment(buyer, policy, who)
    finalized = (invoice.get("status_transitions") or {}).get("finalized_at")
    chargeable_on = unix_date(finalized) if finalized else issue_date
    if not lines:
        raise MappingError(f"{who} has no lines: re-sync the invoice (stripe_invoice_lines)")
    doc_lines, vat, notes = _document_lines(
        _stripe_lines(lines, currency),
        treatment,
        _romanian_rates(chargeable_on, policy.standard_rate),
        who,
        f"on {chargeable_on} (its finalization day)",
    )
    paid = _money(int(invoice.get("amount_paid") or 0), currency)
    due = invoice.get("due_date")
    references = [
        DocumentReference(
            id=clean_text(invoice.get("number") or invoice["id"]),
            description=f"Stripe invoice {invoice['id']}",
        )
    ]
    draft = DocumentDraft(
        kind=DocumentKind.INVOICE,
        number=number,
        issue_date=issue_date,
        tax_point_date=chargeable_on if chargeable_on != issue_date else None,
        due_date=unix_date(due) if due and not paid else None,
        currency=currency,
        tax_exchange_rate=_fx(currency, fx_rate, who),
        lines=tuple(doc_lines),
        payment_means=_payment_means(policy, paid_by_card=bool(paid)),
        paid_amount=paid,
        order_reference=None,
        additional_references=tuple(references),
        notes=_notes(invoice.get("description")),
        **_parties(buyer, policy, treatment.category),
    )
    total = _money(int(invoice.get("total") or 0), currency)
    return Mapped(draft=draft, expected=_expected(total, vat, doc_lines), notes=tuple(notes))


def charge_document(
    charge: Obj,
    buyer: Buyer,
    policy: DocumentPolicy,
    *,
    number: str,
    issue_date: date,
    fx_rate: Decimal | None = None,
) -> Mapped:
    """A charge without an invoice → an invoice with one line: what was paid, VAT included."""
    currency = str(charge["currency"]).upper()
    who = f"charge {charge['id']}"
    treatment = _treatment(buyer, policy, who)
    amount = int(charge.get("amount_captured") or charge.get("amount") or 0)
    description = (
        _clean(charge.get("description"))
        or _clean(charge.get("calculated_statement_descriptor"))
        or f"Plată {charge['id']}"
    )
    line = {
        "id": charge["id"],
        "description": description,
        "quantity": 1,
        "amount": amount,
        "unit_amount_decimal": str(amount),
    }
    doc_lines, vat, notes = _document_lines(
        _stripe_lines([line], currency),
        treatment,
        _romanian_rates(issue_date, policy.standard_rate),
        who,
        f"on {issue_date}",
    )
    total = _money(amount, currency)
    draft = DocumentDraft(
        kind=DocumentKind.INVOICE,
        number=number,
        issue_date=issue_date,
        currency=currency,
        tax_exchange_rate=_fx(currency, fx_rate, who),
        lines=tuple(doc_lines),
        payment_means=_payment_means(policy, paid_by_card=True),
        paid_amount=total,
        additional_references=(
            DocumentReference(id=str(charge["id"]), description="Stripe charge"),
        ),
        **_parties(buyer, policy, treatment.category),
    )
    return Mapped(draft=draft, expected=_expected(total, vat, doc_lines), notes=tuple(notes))


def credit_note_document(
    note: Obj,
    preceding: Document,
    *,
    number: str,
    issue_date: date,
) -> Mapped:
    """A Stripe credit note → a credit note on the document it corrects (its buyer, rates and
    exchange rate)."""
    currency = str(note["currency"]).upper()
    who = f"Stripe credit note {note['id']} ({note.get('number') or 'no number'})"
    if currency != preceding.currency:
        raise MappingError(
            f"{who} is in {currency} but corrects {preceding.number} in {preceding.currency}"
        )
    treatment = _preceding_treatment(preceding)
    rates = sorted({line.vat_rate for line in preceding.lines if line.vat_rate}, reverse=True)
    raw_lines = (note.get("lines") or {}).get("data") or ()
    doc_lines, vat, notes = _document_lines(
        _stripe_lines(raw_lines, currency), treatment, rates or [ZERO], who,
        f"on invoice {preceding.number}",
    )  # fmt: skip
    total = _money(int(note.get("total") or 0), currency)
    memo = " ".join(str(p) for p in (note.get("reason"), note.get("memo")) if p)
    draft = _credit_note_draft(preceding, doc_lines, number, issue_date, note["id"], memo)
    return Mapped(draft=draft, expected=_expected(total, vat, doc_lines), notes=tuple(notes))


def refund_document(
    refund: Obj,
    preceding: Document,
    *,
    number: str,
    issue_date: date,
) -> Mapped:
    """A refund → a credit note on the document of the refunded charge: the whole document when
    everything was refunded, otherwise one line per VAT rate for the refunded share."""
    currency = str(refund["currency"]).upper()
    who = f"refund {refund['id']}"
    if currency != preceding.currency:
        raise MappingError(
            f"{who} is in {currency} but corrects {preceding.number} in {preceding.currency}"
        )
    refunded = _money(int(refund.get("amount") or 0), currency)
    original = preceding.totals.tax_inclusive_total + preceding.totals.rounding_amount
    if refunded <= 0 or refunded > original:
        raise MappingError(
            f"{who} returns {refunded} {currency}, outside 0..{original} of {preceding.number}"
        )
    if refunded == original:
        lines = [
            line.model_copy(update={"id": str(n)}) for n, line in enumerate(preceding.lines, 1)
        ]
        vat = preceding.totals.vat_total
        notes = [f"full refund of {preceding.number}: its lines credited as they were"]
    else:
        lines, vat = _refund_share_lines(preceding, refunded)
        notes = [f"partial refund: {refunded} of {original} {currency}, by VAT rate"]
    draft = _credit_note_draft(
        preceding, lines, number, issue_date, refund["id"], str(refund.get("reason") or "")
    )
    return Mapped(
        draft=draft, expected=ExpectedTotals(total=refunded, vat_total=vat), notes=tuple(notes)
    )


def _refund_share_lines(
    preceding: Document, refunded: Decimal
) -> tuple[list[InvoiceLine], Decimal]:
    gross = [sub.taxable_amount + sub.tax_amount for sub in preceding.tax_subtotals]
    whole = sum(gross, ZERO)
    shares: list[Decimal] = []
    for index, part in enumerate(gross):
        last = index == len(gross) - 1
        shares.append(
            refunded - sum(shares, ZERO) if last else round_money(refunded * part / whole)
        )
    lines, vat = [], ZERO
    for number, (sub, share) in enumerate(zip(preceding.tax_subtotals, shares, strict=True), 1):
        rate = sub.rate or ZERO
        net = _extract_net(share, rate)
        vat += share - net
        lines.append(
            assemble(
                InvoiceLine,
                id=str(number),
                name=f"Rambursare parțială {preceding.number}",
                description=None,
                note=None,
                seller_item_id=None,
                quantity=Decimal(1),
                unit_code="C62",
                unit_price=net,
                net_amount=net,
                vat_category=sub.category,
                vat_rate=sub.rate,
                exemption_code=sub.exemption_code,
                exemption_reason=None,
                allowances=(),
            )
        )
    return lines, vat


def _preceding_treatment(preceding: Document) -> _Treatment:
    first = preceding.lines[0]
    return _Treatment(
        first.vat_category, first.exemption_code, first.vat_category is VatCategory.STANDARD
    )


def _credit_note_draft(
    preceding: Document,
    lines: Sequence[InvoiceLine],
    number: str,
    issue_date: date,
    stripe_id: str,
    memo: str,
) -> DocumentDraft:
    return DocumentDraft(
        kind=DocumentKind.CREDIT_NOTE,
        number=number,
        issue_date=issue_date,
        # The correction is of the corrected supply, at its rates: same VAT point.
        tax_point_date=preceding.tax_point_date,
        currency=preceding.currency,
        tax_exchange_rate=preceding.tax_exchange_rate,
        seller=preceding.seller,
        buyer=preceding.buyer,
        lines=tuple(lines),
        preceding_invoices=(
            PrecedingInvoice(number=preceding.number, issue_date=preceding.issue_date),
        ),
        additional_references=(DocumentReference(id=stripe_id, description="Stripe"),),
        notes=_notes(memo),
    )


_CARD = (PaymentMeans(code="48", text="Card (Stripe)"),)


@cache
def _transfer(iban: str, account_name: str) -> tuple[PaymentMeans, ...]:
    return (PaymentMeans(code="30", iban=iban, account_name=account_name[:200]),)


def _payment_means(policy: DocumentPolicy, *, paid_by_card: bool) -> tuple[PaymentMeans, ...]:
    if paid_by_card:
        return _CARD
    if policy.iban:
        return _transfer(policy.iban, policy.seller.name)
    return ()


def _notes(text: Any) -> tuple[str, ...]:
    cleaned = " ".join(clean_text(text).split())
    return (cleaned[:300],) if cleaned else ()
