from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicesync_dagster.efactura.money import (
    format_amount,
    format_decimal,
    format_price,
    from_minor_units,
    is_whole_cents,
    round_money,
    to_decimal,
    to_minor_units,
)


@pytest.mark.parametrize(
    ("value", "rounded"),
    [
        ("0.125", "0.13"),  # half up, not to even
        ("0.135", "0.14"),
        ("-0.125", "-0.13"),  # away from zero on a tie, symmetric for storno amounts
        ("2.674999", "2.67"),
        ("19.995", "20.00"),
        ("7", "7.00"),
    ],
)
def test_round_money_rounds_half_up(value: str, rounded: str) -> None:
    assert str(round_money(Decimal(value))) == rounded


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1999, "EUR", "19.99"),
        (1999, "ron", "19.99"),
        (5, "RON", "0.05"),
        (-250, "USD", "-2.50"),
        (500, "JPY", "500"),
        (1234, "KWD", "1.234"),
    ],
)
def test_minor_units(amount: int, currency: str, expected: str) -> None:
    assert from_minor_units(amount, currency) == Decimal(expected)
    assert to_minor_units(Decimal(expected), currency) == amount


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_minor_units_round_trip(amount: int) -> None:
    value = from_minor_units(amount, "EUR")
    assert is_whole_cents(value)
    assert to_minor_units(value, "EUR") == amount


def test_minor_units_refuse_floats_and_sub_unit_amounts() -> None:
    with pytest.raises(TypeError, match="integer in minor units"):
        from_minor_units(19.99, "EUR")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="more decimals"):
        to_minor_units(Decimal("1.005"), "EUR")


def test_to_decimal_refuses_floats_and_junk() -> None:
    assert to_decimal("12.50") == Decimal("12.50")
    assert to_decimal(3) == Decimal(3)
    for bad in (0.1, True, "abc", "NaN", "Infinity"):
        with pytest.raises(ValueError):
            to_decimal(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [("5", "5.00"), ("1.1", "1.10"), ("1.100", "1.10"), ("-0.00", "0.00"), ("1E+3", "1000.00")],
)
def test_amounts_are_written_with_two_decimals(value: str, text: str) -> None:
    assert format_amount(Decimal(value)) == text


def test_an_amount_below_the_cent_is_written_as_is_for_validators_to_see() -> None:
    assert format_amount(Decimal("1.005")) == "1.005"
    assert not is_whole_cents(Decimal("1.005"))


@pytest.mark.parametrize(
    ("value", "text"), [("19.00", "19"), ("1E+2", "100"), ("0.500", "0.5"), ("3.5", "3.5")]
)
def test_quantities_and_rates_are_plain(value: str, text: str) -> None:
    assert format_decimal(Decimal(value)) == text


def test_prices_keep_their_precision() -> None:
    assert format_price(Decimal("24.5")) == "24.50"
    assert format_price(Decimal("0.0125")) == "0.0125"
    assert format_price(Decimal("10.005")) == "10.005"
