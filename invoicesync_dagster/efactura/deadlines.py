"""When a document must be filed with ANAF (EFACTURA.md §4.9). Pure.

* Issued until 31 Dec 2025: within 5 **calendar** days, counted from the day after issue (the
  Ministry's clarification: day 5 ends the term, weekends included).
* Issued from 1 Jan 2026 (OUG 89/2025): within 5 **working** days from issue: Saturdays,
  Sundays and Romanian public holidays (the `holidays` package's calendar for RO, which knows the
  Orthodox Easter and Pentecost) do not count.

A document not accepted by its deadline is late (ERROR); one that has used 3 of its days is
worth a look (WARN).
"""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum
from functools import cache

import holidays

DEADLINE_DAYS = 5
WARNING_DAYS = 3
WORKING_DAYS_FROM = date(2026, 1, 1)


@cache
def _romanian_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("RO", years=[year]))


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _romanian_holidays(day.year)


def days_counted(issued: date, today: date) -> int:
    """How many of the filing term's days have passed between `issued` and `today` (today
    included): calendar days before 2026, working days from then."""
    counted, day = 0, issued + timedelta(days=1)
    while day <= today:
        if issued < WORKING_DAYS_FROM or is_working_day(day):
            counted += 1
        day += timedelta(days=1)
    return counted


def deadline(issued: date) -> date:
    """The last day a document issued on `issued` may be filed."""
    day, counted = issued, 0
    while counted < DEADLINE_DAYS:
        day += timedelta(days=1)
        if issued < WORKING_DAYS_FROM or is_working_day(day):
            counted += 1
    return day


class Urgency(StrEnum):
    ON_TIME = "on_time"
    DUE_SOON = "due_soon"  # WARN: 3 or more of the 5 days used
    LATE = "late"  # ERROR: the deadline has passed


def urgency(issued: date, today: date) -> Urgency:
    if today > deadline(issued):
        return Urgency.LATE
    if days_counted(issued, today) >= WARNING_DAYS:
        return Urgency.DUE_SOON
    return Urgency.ON_TIME
