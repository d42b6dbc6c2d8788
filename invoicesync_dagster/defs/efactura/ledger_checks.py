"""Checks on the books as a whole, evaluated with every filing run:

* `numbering_gapless`: every number of every series and year is allocated (1..max), and every
  allocated number that is not voided has its document; a number without one (its Stripe source
  vanished) must be voided with a reason (warehouse.numbering.void) to keep the sequence
  explained.
* `no_duplicate_submissions`: no document reached a provider twice, and no invoice number was
  accepted twice.
"""

import dagster as dg
import duckdb

from invoicesync_dagster.defs.metadata import markdown_table
from invoicesync_dagster.defs.resources import WarehouseResource
from invoicesync_dagster.warehouse.numbering import gaps

GAP_FIX = (
    "A missing number: its row was deleted from invoice_number_allocations by hand; restore it "
    "from a backup of the DuckDB file (never renumber: the number may already be at ANAF). A "
    "number without its document: if the sale did not happen, void it with a reason "
    "(warehouse.numbering.void(connection, source_key, reason); its source_key is in "
    "invoice_number_allocations), so the sequence stays explained."
)
DUPLICATE_FIX = (
    "Ask ANAF (SPV) or SmartBill which filing counts and cancel the other with a credit note; "
    "then tell the accountant."
)


def numbering_problems(connection: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    """(missing numbers, numbers without a document), as `SERIES-YEAR: n` / document ids."""
    missing = [
        f"{series}-{year}: {number}"
        for series, year in connection.execute(
            "SELECT DISTINCT series, year FROM invoice_number_allocations ORDER BY 1, 2"
        ).fetchall()
        for number in gaps(connection, series, year)
    ]
    orphans = [
        row[0]
        for row in connection.execute(
            "SELECT a.document_id FROM invoice_number_allocations AS a "
            "LEFT JOIN efactura_documents AS d ON d.document_id = a.source_key "
            "WHERE a.state = 'allocated' AND d.document_id IS NULL ORDER BY a.series, a.year, "
            "a.number"
        ).fetchall()
    ]
    return missing, orphans


def duplicate_submissions(connection: duckdb.DuckDBPyConnection) -> list[list[str]]:
    """[what, how often] for documents sent more than once and numbers accepted more than once."""
    rows = connection.execute(
        """
        SELECT 'document ' || document_id || ' (' || provider || ')', count(*)
        FROM efactura_submissions WHERE state IN ('sent', 'accepted')
        GROUP BY document_id, provider HAVING count(*) > 1
        UNION ALL
        SELECT 'number ' || invoice_number || ' (' || provider || ')', count(*)
        FROM efactura_submissions WHERE state = 'accepted'
        GROUP BY invoice_number, provider HAVING count(*) > 1
        ORDER BY 1
        """
    ).fetchall()
    return [[what, str(count)] for what, count in rows]


@dg.asset_check(
    asset="efactura_submissions",
    description="Numbers are consecutive per series and year (ERROR on a gap: rows were deleted "
    "by hand) and every allocated number has its document (WARN otherwise). " + GAP_FIX,
)
def numbering_gapless(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as connection:
        missing, orphans = numbering_problems(connection)
    return dg.AssetCheckResult(
        passed=not missing and not orphans,
        severity=dg.AssetCheckSeverity.ERROR if missing else dg.AssetCheckSeverity.WARN,
        metadata={
            "missing_numbers": dg.MetadataValue.json(missing[:100]),
            "numbers_without_document": dg.MetadataValue.json(orphans[:100]),
            **({"what_to_do": GAP_FIX} if missing or orphans else {}),
        },
    )


@dg.asset_check(
    asset="efactura_submissions",
    description="No document was filed twice with a provider and no invoice number was accepted "
    "twice. A failure names them. " + DUPLICATE_FIX,
)
def no_duplicate_submissions(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as connection:
        duplicates = duplicate_submissions(connection)
    return dg.AssetCheckResult(
        passed=not duplicates,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "duplicates": dg.MetadataValue.md(markdown_table(["what", "times"], duplicates)),
            **({"what_to_do": DUPLICATE_FIX} if duplicates else {}),
        },
    )
