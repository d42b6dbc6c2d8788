"""`submission_deadline`: documents that ANAF has not accepted yet, against their filing
deadline (efactura/deadlines.py: 5 working days from 2026). Evaluated with every
efactura_submissions run, over every day's documents, as of today in Bucharest."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb

from invoicesync_dagster.defs.metadata import markdown_table
from invoicesync_dagster.defs.resources import WarehouseResource
from invoicesync_dagster.efactura.deadlines import Urgency, deadline, urgency

BUCHAREST = ZoneInfo("Europe/Bucharest")
WHAT_TO_DO = (
    "held or blocked: fix what `SELECT * FROM v_documents_to_fix` says and re-materialize their "
    "days; rejected: fix what the errors in v_invoice_status say, rebuild the day and file it; "
    "submitted: ANAF has not answered yet, check that anaf_status_sensor is running. Tell the "
    "accountant about every late document."
)


def open_documents(connection: duckdb.DuckDBPyConnection, today: date) -> list[dict[str, object]]:
    """Numbered documents not accepted yet, with their deadline and urgency as of `today`."""
    rows = connection.execute(
        "SELECT document_id, invoice_number, issue_date, status FROM efactura_documents "
        "WHERE invoice_number IS NOT NULL AND status <> 'accepted' ORDER BY issue_date, number"
    ).fetchall()
    return [
        {"document": document_id, "number": number, "issued": issued, "status": status,
         "deadline": deadline(issued), "urgency": urgency(issued, today)}
        for document_id, number, issued, status in rows
    ]  # fmt: skip


@dg.asset_check(
    asset="efactura_submissions",
    description="Numbered documents ANAF has not accepted within their filing term: ERROR once "
    "the deadline (5 working days from issue, Romanian holidays excluded; 5 calendar days for "
    "documents issued in 2025) has passed, WARN from the 3rd day. Fix what holds them (see "
    "v_documents_to_fix and the filing errors in v_invoice_status) and file them today.",
)
def submission_deadline(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    today = datetime.now(BUCHAREST).date()
    with warehouse.connect() as connection:
        waiting = open_documents(connection, today)
    late = [d for d in waiting if d["urgency"] is Urgency.LATE]
    soon = [d for d in waiting if d["urgency"] is Urgency.DUE_SOON]
    table = markdown_table(
        ["number", "issued", "deadline", "status"],
        [[str(d["number"]), str(d["issued"]), str(d["deadline"]), str(d["status"])]
         for d in late + soon],
    )  # fmt: skip
    return dg.AssetCheckResult(
        passed=not late and not soon,
        severity=dg.AssetCheckSeverity.ERROR if late else dg.AssetCheckSeverity.WARN,
        metadata={
            "late": len(late),
            "due_soon": len(soon),
            "documents": dg.MetadataValue.md(table),
            **({"what_to_do": WHAT_TO_DO} if late or soon else {}),
        },
    )
