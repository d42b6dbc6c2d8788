"""Tax identifiers of buyers and sellers: CUI/CIF (Romanian companies), CNP (Romanian persons),
the B2C placeholder, and EU VAT numbers (format only). Pure functions, no I/O.

CUI check digit (EFACTURA.md §5): weights 7 5 3 2 1 7 5 3 2 over the body left-padded to 9
digits, check = sum * 10 mod 11, where 10 counts as 0.

CNP (EFACTURA.md §5): S AA LL ZZ JJ NNN C. Weights 2 7 9 1 4 6 3 5 8 2 7 9 over the first 12
digits, check = sum mod 11, where 10 counts as 1. S gives sex and century: 1/2 → 19xx, 3/4 → 18xx,
5/6 → 20xx, 7/8 → foreign residents, 9 → foreign persons. For 7, 8 and 9 the century is not
encoded, so AA LL ZZ must be a real date in 19xx or in 20xx. Decision on 9: it is accepted (ANAF
knows foreigners by such numbers and rejecting a real buyer blocks their invoices), with the same
checksum, date and county rules. JJ must be 01-52 (the counties in alphabetical order, 40 for
Bucharest, 41-48 its sectors, 51 Călărași, 52 Giurgiu).

The B2C placeholder `0000000000000` (13 zeros, §4.6) stands for a private buyer who gave no CNP.
It is not a CNP (its first digit is 0 and it fails the checksum): `validate_cnp` refuses it with a
message saying so, and `classify_person_id` tells the two apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

_CUI_WEIGHTS = (7, 5, 3, 2, 1, 7, 5, 3, 2)
_CUI_SHAPE = re.compile(r"^\d{2,10}$")
_CNP_WEIGHTS = (2, 7, 9, 1, 4, 6, 3, 5, 8, 2, 7, 9)
_CNP_CENTURY = {"1": 1900, "2": 1900, "3": 1800, "4": 1800, "5": 2000, "6": 2000}
_CNP_COUNTIES = range(1, 53)
_SEPARATORS = re.compile(r"[\s.\-/]")

B2C_PLACEHOLDER = "0000000000000"


class InvalidTaxId(ValueError):
    """An identifier that is malformed or fails its check; the message names it and the fix."""


class InvalidCui(InvalidTaxId):
    """A CUI that is malformed or fails its check digit; the message says which and why."""


class InvalidCnp(InvalidTaxId):
    """A CNP that is malformed, fails its check digit or encodes an impossible date/county."""


class InvalidVatNumber(InvalidTaxId):
    """An EU VAT number whose prefix is unknown or whose body does not match its country."""


# -- CUI / CIF --------------------------------------------------------------------------------


def normalize_cui(raw: str) -> str:
    """`RO 123 456 74` → `12345674`: strip the RO prefix (any case), spaces, dots and dashes."""
    text = re.sub(r"[\s.\-]", "", raw).upper()
    return text.removeprefix("RO")


def cui_check_digit(body: str) -> int:
    padded = body.rjust(9, "0")
    total = sum(int(digit) * weight for digit, weight in zip(padded, _CUI_WEIGHTS, strict=True))
    return total * 10 % 11 % 10


def validate_cui(raw: str) -> str:
    """The normalised CUI, or InvalidCui naming what is wrong."""
    cui = normalize_cui(raw)
    if not _CUI_SHAPE.match(cui):
        raise InvalidCui(f"CUI {raw!r} must be 2 to 10 digits, optionally prefixed by RO")
    expected = cui_check_digit(cui[:-1])
    if int(cui[-1]) != expected:
        raise InvalidCui(
            f"CUI {raw!r} fails the check digit (last digit is {cui[-1]}, expected {expected}): "
            "check it against the company's registration certificate"
        )
    return cui


def is_valid_cui(raw: str) -> bool:
    try:
        validate_cui(raw)
    except InvalidCui:
        return False
    return True


# -- CNP and the B2C placeholder --------------------------------------------------------------


class PersonIdKind(StrEnum):
    CNP = "cnp"
    B2C_PLACEHOLDER = "b2c_placeholder"


def normalize_person_id(raw: str) -> str:
    """Strip spaces, dots, dashes and slashes (`1800101 123450` → `1800101123450`)."""
    return _SEPARATORS.sub("", raw)


def is_b2c_placeholder(raw: str) -> bool:
    """True for `0000000000000`, the code ANAF expects for a private buyer without a CNP."""
    return normalize_person_id(raw) == B2C_PLACEHOLDER


def cnp_check_digit(first12: str) -> int:
    if len(first12) != 12 or not first12.isdigit():
        raise ValueError(f"a CNP check digit needs the first 12 digits, got {first12!r}")
    total = sum(int(digit) * weight for digit, weight in zip(first12, _CNP_WEIGHTS, strict=True))
    remainder = total % 11
    return 1 if remainder == 10 else remainder


def cnp_birth_date(cnp: str) -> date | None:
    """The birth date a (well-formed) CNP encodes, or None if it is not a real date. For
    foreigners (S = 7, 8, 9) the century is not encoded: the 19xx reading wins when both are
    real dates, which only differs from 20xx on 29 February of year 00."""
    year, month, day = int(cnp[1:3]), int(cnp[3:5]), int(cnp[5:7])
    centuries = [_CNP_CENTURY[cnp[0]]] if cnp[0] in _CNP_CENTURY else [1900, 2000]
    for century in centuries:
        try:
            return date(century + year, month, day)
        except ValueError:
            continue
    return None


def validate_cnp(raw: str) -> str:
    """The normalised CNP, or InvalidCnp naming what is wrong and what to do."""
    cnp = normalize_person_id(raw)
    if cnp == B2C_PLACEHOLDER:
        raise InvalidCnp(
            f"{raw!r} is the B2C placeholder for a private buyer without a CNP, not a CNP: "
            "use it as is for such buyers (classify_person_id tells the two apart)"
        )
    if len(cnp) != 13 or not cnp.isdigit():
        raise InvalidCnp(f"CNP {raw!r} must be exactly 13 digits (S AA LL ZZ JJ NNN C)")
    if cnp[0] == "0":
        raise InvalidCnp(
            f"CNP {raw!r} starts with 0; the first digit (sex and century) is 1-9: "
            "check the number on the buyer's identity card"
        )
    if cnp_birth_date(cnp) is None:
        raise InvalidCnp(
            f"CNP {raw!r} encodes no real birth date (digits 2-7 are YYMMDD, read "
            f"{cnp[1:3]}-{cnp[3:5]}-{cnp[5:7]}): check the number on the buyer's identity card"
        )
    if int(cnp[7:9]) not in _CNP_COUNTIES:
        raise InvalidCnp(
            f"CNP {raw!r} has county code {cnp[7:9]} (digits 8-9); it must be 01-52: "
            "check the number on the buyer's identity card"
        )
    expected = cnp_check_digit(cnp[:12])
    if int(cnp[12]) != expected:
        raise InvalidCnp(
            f"CNP {raw!r} fails the check digit (last digit is {cnp[12]}, expected {expected}): "
            "a digit was mistyped; ask the buyer for it again, or invoice them with the B2C "
            f"placeholder {B2C_PLACEHOLDER}"
        )
    return cnp


def is_valid_cnp(raw: str) -> bool:
    try:
        validate_cnp(raw)
    except InvalidCnp:
        return False
    return True


def classify_person_id(raw: str) -> PersonIdKind:
    """Whether a private buyer's identifier is the B2C placeholder or a valid CNP; anything
    else raises InvalidCnp. The placeholder is recognised before any CNP rule is applied."""
    if is_b2c_placeholder(raw):
        return PersonIdKind.B2C_PLACEHOLDER
    validate_cnp(raw)
    return PersonIdKind.CNP


# -- EU VAT numbers (format only) -------------------------------------------------------------

# VIES prefix → (ISO 3166-1 country, body pattern, example). Greece is EL in VAT numbers; XI is
# Northern Ireland (UK VAT numbers under the Windsor Framework, in VIES).
_EU_VAT_FORMATS: dict[str, tuple[str, str, str]] = {
    "AT": ("AT", r"U\d{8}", "ATU12345678"),
    "BE": ("BE", r"[01]\d{9}", "BE0123456789"),
    "BG": ("BG", r"\d{9,10}", "BG123456789"),
    "CY": ("CY", r"\d{8}[A-Z]", "CY12345678X"),
    "CZ": ("CZ", r"\d{8,10}", "CZ12345678"),
    "DE": ("DE", r"\d{9}", "DE123456789"),
    "DK": ("DK", r"\d{8}", "DK12345678"),
    "EE": ("EE", r"\d{9}", "EE123456789"),
    "EL": ("GR", r"\d{9}", "EL123456789"),
    "ES": ("ES", r"[A-Z0-9]\d{7}[A-Z0-9]", "ESX1234567X"),
    "FI": ("FI", r"\d{8}", "FI12345678"),
    "FR": ("FR", r"[0-9A-HJ-NP-Z]{2}\d{9}", "FR12345678901"),
    "HR": ("HR", r"\d{11}", "HR12345678901"),
    "HU": ("HU", r"\d{8}", "HU12345678"),
    "IE": ("IE", r"\d{7}[A-W][A-IW]?|\d[A-Z+*]\d{5}[A-W]", "IE1234567WA"),
    "IT": ("IT", r"\d{11}", "IT12345678901"),
    "LT": ("LT", r"\d{9}|\d{12}", "LT123456789"),
    "LU": ("LU", r"\d{8}", "LU12345678"),
    "LV": ("LV", r"\d{11}", "LV12345678901"),
    "MT": ("MT", r"\d{8}", "MT12345678"),
    "NL": ("NL", r"\d{9}B\d{2}", "NL123456789B01"),
    "PL": ("PL", r"\d{10}", "PL1234567890"),
    "PT": ("PT", r"\d{9}", "PT123456789"),
    "RO": ("RO", r"\d{2,10}", "RO12345674"),  # and a valid CUI check digit
    "SE": ("SE", r"\d{10}01", "SE123456789001"),
    "SI": ("SI", r"\d{8}", "SI12345678"),
    "SK": ("SK", r"\d{10}", "SK1234567890"),
    "XI": ("GB", r"\d{9}|\d{12}|GD\d{3}|HA\d{3}", "XI123456789"),
}
EU_VAT_PREFIXES = frozenset(_EU_VAT_FORMATS)
_EU_VAT_PATTERNS = {
    prefix: re.compile(rf"^(?:{pattern})$") for prefix, (_, pattern, _) in _EU_VAT_FORMATS.items()
}


@dataclass(frozen=True)
class VatNumber:
    prefix: str  # the VIES prefix: EL for Greece, XI for Northern Ireland
    number: str  # without the prefix
    country: str  # ISO 3166-1 alpha-2: GR for EL, GB for XI

    def __str__(self) -> str:
        return self.prefix + self.number


def normalize_vat_number(raw: str) -> str:
    """`de 123.456-789` → `DE123456789`: upper case, no spaces, dots, dashes or slashes."""
    return _SEPARATORS.sub("", raw).upper()


def validate_eu_vat(raw: str) -> VatNumber:
    """The VAT number split into prefix and body, if its format fits its country (no check
    digits except Romania's, no existence check: that is VIES's job). RO numbers must be "RO"
    followed by a valid CUI."""
    text = normalize_vat_number(raw)
    prefix, number = text[:2], text[2:]
    if prefix == "GR":
        raise InvalidVatNumber(
            f"VAT number {raw!r}: Greek VAT numbers use the prefix EL, not GR (write EL{number})"
        )
    if prefix not in _EU_VAT_FORMATS:
        known = ", ".join(sorted(_EU_VAT_FORMATS))
        raise InvalidVatNumber(
            f"VAT number {raw!r} does not start with an EU VAT prefix ({known}): "
            "write the two-letter prefix before the number, e.g. DE123456789"
        )
    country, _, example = _EU_VAT_FORMATS[prefix]
    if not _EU_VAT_PATTERNS[prefix].match(number):
        raise InvalidVatNumber(
            f"VAT number {raw!r} does not have the {prefix} format (e.g. {example}): "
            "check it against the buyer's VAT registration"
        )
    if prefix == "RO":
        try:
            validate_cui(number)
        except InvalidCui as error:
            raise InvalidVatNumber(f"VAT number {raw!r}: {error}") from None
    return VatNumber(prefix, number, country)


def is_valid_eu_vat(raw: str) -> bool:
    try:
        validate_eu_vat(raw)
    except InvalidVatNumber:
        return False
    return True
