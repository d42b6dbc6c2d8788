"""The buyer on an invoice: who a Stripe customer is for ANAF, and where each fact came from.

A customer's tax identity is merged from, in order of precedence (issue 3):

1. the mappings CSV (`email,cui`, kept by the accountant: it corrects whatever Stripe holds);
2. the Stripe customer's tax ids (`eu_vat` starting with RO, `ro_tin`);
3. the Stripe customer's metadata (`cui`, `cif`, `cnp`);
4. ANAF's registry, asked about the CUI chosen above, for the legal name, address, county, VAT
   payer flag, e-Factura registration and inactive flag; the Stripe customer's own name and
   address fill in where the registry has nothing (persons, foreign buyers).

The first source that gives a CUI decides, even when its CUI is wrong: a wrong CUI in the
mappings file or in Stripe is a mistake to correct, not something to guess around. Values of
lower sources that disagree are kept as notes. A CUI that fails its check digit, or that the
registry does not know, blocks the customer's documents (`submission_blocked`): an invoice to a
buyer ANAF cannot identify must not be filed. Nothing else blocks.

Classification: `ro_company` (has a CUI), `ro_person` (Romanian private buyer: a CNP, or the B2C
placeholder `0000000000000` when none is known), `eu_business` (an EU VAT number of another
member state), `non_eu` (billing country outside the EU), `unknown` (anything we cannot tell:
a business-looking customer without its tax id, an EU buyer without a VAT number, a customer
with neither a billing country nor a tax id).

Pure: no I/O. Registry answers come in as `RegistryFacts` (build them from the client's
`RegistryRecord` with `RegistryFacts.model_validate(record, from_attributes=True)`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from invoicesync_dagster.efactura.counties import COUNTY_NAMES
from invoicesync_dagster.efactura.identifiers import (
    B2C_PLACEHOLDER,
    InvalidCnp,
    InvalidCui,
    InvalidVatNumber,
    normalize_cui,
    normalize_person_id,
    validate_cnp,
    validate_cui,
    validate_eu_vat,
)
from invoicesync_dagster.efactura.mappings import CustomerMapping
from invoicesync_dagster.efactura.model import bucharest_sector

EU_COUNTRIES = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
    "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
})  # fmt: skip
# Stripe tax id types that identify a person rather than a business.
_PERSON_TAX_ID_TYPES = frozenset({"br_cpf"})
_CUI_METADATA_KEYS = ("cui", "cif")
_CNP_METADATA_KEYS = ("cnp",)
# Metadata keys under which a VAT number may hide ("a VAT number elsewhere").
_VAT_METADATA_KEYS = ("vat", "vat_number", "vat_id", "tva", "cod_fiscal", "tax_id")
_REGISTRATION_METADATA_KEYS = ("reg_com", "nr_reg_com", "registration_number")

# Legal-form markers, matched as whole words of the name in upper case without dots or
# diacritics (S.R.L. -> SRL). Short ones are only markers as the name's last word, where a
# legal form is written ("Alpenblick AG", not "Ag Consult").
_LEGAL_FORMS = frozenset({
    "SRL", "SRLD", "PFA", "GMBH", "LTD", "LLC", "INC", "SARL", "SPA", "PLC", "LLP", "CORP",
    "KFT", "SRO", "DOO", "OOO", "APS", "LIMITED", "CORPORATION", "COMPANY", "INCORPORATED",
})  # fmt: skip
_LAST_WORD_LEGAL_FORMS = frozenset({
    "SA", "AG", "AB", "AS", "SE", "BV", "NV", "II", "IF", "SNC", "SCS", "OY", "KG", "UG", "GBR",
    "CO", "SAS",
})  # fmt: skip
_ORGANISATION_WORDS = frozenset({
    "ASOCIATIA", "FUNDATIA", "CABINET", "SOCIETATEA", "COOPERATIVA", "ASSOCIATION",
    "FOUNDATION",
})  # fmt: skip


class Classification(StrEnum):
    RO_COMPANY = "ro_company"
    RO_PERSON = "ro_person"
    EU_BUSINESS = "eu_business"
    NON_EU = "non_eu"
    UNKNOWN = "unknown"


class Source(StrEnum):
    """Where a value of the buyer identity came from."""

    MAPPINGS_CSV = "mappings_csv"
    STRIPE_TAX_ID = "stripe_tax_id"
    STRIPE_METADATA = "stripe_metadata"
    ANAF_REGISTRY = "anaf_registry"
    STRIPE_CUSTOMER = "stripe_customer"  # the name/address typed into the Stripe customer
    B2C_PLACEHOLDER = "b2c_placeholder"  # a private buyer without a CNP


class RegistryStatus(StrEnum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    NOT_ASKED = "not_asked"  # no valid CUI to ask about, or lookups were off


# -- inputs -----------------------------------------------------------------------------------


class TaxIdEntry(BaseModel):
    """A Stripe tax id (`type` as Stripe names it, e.g. eu_vat, ro_tin, gb_vat)."""

    model_config = ConfigDict(frozen=True)

    type: str
    value: str
    country: str | None = None


class StripeAddress(BaseModel):
    model_config = ConfigDict(frozen=True)

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


class StripeCustomer(BaseModel):
    """The parts of a Stripe customer object that say who the buyer is."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str | None = None
    business_name: str | None = None
    email: str | None = None
    address: StripeAddress | None = None
    tax_exempt: str | None = None
    tax_ids: tuple[TaxIdEntry, ...] = ()
    metadata: dict[str, str] = {}

    @classmethod
    def from_stripe(cls, raw: Mapping[str, Any]) -> StripeCustomer:
        """From a customer as Stripe's API returns it (with `tax_ids` expanded)."""
        tax_ids = raw.get("tax_ids")
        listed = tax_ids.get("data") if isinstance(tax_ids, Mapping) else tax_ids
        address = raw.get("address")
        return cls(
            id=raw["id"],
            name=_text(raw.get("name")),
            business_name=_text(raw.get("business_name")),
            email=_text(raw.get("email")),
            address=StripeAddress(**{k: _text(address.get(k)) for k in StripeAddress.model_fields})
            if isinstance(address, Mapping)
            else None,
            tax_exempt=_text(raw.get("tax_exempt")),
            tax_ids=tax_id_entries(listed or ()),
            metadata={
                str(key).lower(): str(value)
                for key, value in (raw.get("metadata") or {}).items()
                if value not in (None, "")
            },
        )

    @property
    def country(self) -> str | None:
        return self.address.country.upper() if self.address and self.address.country else None


def tax_id_entries(items: Iterable[Any]) -> tuple[TaxIdEntry, ...]:
    """Tax ids from Stripe's `tax_ids.data` or an invoice's `customer_tax_ids`."""
    entries = []
    for item in items:
        if isinstance(item, Mapping) and item.get("value"):
            entries.append(
                TaxIdEntry(
                    type=str(item.get("type") or "unknown"),
                    value=str(item["value"]).strip(),
                    country=_text(item.get("country")),
                )
            )
    return tuple(entries)


class RegistryFacts(BaseModel):
    """What ANAF's registry says about a CUI (`found=False`: it does not know it)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    cui: str
    found: bool = True
    queried_date: date | None = None
    name: str = ""
    registration_number: str = ""
    street: str = ""
    street_number: str = ""
    locality: str = ""
    county_code: str | None = None
    postal_code: str = ""
    vat_payer: bool = False
    vat_registered_on: date | None = None
    efactura_registered: bool = False
    inactive: bool = False


# -- output -----------------------------------------------------------------------------------


class BuyerProfile(BaseModel):
    """The buyer identity used on a customer's invoices (one `customer_tax_profiles` row)."""

    customer_id: str
    email: str | None = None
    stripe_name: str | None = None
    country: str | None = None
    classification: Classification
    classification_reason: str
    cui: str | None = None  # digits, no RO (as typed when it is invalid)
    cui_source: Source | None = None
    cui_valid: bool | None = None  # None: no CUI
    cnp: str | None = None  # a CNP or the B2C placeholder (ro_person only)
    cnp_source: Source | None = None
    vat_number: str | None = None  # a non-Romanian VAT number, prefix included
    vat_number_source: Source | None = None
    legal_name: str | None = None
    legal_name_source: Source | None = None
    street: str | None = None
    city: str | None = None
    county_code: str | None = None  # ISO 3166-2:RO, Romanian addresses only
    postal_code: str | None = None
    address_source: Source | None = None
    registration_number: str | None = None
    registration_number_source: Source | None = None
    registry_status: RegistryStatus = RegistryStatus.NOT_ASKED
    registry_queried_on: date | None = None
    vat_payer: bool | None = None
    vat_registered_on: date | None = None
    efactura_registered: bool | None = None
    inactive: bool | None = None
    looks_like_business: bool = False
    business_signals: list[str] = []
    notes: list[str] = []  # lower-precedence values not used, and why
    submission_blocked: bool = False
    block_reason: str | None = None

    @property
    def missing_cui(self) -> bool:
        """A business-looking buyer we cannot identify: it needs its CUI (or VAT number)."""
        return self.classification is Classification.UNKNOWN and self.looks_like_business

    @property
    def invalid_cui(self) -> bool:
        return self.cui is not None and (
            self.cui_valid is False or self.registry_status is RegistryStatus.NOT_FOUND
        )


# -- merging ----------------------------------------------------------------------------------


class _Candidate(BaseModel):
    value: str
    source: Source
    where: str  # e.g. "customers.csv line 4", "Stripe tax id eu_vat", "Stripe metadata.cif"
    fix: str  # how to correct it there


def cui_to_look_up(customer: StripeCustomer, mapping: CustomerMapping | None) -> str | None:
    """The CUI the registry must be asked about (the chosen one, if its check digit holds)."""
    candidates = _cui_candidates(customer, mapping)
    if not candidates:
        return None
    try:
        return _cui_digits(candidates[0].value)
    except InvalidCui:
        return None


def merge_profile(
    customer: StripeCustomer,
    mapping: CustomerMapping | None = None,
    registry: RegistryFacts | None = None,
    *,
    invoice_tax_ids: Sequence[TaxIdEntry] = (),
) -> BuyerProfile:
    """The buyer identity of `customer`. `registry` is the registry's answer about
    `cui_to_look_up(customer, mapping)` (None: not asked); `invoice_tax_ids` are the tax ids
    printed on the customer's Stripe invoices, only used as a sign of a business."""
    notes: list[str] = []
    signals = business_signals(customer, invoice_tax_ids)
    profile: dict[str, Any] = {
        "customer_id": customer.id,
        "email": customer.email,
        "stripe_name": customer.name,
        "country": customer.country,
        "looks_like_business": bool(signals),
        "business_signals": signals,
        "notes": notes,
    }
    cui_candidates = _cui_candidates(customer, mapping)
    if cui_candidates:
        profile.update(_company(cui_candidates, registry, notes))
    vat = _foreign_vat_number(customer, notes)
    if vat is not None and not cui_candidates:
        profile["vat_number"], profile["vat_number_source"] = vat.value, Source.STRIPE_TAX_ID
    classification, reason = _classify(customer, bool(cui_candidates), vat, signals, mapping)
    profile["classification"], profile["classification_reason"] = classification, reason
    if classification is Classification.RO_PERSON:
        profile["cnp"], profile["cnp_source"] = _person_id(customer, mapping, notes)
    profile.setdefault("legal_name", customer.business_name or customer.name)
    profile.setdefault(
        "legal_name_source", Source.STRIPE_CUSTOMER if profile["legal_name"] else None
    )
    if "address_source" not in profile and customer.address is not None:
        profile.update(_stripe_address(customer.address))
    if "registration_number" not in profile:
        value = _first_metadata(customer, _REGISTRATION_METADATA_KEYS)
        if value is not None:
            profile["registration_number"] = value[1]
            profile["registration_number_source"] = Source.STRIPE_METADATA
    return BuyerProfile(**profile)


def _company(
    candidates: list[_Candidate], registry: RegistryFacts | None, notes: list[str]
) -> dict[str, Any]:
    chosen = candidates[0]
    fields: dict[str, Any] = {"cui_source": chosen.source}
    try:
        cui = _cui_digits(chosen.value)
    except InvalidCui as error:
        fields.update(
            cui=normalize_cui(chosen.value) or chosen.value,
            cui_valid=False,
            submission_blocked=True,
            block_reason=f"{error} (from {chosen.where}): {chosen.fix}",
        )
        _note_other_candidates(candidates, None, notes)
        return fields
    fields.update(cui=cui, cui_valid=True)
    _note_other_candidates(candidates, cui, notes)
    if registry is None or registry.cui != cui:
        return fields
    fields["registry_queried_on"] = registry.queried_date
    if not registry.found:
        fields.update(
            registry_status=RegistryStatus.NOT_FOUND,
            submission_blocked=True,
            block_reason=(
                f"ANAF's registry does not know CUI {cui} (from {chosen.where}); its check "
                f"digit holds, so a digit may be swapped: ask the customer for its CUI and "
                f"{chosen.fix}"
            ),
        )
        return fields
    fields.update(
        registry_status=RegistryStatus.FOUND,
        vat_payer=registry.vat_payer,
        vat_registered_on=registry.vat_registered_on,
        efactura_registered=registry.efactura_registered,
        inactive=registry.inactive,
    )
    if registry.name:
        fields.update(legal_name=registry.name, legal_name_source=Source.ANAF_REGISTRY)
    if registry.registration_number:
        fields.update(
            registration_number=registry.registration_number,
            registration_number_source=Source.ANAF_REGISTRY,
        )
    if registry.locality or registry.street:
        street = " ".join(part for part in (registry.street, registry.street_number) if part)
        fields.update(
            street=street or None,
            city=registry.locality or None,
            county_code=registry.county_code,
            postal_code=registry.postal_code or None,
            address_source=Source.ANAF_REGISTRY,
        )
    return fields


def _note_other_candidates(
    candidates: list[_Candidate], chosen: str | None, notes: list[str]
) -> None:
    for other in candidates[1:]:
        try:
            value = _cui_digits(other.value)
        except InvalidCui:
            value = None
        if value is None or value != chosen:
            notes.append(
                f"CUI {other.value!r} from {other.where} not used: {candidates[0].where} "
                "takes precedence"
            )


def _cui_candidates(customer: StripeCustomer, mapping: CustomerMapping | None) -> list[_Candidate]:
    candidates = []
    if mapping is not None and mapping.kind == "cui":
        candidates.append(
            _Candidate(
                value=mapping.tax_id,
                source=Source.MAPPINGS_CSV,
                where=mapping.where,
                fix=f"correct line {mapping.line} of {mapping.file}",
            )
        )
    for tax_id in customer.tax_ids:
        value = tax_id.value.replace(" ", "").upper()
        is_ro_vat = tax_id.type == "eu_vat" and value.startswith("RO")
        is_ro_tin_cui = tax_id.type == "ro_tin" and not _looks_like_cnp(value)
        if is_ro_vat or is_ro_tin_cui:
            candidates.append(
                _Candidate(
                    value=tax_id.value,
                    source=Source.STRIPE_TAX_ID,
                    where=f"Stripe tax id {tax_id.type}",
                    fix="correct the customer's tax id in Stripe (Customers → Tax IDs), or "
                    "add `email,CUI` to the mappings CSV (it takes precedence)",
                )
            )
    for key in _CUI_METADATA_KEYS:
        value = customer.metadata.get(key)
        if value:
            candidates.append(
                _Candidate(
                    value=value,
                    source=Source.STRIPE_METADATA,
                    where=f"Stripe metadata.{key}",
                    fix=f"correct metadata.{key} of the customer in Stripe, or add `email,CUI` "
                    "to the mappings CSV (it takes precedence)",
                )
            )
    return candidates


def _person_id(
    customer: StripeCustomer, mapping: CustomerMapping | None, notes: list[str]
) -> tuple[str, Source]:
    """A private buyer's CNP by precedence, or the B2C placeholder when none is valid."""
    candidates: list[tuple[str, Source, str]] = []
    if mapping is not None and mapping.kind == "cnp":
        candidates.append((mapping.tax_id, Source.MAPPINGS_CSV, mapping.where))
    for tax_id in customer.tax_ids:
        if tax_id.type == "ro_tin" and _looks_like_cnp(tax_id.value):
            candidates.append((tax_id.value, Source.STRIPE_TAX_ID, "Stripe tax id ro_tin"))
    for key in _CNP_METADATA_KEYS:
        if customer.metadata.get(key):
            candidates.append((customer.metadata[key], Source.STRIPE_METADATA, f"metadata.{key}"))
    for value, source, where in candidates:
        person = normalize_person_id(value)
        if person == B2C_PLACEHOLDER:
            return B2C_PLACEHOLDER, source
        try:
            return validate_cnp(person), source
        except InvalidCnp as error:
            notes.append(f"{where}: {error}; not used")
    return B2C_PLACEHOLDER, Source.B2C_PLACEHOLDER


def _foreign_vat_number(customer: StripeCustomer, notes: list[str]) -> TaxIdEntry | None:
    """The customer's first non-Romanian business tax id (EU VAT, GB VAT, Swiss UID, ...)."""
    for tax_id in customer.tax_ids:
        if tax_id.type == "ro_tin" or tax_id.type in _PERSON_TAX_ID_TYPES:
            continue
        value = tax_id.value.replace(" ", "").upper()
        if tax_id.type == "eu_vat":
            if value.startswith("RO"):
                continue
            try:
                validate_eu_vat(value)
            except InvalidVatNumber as error:
                notes.append(f"Stripe tax id eu_vat: {error}")
        return tax_id
    return None


def _classify(
    customer: StripeCustomer,
    has_cui: bool,
    vat: TaxIdEntry | None,
    signals: list[str],
    mapping: CustomerMapping | None,
) -> tuple[Classification, str]:
    country = customer.country or _country_of(vat)
    has_cnp = (
        (mapping is not None and mapping.kind == "cnp")
        or any(customer.metadata.get(key) for key in _CNP_METADATA_KEYS)
        or any(t.type == "ro_tin" and _looks_like_cnp(t.value) for t in customer.tax_ids)
    )
    if has_cui:
        return Classification.RO_COMPANY, "has a Romanian CUI"
    if vat is not None and vat.type == "eu_vat":
        return Classification.EU_BUSINESS, f"EU VAT number {vat.value}"
    if country is not None and country != "RO" and country in EU_COUNTRIES:
        return (
            Classification.UNKNOWN,
            f"EU buyer ({country}) without a VAT number: a consumer, or a business that has "
            "not given its VAT number (add it in Stripe as an eu_vat tax id)",
        )
    if country is not None and country != "RO":
        return Classification.NON_EU, f"billing country {country} is outside the EU"
    if signals:
        return (
            Classification.UNKNOWN,
            "looks like a business but has no CUI: add `email,CUI` to the mappings CSV",
        )
    if country == "RO" or has_cnp:
        return Classification.RO_PERSON, "Romanian private buyer"
    return (
        Classification.UNKNOWN,
        "no billing country and no tax id: add the customer's address in Stripe",
    )


def business_signals(
    customer: StripeCustomer, invoice_tax_ids: Sequence[TaxIdEntry] = ()
) -> list[str]:
    """Why a customer looks like a business (empty: it looks like a private person)."""
    signals = []
    for label, name in (("name", customer.name), ("business name", customer.business_name)):
        marker = company_marker(name)
        if marker:
            signals.append(f"{label} {name!r} has the company marker {marker}")
    if customer.business_name and not any("business name" in s for s in signals):
        signals.append(f"Stripe business name {customer.business_name!r}")
    for tax_id in (*customer.tax_ids, *invoice_tax_ids):
        if _is_business_tax_id(tax_id):
            signals.append(f"tax id {tax_id.type} {tax_id.value}")
    found = _first_metadata(customer, _VAT_METADATA_KEYS)
    if found is not None:
        signals.append(f"metadata.{found[0]} {found[1]}")
    return list(dict.fromkeys(signals))


def company_marker(name: str | None) -> str | None:
    """The legal-form or organisation word in a name (`SRL` in "Popescu & Fiii S.R.L."), or
    None when the name reads like a person's."""
    if not name:
        return None
    words = _words(name)
    for word in words:
        if word in _LEGAL_FORMS or word in _ORGANISATION_WORDS:
            return word
    # "S.R.L.-D." ends in "SRL D"; "Sp. z o.o." becomes "SP Z OO".
    tail = "".join(words[-3:])
    for joined in ("SRLD", "SPZOO"):
        if tail.endswith(joined):
            return joined
    if len(words) > 1 and words[-1] in _LAST_WORD_LEGAL_FORMS:
        return words[-1]
    return None


def county_from_state(state: str | None) -> str | None:
    """ISO 3166-2:RO from what Stripe holds as a Romanian address's state: `CJ`, `RO-CJ` or
    the county's name (`Cluj`, `București`, with or without diacritics)."""
    if not state:
        return None
    text = state.strip().upper().removeprefix("RO-")
    if f"RO-{text}" in COUNTY_NAMES:
        return f"RO-{text}"
    folded = _fold(state)
    for code, name in COUNTY_NAMES.items():
        if _fold(name) == folded:
            return code
    return "RO-B" if folded in ("BUCURESTI", "BUCHAREST", "MUNICIPIUL BUCURESTI") else None


# -- helpers ----------------------------------------------------------------------------------


def _stripe_address(address: StripeAddress) -> dict[str, Any]:
    street = ", ".join(part for part in (address.line1, address.line2) if part)
    is_ro = (address.country or "").upper() == "RO"
    county = county_from_state(address.state) if is_ro else None
    city = address.city
    # Bucharest buyers often type the sector as the state ("Sector 3"): keep it as the city,
    # which is where CIUS-RO wants it (BR-RO-100), unless the city already names one.
    sector = bucharest_sector(address.state or "") if is_ro else None
    if sector is not None:
        county = "RO-B"
        city = city if city and bucharest_sector(city) else f"Sector {sector[-1]}"
    return {
        "street": street or None,
        "city": city,
        "county_code": county,
        "postal_code": address.postal_code,
        "address_source": Source.STRIPE_CUSTOMER,
    }


def _cui_digits(raw: str) -> str:
    """A valid CUI as the registry keys it (digits, no RO, no leading zeros), or InvalidCui."""
    return str(int(validate_cui(raw)))


def _looks_like_cnp(value: str) -> bool:
    person = normalize_person_id(value)
    return len(person) == 13 and person.isdigit()


def _is_business_tax_id(tax_id: TaxIdEntry) -> bool:
    if tax_id.type in _PERSON_TAX_ID_TYPES:
        return False
    return not (tax_id.type == "ro_tin" and _looks_like_cnp(tax_id.value))


def _country_of(tax_id: TaxIdEntry | None) -> str | None:
    if tax_id is None:
        return None
    if tax_id.country:
        return tax_id.country.upper()
    prefix = tax_id.value[:2].upper()
    if tax_id.type == "eu_vat" and prefix.isalpha():
        return {"EL": "GR", "XI": "GB"}.get(prefix, prefix)
    return None


def _first_metadata(customer: StripeCustomer, keys: Sequence[str]) -> tuple[str, str] | None:
    for key in keys:
        value = customer.metadata.get(key)
        if value:
            return key, value
    return None


def _words(name: str) -> list[str]:
    return re.findall(r"[A-Z0-9]+", _fold(name).replace(".", ""))


def _fold(text: str) -> str:
    """Upper case without diacritics (ș ş ț ţ ă â î ü é → S S T T A A I U E)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper().strip()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
