"""The schedules: Bucharest time, the previous day, around the DST changes."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from invoicesync_dagster.definitions import defs

BUCHAREST = ZoneInfo("Europe/Bucharest")


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    return defs()


def tick(definitions: dg.Definitions, name: str, when: datetime) -> list[str | None]:
    schedule = definitions.resolve_schedule_def(name)
    context = dg.build_schedule_context(
        scheduled_execution_time=when, repository_def=definitions.get_repository_def()
    )
    return [request.partition_key for request in schedule.evaluate_tick(context).run_requests]


def test_the_daily_schedule_runs_yesterday_at_0215_bucharest(definitions: dg.Definitions) -> None:
    schedule = definitions.resolve_schedule_def("daily_invoice_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == (
        "15 2 * * *",
        "Europe/Bucharest",
    )
    assert schedule.job_name == "daily_invoice_job"
    assert schedule.default_status is dg.DefaultScheduleStatus.STOPPED
    # The night after the spring change (29 March 2026, 23 h) and after the autumn one (25 Oct).
    assert tick(definitions, "daily_invoice_schedule",
                datetime(2026, 3, 30, 2, 15, tzinfo=BUCHAREST)) == ["2026-03-29"]  # fmt: skip
    assert tick(definitions, "daily_invoice_schedule",
                datetime(2026, 10, 26, 2, 15, tzinfo=BUCHAREST)) == ["2026-10-25"]  # fmt: skip


def test_the_weekly_customer_sync_rebuilds_the_last_seven_days(
    definitions: dg.Definitions,
) -> None:
    schedule = definitions.resolve_schedule_def("weekly_customer_sync_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == (
        "0 3 * * 0",
        "Europe/Bucharest",
    )
    keys = tick(definitions, "weekly_customer_sync_schedule",
                datetime(2026, 3, 29, 3, 0, tzinfo=BUCHAREST))  # fmt: skip
    assert keys == [f"2026-03-{day:02d}" for day in range(22, 29)]


def test_the_daily_job_covers_every_step_of_a_day(definitions: dg.Definitions) -> None:
    job = definitions.resolve_job_def("daily_invoice_job")
    assert job.tags["invoicesync/duckdb"] == "writer"
    selected = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert {"stripe_invoices", "customer_tax_profiles", "efactura_documents",
            "efactura_submissions"} <= selected  # fmt: skip
