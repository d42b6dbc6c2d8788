"""The stareMesaj back-off (efactura/polling.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from invoicesync_dagster.efactura.polling import PendingUpload, delay_after, due

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_a_day_of_checks_stays_far_below_anafs_100_per_message() -> None:
    upload = PendingUpload("5001", "stripe_invoice:in_1", "2026-03-01", T0)
    moment, checks = upload.due_at(), 0
    while moment < T0 + timedelta(days=1):
        upload = upload.checked(moment)
        moment, checks = upload.due_at(), checks + 1
    assert 10 <= checks <= 25
    assert delay_after(0) == timedelta(minutes=1) and delay_after(50) == timedelta(hours=2)


def test_due_takes_the_longest_waiting_first_within_the_limit() -> None:
    early = PendingUpload("1", "d1", "p", T0)
    late = PendingUpload("2", "d2", "p", T0 + timedelta(minutes=3))
    later = PendingUpload("3", "d3", "p", T0, checks=1, next_check_at=T0 + timedelta(hours=1))
    now = T0 + timedelta(minutes=10)
    assert [p.index for p in due([later, late, early], now, limit=5)] == ["1", "2"]
    assert [p.index for p in due([later, late, early], now, limit=1)] == ["1"]
    assert due([later], now, limit=5) == []
