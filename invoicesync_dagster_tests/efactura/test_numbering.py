"""The numbering policy: document number format, numbering year, source keys, allocation order."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicesync_dagster.efactura.numbering import (
    DocumentNumber,
    NumberingError,
    NumberingRequest,
    SourceKind,
    allocation_batches,
    check_source_key,
    format_document_number,
    issue_year,
    parse_document_number,
    source_key,
)

SERIES = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20
)


def test_document_number_is_series_year_and_a_six_digit_number() -> None:
    assert format_document_number("INV", 2026, 123) == "INV-2026-000123"
    assert format_document_number("F2", 2027, 1) == "F2-2027-000001"


def test_numbers_past_a_million_grow_wider_instead_of_being_cut() -> None:
    assert format_document_number("INV", 2026, 1_234_567) == "INV-2026-1234567"


def test_the_longest_document_number_meets_br_ro_010() -> None:
    longest = format_document_number("S" * 20, 9999, 999_999)
    assert len(longest) == 32 <= 200
    assert any(character.isdigit() for character in longest)


@pytest.mark.parametrize("series", ["", "IN-V", "INV 1", "ÎNV", "A" * 21])
def test_a_series_outside_letters_and_digits_is_refused(series: str) -> None:
    with pytest.raises(NumberingError, match="1-20 letters or digits"):
        format_document_number(series, 2026, 1)


@pytest.mark.parametrize("number", [0, -1, True])
def test_numbers_start_at_one(number: int) -> None:
    with pytest.raises(NumberingError, match="≥ 1"):
        format_document_number("INV", 2026, number)


@pytest.mark.parametrize("year", [1999, 10_000, "2026"])
def test_a_year_outside_four_digits_is_refused(year: int) -> None:
    with pytest.raises(NumberingError, match="numbering year"):
        format_document_number("INV", year, 1)


@given(series=SERIES, year=st.integers(2000, 9999), number=st.integers(1, 10**9))
def test_parse_inverts_format(series: str, year: int, number: int) -> None:
    text = format_document_number(series, year, number)
    assert parse_document_number(text) == DocumentNumber(series, year, number)
    assert str(parse_document_number(text)) == text


@pytest.mark.parametrize(
    "text", ["INV-2026-123", "INV-2026-000000", "INV-26-000001", "INV2026000001", "I-NV-2026-1"]
)
def test_parse_refuses_what_format_never_writes(text: str) -> None:
    with pytest.raises(NumberingError):
        parse_document_number(text)


def test_the_year_is_the_issue_dates_year_in_bucharest() -> None:
    # Bucharest is UTC+2 in winter: 22:00Z on 31 December is already New Year there.
    assert issue_year(datetime(2026, 12, 31, 21, 59, 59, tzinfo=UTC)) == 2026
    assert issue_year(datetime(2026, 12, 31, 22, 0, tzinfo=UTC)) == 2027
    assert issue_year(datetime(2027, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=5)))) == 2026
    assert issue_year(date(2026, 12, 31)) == 2026


def test_a_naive_issue_time_is_refused() -> None:
    with pytest.raises(NumberingError, match="no time zone"):
        issue_year(datetime(2026, 12, 31, 23, 0))


def test_source_keys_name_the_stripe_object() -> None:
    assert source_key(SourceKind.STRIPE_INVOICE, "in_123") == "stripe_invoice:in_123"
    assert source_key("stripe_refund", "re_1") == "stripe_refund:re_1"
    assert check_source_key("stripe_credit_note:cn_1") == "stripe_credit_note:cn_1"


@pytest.mark.parametrize(
    "key", ["in_123", "stripe_invoice:", "stripe_invoices:in_1", "stripe_invoice:in 1", ""]
)
def test_malformed_source_keys_are_refused(key: str) -> None:
    with pytest.raises(NumberingError, match="KIND:STRIPE_ID"):
        check_source_key(key)


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def test_batches_group_by_series_and_bucharest_year_in_trigger_time_order() -> None:
    requests = [
        NumberingRequest("stripe_invoice:in_c", "INV", _at(31, 23)),  # 2027 in Bucharest
        NumberingRequest("stripe_invoice:in_b", "INV", _at(30, 9)),
        NumberingRequest("stripe_refund:re_a", "CN", _at(30, 9)),
        NumberingRequest("stripe_invoice:in_a", "INV", _at(30, 9)),  # same time: by key
        NumberingRequest("stripe_charge:ch_a", "INV", _at(1, 8)),
    ]
    assert allocation_batches(requests) == {
        ("INV", 2026): ["stripe_charge:ch_a", "stripe_invoice:in_a", "stripe_invoice:in_b"],
        ("CN", 2026): ["stripe_refund:re_a"],
        ("INV", 2027): ["stripe_invoice:in_c"],
    }


@given(st.permutations(range(6)))
def test_batch_order_does_not_depend_on_input_order(order: list[int]) -> None:
    requests = [
        NumberingRequest(f"stripe_invoice:in_{i}", "INV", _at(1 + i % 3, 10)) for i in order
    ]
    assert allocation_batches(requests) == {
        ("INV", 2026): [f"stripe_invoice:in_{i}" for i in (0, 3, 1, 4, 2, 5)]
    }


def test_a_source_listed_twice_must_agree_with_itself() -> None:
    same = NumberingRequest("stripe_invoice:in_1", "INV", _at(1, 10))
    assert allocation_batches([same, same]) == {("INV", 2026): ["stripe_invoice:in_1"]}
    moved = NumberingRequest("stripe_invoice:in_1", "INV", _at(2, 10))
    with pytest.raises(NumberingError, match="requested twice"):
        allocation_batches([same, moved])
