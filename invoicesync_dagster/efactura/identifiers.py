"""Romanian tax identifiers: CUI/CIF (companies).

The check-digit rule is ANAF's (EFACTURA.md §5): weights 7 5 3 2 1 7 5 3 2 over the body
left-padded to 9 digits, check = sum * 10 mod 11, where 10 counts as 0.
"""

from __future__ import annotations

import re

_CUI_WEIGHTS = (7, 5, 3, 2, 1, 7, 5, 3, 2)
_CUI_SHAPE = re.compile(r"^\d{2,10}$")


class InvalidCui(ValueError):
    """A CUI that is malformed or fails its check digit; the message says which and why."""


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
