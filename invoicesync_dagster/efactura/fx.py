"""Which BNR exchange rate a document uses, and its VAT amount in RON (EFACTURA.md §4.4).

A non-RON document carries its VAT total in RON too (BT-111, BR-RO-030 / BR-53). The rate is
the National Bank of Romania's reference rate. BNR publishes one set per banking day, shortly
after 13:00 Bucharest time; in BNR's XML the set is dated with that day (`Cube date="D"`).

**The rule** (a legal choice; confirm it with the company's accountant): Cod fiscal art. 290
says the exchange rate for VAT is the last rate communicated by BNR *before* the date the VAT
becomes chargeable. The common Romanian practice reads that as the rate BNR published on the
last banking day before the issue date: a document issued on Tuesday uses Monday's rate, one
issued on Monday (or on Saturday, Sunday) uses Friday's, one issued the day after a holiday uses
the rate of the banking day before the holiday. Every document of a day therefore uses the same
rate, whatever the hour it was issued, and that rate was already published when the day began.

`RATE_PUBLISHED_DAYS_BEFORE_ISSUE` is that choice in one constant: 1 is the rule above; 0 would
use the rate dated on the issue date itself when there is one (only right for documents issued
after BNR publishes, ~13:00), else the last one before.

RON VAT amount = tax amount × rate / multiplier, rounded half up to the ban (BNR quotes some
currencies per 100 units: `multiplier="100"` for HUF, JPY, KRW...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

RON = "RON"
# 1: the rate BNR published on the last banking day before the issue date (art. 290 practice).
RATE_PUBLISHED_DAYS_BEFORE_ISSUE = 1
# The oldest rate a document may use, in calendar days before its issue date. The longest run of
# days without a new rate is around Christmas/New Year and Orthodox Easter (about a week), so a
# larger gap means rates are missing from the warehouse, not that BNR published none.
MAX_RATE_AGE_DAYS = 10

_CENT = Decimal("0.01")


class FxRateMissing(LookupError):
    """No usable BNR rate for a currency and issue date; the message says why and what to do."""


@dataclass(frozen=True)
class PublishedRate:
    """One rate as BNR publishes it: `rate` RON for `multiplier` units of the currency."""

    rate: Decimal
    multiplier: int = 1

    def __post_init__(self) -> None:
        if not self.rate.is_finite() or self.rate <= 0:
            raise ValueError(f"an exchange rate must be a positive number, got {self.rate}")
        if self.multiplier < 1:
            raise ValueError(f"a rate multiplier must be >= 1, got {self.multiplier}")


@dataclass(frozen=True)
class FxRate:
    """The rate a document uses: `rate` RON per `multiplier` units of `currency`, as published
    by BNR for `rate_date`."""

    currency: str
    rate: Decimal
    rate_date: date
    multiplier: int = 1

    @property
    def ron_per_unit(self) -> Decimal:
        """RON for one unit of the currency (BNR's multipliers are 1 and 100: exact)."""
        return self.rate / self.multiplier

    def to_ron(self, amount: Decimal) -> Decimal:
        """`amount` of the currency in RON, rounded half up to 2 decimals (one rounding only)."""
        return (amount * self.rate / self.multiplier).quantize(_CENT, rounding=ROUND_HALF_UP)


def ron_vat_amount(tax_amount: Decimal, fx: FxRate) -> Decimal:
    """The document's VAT total in RON (BT-111) from its VAT total in its own currency."""
    return fx.to_ron(tax_amount)


def rate_for(
    issue_date: date,
    rates: Mapping[date, Mapping[str, PublishedRate]],
    currency: str,
    *,
    days_before_issue: int = RATE_PUBLISHED_DAYS_BEFORE_ISSUE,
    max_age_days: int = MAX_RATE_AGE_DAYS,
) -> FxRate:
    """The rate a document of `currency` issued on `issue_date` uses: the latest rate in `rates`
    (BNR's sets by the date they are dated with) dated on or before `issue_date` minus
    `days_before_issue`, and at most `max_age_days` before `issue_date`.

    RON needs no rate: it gets 1, dated `issue_date`. FxRateMissing if there is no rate in reach.
    """
    code = currency.strip().upper()
    if code == RON:
        return FxRate(RON, Decimal(1), issue_date)
    latest = issue_date - timedelta(days=days_before_issue)
    oldest = issue_date - timedelta(days=max_age_days)
    day = latest
    while day >= oldest:
        published = rates.get(day, {}).get(code)
        if published is not None:
            return FxRate(code, published.rate, day, published.multiplier)
        day -= timedelta(days=1)
    if rates and not any(code in by_currency for by_currency in rates.values()):
        raise FxRateMissing(
            f"no BNR rate for {code} (document issued {issue_date}): BNR publishes reference "
            f"rates for about 30 currencies and {code} is not among the rates loaded: check "
            "the currency code (a currency BNR does not quote cannot be documented here)"
        )
    raise FxRateMissing(
        f"no BNR rate for {code} dated {oldest}..{latest} (document issued {issue_date}; the "
        f"rule uses the last rate published before the issue date, at most {max_age_days} days "
        f"old): materialize the fx_rates asset for partition {issue_date}"
    )
