"""When to ask ANAF about an upload again (EFACTURA.md §1.4: stareMesaj is limited to 100 queries
per message per day). Pure: the status sensor keeps the pending uploads in its cursor and asks
this module which are due.

ANAF usually answers within minutes, sometimes hours: checks back off 1, 2, 5, 10, 20, 30 and 60
minutes after the previous one, then every 2 hours. That is at most 19 checks on the first
day, far from the limit, and an upload stuck for days costs 12 a day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

BACKOFF_MINUTES = (1, 2, 5, 10, 20, 30, 60)
STEADY_MINUTES = 120


def delay_after(checks_done: int) -> timedelta:
    """How long to wait before the next check, after `checks_done` checks."""
    if checks_done < len(BACKOFF_MINUTES):
        return timedelta(minutes=BACKOFF_MINUTES[checks_done])
    return timedelta(minutes=STEADY_MINUTES)


@dataclass(frozen=True)
class PendingUpload:
    index: str  # ANAF's index_incarcare
    document_id: str
    partition_key: str
    uploaded_at: datetime
    checks: int = 0
    next_check_at: datetime | None = None

    def due_at(self) -> datetime:
        return self.next_check_at or self.uploaded_at + delay_after(0)

    def checked(self, at: datetime) -> PendingUpload:
        """This upload after a check at `at` that found it still processing."""
        done = self.checks + 1
        return replace(self, checks=done, next_check_at=at + delay_after(done))


def due(pending: Iterable[PendingUpload], now: datetime, limit: int) -> list[PendingUpload]:
    """At most `limit` uploads whose check is due, the longest waiting first."""
    ready = sorted((p for p in pending if p.due_at() <= now), key=lambda p: (p.due_at(), p.index))
    return ready[:limit]
