from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicesync_dagster.efactura.identifiers import (
    B2C_PLACEHOLDER,
    EU_VAT_PREFIXES,
    InvalidCnp,
    InvalidCui,
    InvalidTaxId,
    InvalidVatNumber,
    PersonIdKind,
    VatNumber,
    classify_person_id,
    cnp_birth_date,
    cnp_check_digit,
    cui_check_digit,
    is_b2c_placeholder,
    is_valid_cnp,
    is_valid_cui,
    is_valid_eu_vat,
    normalize_cui,
    normalize_vat_number,
    validate_cnp,
    validate_cui,
    validate_eu_vat,
)


@pytest.mark.parametrize("cui", ["4221306", "RO4221306", "ro 42 21 306", "12345674", "8486152"])
def test_known_valid_cuis(cui: str) -> None:
    assert is_valid_cui(cui)


def test_worked_example_from_the_brief() -> None:
    # 000422130 · 753217532 = 38; 380 mod 11 = 6
    assert cui_check_digit("422130") == 6


@pytest.mark.parametrize("cui", ["12345678", "1", "RO", "12345678901", "12a4567", ""])
def test_invalid_cuis_name_the_problem(cui: str) -> None:
    with pytest.raises(InvalidCui, match="CUI"):
        validate_cui(cui)


def test_normalize_strips_prefix_and_separators() -> None:
    assert normalize_cui(" Ro 12.345-674 ") == "12345674"


@given(st.integers(min_value=1, max_value=999_999_999))
def test_a_body_with_its_check_digit_is_valid(body: int) -> None:
    text = str(body)
    assert is_valid_cui(text + str(cui_check_digit(text)))


@given(st.integers(min_value=1, max_value=999_999_999), st.integers(min_value=1, max_value=9))
def test_changing_the_check_digit_invalidates(body: int, delta: int) -> None:
    text = str(body)
    wrong = (cui_check_digit(text) + delta) % 10
    assert not is_valid_cui(text + str(wrong))


# -- CNP ----------------------------------------------------------------------------------------


def _with_check_digit(first12: str) -> str:
    return first12 + str(cnp_check_digit(first12))


def test_cnp_worked_example_from_the_brief() -> None:
    # 1800101123450: 1·2+8·7+0·9+0·1+1·4+0·6+1·3+1·5+2·8+3·2+4·7+5·9 = 165; 165 mod 11 = 0
    assert cnp_check_digit("180010112345") == 0
    assert validate_cnp("1800101123450") == "1800101123450"
    assert validate_cnp("1800101 123450") == "1800101123450"
    assert cnp_birth_date("1800101123450") == date(1980, 1, 1)


def test_cnp_remainder_ten_becomes_one() -> None:
    first12 = next(
        body for body in (f"180010112{n:03d}" for n in range(1000)) if _weighted_sum(body) == 10
    )
    assert cnp_check_digit(first12) == 1
    assert is_valid_cnp(first12 + "1")


@pytest.mark.parametrize(
    ("cnp", "problem"),
    [
        ("1800101123456", "check digit"),
        ("180010112345", "13 digits"),
        ("18001011234501", "13 digits"),
        ("18001011234a0", "13 digits"),
        ("0800101123450", "starts with 0"),
        (_with_check_digit("180130112345"), "birth date"),  # month 13
        (_with_check_digit("180023012345"), "birth date"),  # 30 February
        (_with_check_digit("100022912345"), "birth date"),  # 1900 is not a leap year
        (_with_check_digit("180010100345"), "county code 00"),
        (_with_check_digit("180010153345"), "county code 53"),
    ],
)
def test_invalid_cnps_name_the_problem(cnp: str, problem: str) -> None:
    with pytest.raises(InvalidCnp, match=problem) as raised:
        validate_cnp(cnp)
    assert repr(cnp) in str(raised.value)
    assert not is_valid_cnp(cnp)


def test_century_digit_decides_the_birth_date() -> None:
    assert cnp_birth_date(_with_check_digit("580010112345")) == date(2080, 1, 1)
    assert cnp_birth_date(_with_check_digit("380010112345")) == date(1880, 1, 1)
    # 29 Feb 2000 exists; for a 1900s digit the same YYMMDD does not
    assert is_valid_cnp(_with_check_digit("500022912345"))
    assert not is_valid_cnp(_with_check_digit("100022912345"))


@pytest.mark.parametrize("first", ["7", "8", "9"])
def test_foreigners_are_accepted_with_either_century(first: str) -> None:
    leap_only_in_2000 = _with_check_digit(f"{first}00022912345")
    assert is_valid_cnp(leap_only_in_2000)
    assert cnp_birth_date(leap_only_in_2000) == date(2000, 2, 29)
    assert cnp_birth_date(_with_check_digit(f"{first}85061512345")) == date(1985, 6, 15)


def test_the_b2c_placeholder_is_never_a_cnp() -> None:
    assert is_b2c_placeholder(B2C_PLACEHOLDER)
    assert is_b2c_placeholder("0000000 000000")
    assert not is_b2c_placeholder("1800101123450")
    assert classify_person_id(B2C_PLACEHOLDER) is PersonIdKind.B2C_PLACEHOLDER
    assert classify_person_id("1800101123450") is PersonIdKind.CNP
    with pytest.raises(InvalidCnp, match="B2C placeholder"):
        validate_cnp(B2C_PLACEHOLDER)
    with pytest.raises(InvalidCnp, match="check digit"):
        classify_person_id("1800101123456")


def test_every_identifier_error_is_a_value_error() -> None:
    for error in (InvalidCui, InvalidCnp, InvalidVatNumber):
        assert issubclass(error, InvalidTaxId)
        assert issubclass(error, ValueError)


_CNP_FIRST12 = st.builds(
    lambda sex, born, county, serial: f"{sex}{born:%y%m%d}{county:02d}{serial:03d}",
    st.sampled_from("123456"),
    st.dates(min_value=date(1900, 1, 1), max_value=date(1999, 12, 31)),
    st.integers(min_value=1, max_value=52),
    st.integers(min_value=0, max_value=999),
)


@given(_CNP_FIRST12)
def test_a_cnp_body_with_its_check_digit_is_valid(first12: str) -> None:
    cnp = first12 + str(cnp_check_digit(first12))
    assert validate_cnp(cnp) == cnp
    assert classify_person_id(cnp) is PersonIdKind.CNP


@given(_CNP_FIRST12, st.integers(min_value=1, max_value=9))
def test_changing_the_cnp_check_digit_invalidates(first12: str, delta: int) -> None:
    wrong = (cnp_check_digit(first12) + delta) % 10
    assert not is_valid_cnp(first12 + str(wrong))


@given(_CNP_FIRST12, st.integers(min_value=0, max_value=11), st.integers(min_value=1, max_value=9))
def test_a_single_mistyped_digit_is_caught(first12: str, position: int, delta: int) -> None:
    # Every weight is coprime with 11, so one mistyped digit always changes the sum mod 11; the
    # typo slips through only when the two sums are 1 and 10, which share check digit 1.
    typo = first12[:position] + str((int(first12[position]) + delta) % 10) + first12[position + 1 :]
    if cnp_check_digit(typo) == cnp_check_digit(first12):
        assert {_weighted_sum(first12), _weighted_sum(typo)} == {1, 10}


def _weighted_sum(first12: str) -> int:
    """The CNP sum mod 11 computed independently of the module under test."""
    weights = (2, 7, 9, 1, 4, 6, 3, 5, 8, 2, 7, 9)
    return sum(int(d) * w for d, w in zip(first12, weights, strict=True)) % 11


# -- EU VAT numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "prefix", "country"),
    [
        ("ATU12345678", "AT", "AT"),
        ("BE0123456789", "BE", "BE"),
        ("BG123456789", "BG", "BG"),
        ("BG1234567890", "BG", "BG"),
        ("CY12345678X", "CY", "CY"),
        ("CZ12345678", "CZ", "CZ"),
        ("CZ1234567890", "CZ", "CZ"),
        ("de 123 456 789", "DE", "DE"),
        ("DK12345678", "DK", "DK"),
        ("EE123456789", "EE", "EE"),
        ("EL123456789", "EL", "GR"),
        ("ESX1234567X", "ES", "ES"),
        ("ES12345678Z", "ES", "ES"),
        ("FI12345678", "FI", "FI"),
        ("FRXX123456789", "FR", "FR"),
        ("FR12345678901", "FR", "FR"),
        ("HR12345678901", "HR", "HR"),
        ("HU12345678", "HU", "HU"),
        ("IE1234567WA", "IE", "IE"),
        ("IE1234567T", "IE", "IE"),
        ("IE1A23456T", "IE", "IE"),
        ("IT12345678901", "IT", "IT"),
        ("LT123456789", "LT", "LT"),
        ("LT123456789012", "LT", "LT"),
        ("LU12345678", "LU", "LU"),
        ("LV12345678901", "LV", "LV"),
        ("MT12345678", "MT", "MT"),
        ("NL123456789B01", "NL", "NL"),
        ("PL1234567890", "PL", "PL"),
        ("PT123456789", "PT", "PT"),
        ("RO4221306", "RO", "RO"),
        ("ro 12345674", "RO", "RO"),
        ("SE123456789001", "SE", "SE"),
        ("SI12345678", "SI", "SI"),
        ("SK1234567890", "SK", "SK"),
        ("XI123456789", "XI", "GB"),
    ],
)
def test_eu_vat_numbers_of_every_member_state(raw: str, prefix: str, country: str) -> None:
    vat = validate_eu_vat(raw)
    assert (vat.prefix, vat.country) == (prefix, country)
    assert str(vat) == normalize_vat_number(raw)
    assert is_valid_eu_vat(raw)


def test_every_member_state_has_a_format() -> None:
    member_states = {
        "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "EL", "ES", "FI", "FR", "HR", "HU",
        "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
    }  # fmt: skip
    assert len(member_states) == 27
    assert member_states <= EU_VAT_PREFIXES


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("DE12345678", "DE format"),
        ("ATU1234567", "AT format"),
        ("NL123456789A01", "NL format"),
        ("SE123456789002", "SE format"),
        ("BE2123456789", "BE format"),
        ("FRIO123456789", "FR format"),
        ("US123456789", "EU VAT prefix"),
        ("123456789", "EU VAT prefix"),
        ("GR123456789", "prefix EL"),
        ("RO12345678", "check digit"),
        ("RO1", "RO format"),
    ],
)
def test_invalid_vat_numbers_name_the_problem(raw: str, problem: str) -> None:
    with pytest.raises(InvalidVatNumber, match=problem) as raised:
        validate_eu_vat(raw)
    assert repr(raw) in str(raised.value)
    assert not is_valid_eu_vat(raw)


@given(st.integers(min_value=1, max_value=999_999_999))
def test_ro_vat_is_ro_plus_a_valid_cui(body: int) -> None:
    cui = str(body) + str(cui_check_digit(str(body)))
    assert validate_eu_vat("RO" + cui) == VatNumber("RO", cui, "RO")
    wrong = str(body) + str((cui_check_digit(str(body)) + 1) % 10)
    assert not is_valid_eu_vat("RO" + wrong)
