from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicesync_dagster.efactura.identifiers import (
    InvalidCui,
    cui_check_digit,
    is_valid_cui,
    normalize_cui,
    validate_cui,
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
