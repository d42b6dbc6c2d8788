"""Schedules, in Europe/Bucharest (the partitions' time zone). Off until turned on in the UI or
with `dagster schedule start`: filing documents with ANAF is a legal act, so the company decides
when it starts.

* `daily_invoice_schedule`, 02:15: the previous day through `daily_invoice_job` (Stripe has
  settled the day's payments by then; ANAF wants documents within 5 working days).
* `weekly_customer_sync_schedule`, Sunday 03:00: the buyer profiles of the last 7 days again,
  so that a CUI fixed in the mappings CSV or a change in ANAF's registry (VAT status, inactive)
  reaches the profiles before the next documents.
* `monthly_reconciliation_schedule`, the 1st at 04:00: the previous month's uploads checked
  against ANAF's message list (defs/efactura/reconciliation.py) while ANAF still keeps them
  (60 days), after the night's daily run.
"""

import dagster as dg

from invoicesync_dagster.defs.jobs import (
    customer_profiles_job,
    daily_invoice_job,
    monthly_reconciliation_job,
)
from invoicesync_dagster.defs.partitions import daily_partitions

daily_invoice_schedule = dg.build_schedule_from_partitioned_job(
    daily_invoice_job,
    hour_of_day=2,
    minute_of_hour=15,
    name="daily_invoice_schedule",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

WEEK = 7


@dg.schedule(
    job=customer_profiles_job,
    cron_schedule="0 3 * * 0",
    execution_timezone="Europe/Bucharest",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Sunday 03:00: rebuilds the buyer profiles of the last 7 days (one run per day, "
    "the DuckDB writer limit runs them one at a time).",
)
def weekly_customer_sync_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    moment = context.scheduled_execution_time
    keys = daily_partitions.get_partition_keys(current_time=moment)[-WEEK:]
    return [
        dg.RunRequest(run_key=f"customers-{key}-{moment:%Y%m%d}", partition_key=key) for key in keys
    ]


monthly_reconciliation_schedule = dg.build_schedule_from_partitioned_job(
    monthly_reconciliation_job,
    day_of_month=1,
    hour_of_day=4,
    minute_of_hour=0,
    name="monthly_reconciliation_schedule",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="The 1st at 04:00 Europe/Bucharest: the previous month through "
    "monthly_reconciliation_job (its findings in the efactura_reconciliation table).",
)
