"""Money as `Decimal`: rounding to the cent, Stripe minor units, and how amounts are written.

CIUS-RO allows at most 2 decimals on every monetary amount (BR-DEC-RO-*), so amounts are
rounded half up (away from zero on a tie: 0.125 → 0.13, -0.125 → -0.13), the way Romanian
accounting and ANAF's own examples round. Prices and quantities are not amounts: they keep
their precision (BT-146 and BT-129 are not limited).

Never build an amount from a float: `to_decimal` refuses them.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

# Stripe sends amounts as integers in the currency's minor unit. Most currencies have 2
# decimals; these have none (Stripe's list of zero-decimal currencies) or three.
ZERO_DECIMAL_CURRENCIES = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
})  # fmt: skip
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def to_decimal(value: Decimal | int | str) -> Decimal:
    """A Decimal from an int, a numeric string or a Decimal. Floats are refused (they cannot
    hold most cent values exactly); errors are ValueErrors so that pydantic reports them."""
    if isinstance(value, (bool, float)):
        raise ValueError(f"amount {value!r} must be a Decimal, int or string, never a float/bool")
    try:
        result = Decimal(value)
    except (InvalidOperation, TypeError):
        raise ValueError(f"amount {value!r} is not a number") from None
    if not result.is_finite():
        raise ValueError(f"amount {value!r} is not a finite number")
    return result


def round_money(value: Decimal) -> Decimal:
    """Round to the cent, half up (away from zero on a tie)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def is_whole_cents(value: Decimal) -> bool:
    """True when the amount has no digit below the cent (1.1, 1.10 and 1.100 all qualify)."""
    return value == value.quantize(CENT, rounding=ROUND_HALF_UP)


def currency_exponent(currency: str) -> int:
    """How many decimals the currency's minor unit has, as Stripe counts them."""
    code = currency.upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def from_minor_units(amount: int, currency: str) -> Decimal:
    """Stripe's integer amount (`1999` EUR) → `Decimal("19.99")`; zero-decimal currencies are
    taken as whole units (`500` JPY → `500`)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"a Stripe amount is an integer in minor units, got {amount!r}")
    return Decimal(amount).scaleb(-currency_exponent(currency))


def to_minor_units(amount: Decimal, currency: str) -> int:
    """`Decimal("19.99")` EUR → `1999`; refuses amounts finer than the currency's minor unit."""
    scaled = amount.scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} has more decimals than the currency's minor unit")
    return int(scaled)


def format_amount(value: Decimal) -> str:
    """How an amount is written in the XML: exactly two decimals (`5` → `5.00`). An amount with
    a digit below the cent is written as it is, so that validators see and reject it instead
    of it being rounded away here."""
    cents = value.quantize(CENT, rounding=ROUND_HALF_UP)
    if cents == value:
        return f"{cents + 0:f}"  # + 0 turns -0.00 into 0.00
    return f"{value:f}"


def format_decimal(value: Decimal) -> str:
    """A quantity, price or percentage in plain notation without trailing zeros
    (`Decimal("19.00")` → `19`, `Decimal("1E+2")` → `100`, `Decimal("0.500")` → `0.5`)."""
    normalized = value.normalize() + 0
    return f"{normalized:f}"


def format_price(value: Decimal) -> str:
    """A unit price: at least two decimals (`24.5` → `24.50`) but never rounded (`0.0125`
    stays), since BT-146 is not limited and rounding it would break quantity × price."""
    if is_whole_cents(value):
        return format_amount(value)
    return format_decimal(value)
