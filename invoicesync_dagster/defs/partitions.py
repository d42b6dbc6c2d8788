"""One partition = one calendar day in Europe/Bucharest (DST days are 23 h or 25 h long)."""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg

TIMEZONE = "Europe/Bucharest"
# The first day a company may want documented; backfills reach back no further.
FIRST_DAY = "2025-01-01"

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=FIRST_DAY, timezone=TIMEZONE, end_offset=0
)


def window_seconds(window: dg.TimeWindow) -> tuple[int, int]:
    """The window as unix seconds; `.timestamp()` keeps DST days at their true length."""
    return int(window.start.timestamp()), int(window.end.timestamp())


def partition_day(window: dg.TimeWindow) -> date:
    start: datetime = window.start
    return start.date()
