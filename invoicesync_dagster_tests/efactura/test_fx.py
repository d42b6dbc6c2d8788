"""Which BNR rate a document uses, and its VAT amount in RON."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from invoicesync_dagster.efactura.fx import (
    MAX_RATE_AGE_DAYS,
    RATE_PUBLISHED_DAYS_BEFORE_ISSUE,
    FxRate,
    FxRateMissing,
    PublishedRate,
    rate_for,
    ron_vat_amount,
)


def eur(rate: str) -> dict[str, PublishedRate]:
    return {"EUR": PublishedRate(Decimal(rate)), "HUF": PublishedRate(Decimal("1.2745"), 100)}


# BNR's sets around Christmas 2025: 25-26 Dec are holidays, 27-28 Dec a weekend.
RATES = {
    date(2025, 12, 19): eur("5.0801"),  # Friday
    date(2025, 12, 22): eur("5.0812"),  # Monday
    date(2025, 12, 23): eur("5.0823"),
    date(2025, 12, 24): eur("5.0834"),  # Wednesday, last banking day before Christmas
    date(2025, 12, 29): eur("5.0845"),  # Monday
}


def test_the_rule_is_the_rate_published_the_banking_day_before() -> None:
    assert RATE_PUBLISHED_DAYS_BEFORE_ISSUE == 1
    fx = rate_for(date(2025, 12, 23), RATES, "EUR")  # Tuesday → Monday's rate
    assert fx == FxRate("EUR", Decimal("5.0812"), date(2025, 12, 22))


@pytest.mark.parametrize(
    ("issued", "rate_date"),
    [
        (date(2025, 12, 22), date(2025, 12, 19)),  # Monday → Friday
        (date(2025, 12, 20), date(2025, 12, 19)),  # Saturday → Friday
        (date(2025, 12, 21), date(2025, 12, 19)),  # Sunday → Friday
        (date(2025, 12, 25), date(2025, 12, 24)),  # Christmas → the day before
        (date(2025, 12, 28), date(2025, 12, 24)),  # Sunday after two holidays
        (date(2025, 12, 29), date(2025, 12, 24)),  # first banking day after them
        (date(2025, 12, 30), date(2025, 12, 29)),
    ],
)
def test_weekends_and_holidays_fall_back_to_the_last_banking_day(
    issued: date, rate_date: date
) -> None:
    fx = rate_for(issued, RATES, "EUR")
    assert fx.rate_date == rate_date
    assert fx.rate == RATES[rate_date]["EUR"].rate


def test_same_day_variant_of_the_rule() -> None:
    assert rate_for(date(2025, 12, 23), RATES, "EUR", days_before_issue=0).rate_date == date(
        2025, 12, 23
    )
    assert rate_for(date(2025, 12, 27), RATES, "EUR", days_before_issue=0).rate_date == date(
        2025, 12, 24
    )


def test_a_gap_too_long_is_a_clear_error() -> None:
    issued = date(2025, 12, 19) + timedelta(days=MAX_RATE_AGE_DAYS + 1)
    only_old = {date(2025, 12, 19): RATES[date(2025, 12, 19)]}
    assert rate_for(issued - timedelta(days=1), only_old, "EUR").rate_date == date(2025, 12, 19)
    with pytest.raises(FxRateMissing) as error:
        rate_for(issued, only_old, "EUR")
    message = str(error.value)
    assert "EUR" in message and str(issued) in message
    assert f"materialize the fx_rates asset for partition {issued}" in message


def test_no_rates_at_all_is_a_clear_error() -> None:
    with pytest.raises(FxRateMissing, match="materialize the fx_rates asset"):
        rate_for(date(2025, 12, 23), {}, "EUR")


def test_a_currency_bnr_does_not_publish_is_named() -> None:
    with pytest.raises(FxRateMissing, match=r"no BNR rate for XYZ .*not among the rates loaded"):
        rate_for(date(2025, 12, 23), RATES, "xyz")


def test_ron_needs_no_rate_and_codes_are_case_insensitive() -> None:
    assert rate_for(date(2025, 12, 23), {}, "RON") == FxRate("RON", Decimal(1), date(2025, 12, 23))
    assert rate_for(date(2025, 12, 23), RATES, " eur ").currency == "EUR"


def test_ron_vat_amount_rounds_half_up_once() -> None:
    fx = FxRate("EUR", Decimal("4.9650"), date(2025, 12, 22))
    # 1.00 × 4.9650 = 4.965 exactly: half up gives 4.97 (banker's rounding would give 4.96).
    assert ron_vat_amount(Decimal("1.00"), fx) == Decimal("4.97")
    assert ron_vat_amount(Decimal("19.00"), FxRate("EUR", Decimal("4.9763"), fx.rate_date)) == (
        Decimal("94.55")  # 94.5497
    )
    # A credit note's negative VAT mirrors the invoice's.
    assert ron_vat_amount(Decimal("-1.00"), fx) == Decimal("-4.97")
    assert ron_vat_amount(Decimal("0.00"), fx) == Decimal("0.00")


def test_multiplier_divides_the_published_rate() -> None:
    fx = rate_for(date(2025, 12, 23), RATES, "HUF")
    assert (fx.rate, fx.multiplier) == (Decimal("1.2745"), 100)
    assert fx.ron_per_unit == Decimal("0.012745")
    # 1234.56 HUF × 1.2745 / 100 = 15.7344672 RON
    assert ron_vat_amount(Decimal("1234.56"), fx) == Decimal("15.73")
    # 1000.00 HUF × 1.2745 / 100 = 12.745 exactly → half up
    assert fx.to_ron(Decimal("1000.00")) == Decimal("12.75")


@pytest.mark.parametrize(
    ("rate", "multiplier"), [("0", 1), ("-4.97", 1), ("NaN", 1), ("Infinity", 1), ("4.97", 0)]
)
def test_published_rate_refuses_nonsense(rate: str, multiplier: int) -> None:
    with pytest.raises(ValueError):
        PublishedRate(Decimal(rate), multiplier)
