"""ANAF's filing deadline: calendar days in 2025, working days (weekends, holidays) from 2026."""

from __future__ import annotations

from datetime import date

import pytest

from invoicesync_dagster.efactura.deadlines import (
    Urgency,
    days_counted,
    deadline,
    is_working_day,
    urgency,
)


@pytest.mark.parametrize(
    ("issued", "last_day"),
    [
        (date(2025, 12, 10), date(2025, 12, 15)),  # 2025: 5 calendar days, a weekend included
        (date(2026, 3, 5), date(2026, 3, 12)),  # Thursday: Fri, Mon, Tue, Wed, Thu
        (date(2026, 4, 8), date(2026, 4, 17)),  # Good Friday 10 and Easter Monday 13 skipped
        (date(2026, 11, 27), date(2026, 12, 8)),  # Saint Andrew (30 Nov) and National Day (1 Dec)
        (date(2025, 12, 31), date(2026, 1, 5)),  # issued in 2025: the calendar rule still
    ],
)
def test_deadline(issued: date, last_day: date) -> None:
    assert deadline(issued) == last_day


def test_holidays_and_weekends_are_not_working_days() -> None:
    assert not is_working_day(date(2026, 4, 13))  # Orthodox Easter Monday
    assert not is_working_day(date(2026, 6, 1))  # Children's Day and Pentecost Monday
    assert not is_working_day(date(2026, 3, 7))  # Saturday
    assert is_working_day(date(2026, 3, 9))


def test_urgency_around_a_weekend() -> None:
    issued = date(2026, 3, 5)  # Thursday
    assert days_counted(issued, date(2026, 3, 8)) == 1  # Fri; the weekend does not count
    assert urgency(issued, date(2026, 3, 9)) is Urgency.ON_TIME  # 2 days used
    assert urgency(issued, date(2026, 3, 10)) is Urgency.DUE_SOON  # 3 days used
    assert urgency(issued, date(2026, 3, 12)) is Urgency.DUE_SOON  # the last day
    assert urgency(issued, date(2026, 3, 13)) is Urgency.LATE
