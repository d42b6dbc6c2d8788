"""`billable_events` and `efactura_documents`: what day D must document, and the documents.

The assets are thin: the decisions are the domain's (`efactura.billable`, `efactura.documents`),
the SQL the warehouse's. Numbers come from the DuckDB ledger (`warehouse.numbering.allocate`),
asked only for documents that passed the local rules; a re-run gets the same numbers back.

Checks: `documents_pass_local_rules` (ERROR) fails when a document of the day is held; held
documents have no number, no XML and status `held`, so the submission step, which only takes
`ready` documents, skips exactly them while the rest of the day goes on (a Dagster *blocking*
check would stop every document of the day). `documents_tie_to_stripe` compares, per currency,
the documents' totals with Stripe's.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
import duckdb

from invoicesync_dagster.defs.metadata import (
    markdown_table,
    table_metadata,
    totals_metadata,
    warehouse_link,
)
from invoicesync_dagster.defs.partitions import daily_partitions, partition_day
from invoicesync_dagster.defs.resources import CompanyResource, WarehouseResource
from invoicesync_dagster.efactura import billable, documents
from invoicesync_dagster.efactura.fx import MAX_RATE_AGE_DAYS
from invoicesync_dagster.efactura.numbering import NumberingRequest, allocation_batches
from invoicesync_dagster.warehouse import documents as stored
from invoicesync_dagster.warehouse import numbering
from invoicesync_dagster.warehouse.customers import load_profiles
from invoicesync_dagster.warehouse.fx import rates_between

PREVIEW_ROWS = 20

LOCAL_RULES_CHECK = dg.AssetCheckSpec(
    "documents_pass_local_rules",
    asset="efactura_documents",
    description="Every document of the day passes the local CIUS-RO rules and ties to Stripe. "
    "A held document has no number and is not filed; the metadata names it, the rule, the "
    "field and the Stripe object to fix. Fix it in Stripe (or the mappings CSV) and "
    "re-materialize the day: it is then numbered after the day's others.",
)
TIE_FIX = (
    "A difference is a bug in how Stripe's figures become a document: do not file the day, "
    "compare the `notes` of its documents in efactura_documents with the Stripe objects and "
    "report it with them. A source without a document is held or blocked: fix it as the "
    "documents_pass_local_rules or invalid_cui check says, then re-materialize the day."
)
TIE_CHECK = dg.AssetCheckSpec(
    "documents_tie_to_stripe",
    asset="efactura_documents",
    description="Per currency, the built documents total exactly what Stripe says for their "
    "sources (ERROR if not: a mapping bug), and every source the day must document has a "
    "built document (WARN otherwise, naming the sources still to fix). " + TIE_FIX,
)


@dg.asset(
    description="What must be documented on the day and why: one row per Stripe trigger in "
    "the day (Europe/Bucharest): an invoice paid (or finalized, by INVOICE_ON), a charge "
    "without an invoice, a refund, a credit note. `decision` is document or skip, `reason` "
    "says why (e.g. a charge that pays an invoice is documented by the invoice). The answer to "
    '"why has this payment no invoice?"; efactura_documents builds one document per '
    "`document` row.",
    metadata=table_metadata("billable_events"),
    group_name="efactura",
    kinds={"stripe", "duckdb"},
    owners=["team:billing"],
    partitions_def=daily_partitions,
    deps=[
        "stripe_invoices",
        "stripe_invoice_lines",
        "stripe_charges",
        "stripe_refunds",
        "stripe_credit_notes",
    ],
)
def billable_events(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, company: CompanyResource
) -> dg.MaterializeResult:
    window = context.partition_time_window
    day = partition_day(window)
    trigger = f"{company.invoice_trigger}_at"
    with warehouse.connect() as connection:
        inputs = stored.day_inputs(connection, window.start, window.end, trigger)
        events = billable.events_for_day(
            billable.StripeDay(
                start=window.start,
                end=window.end,
                invoice_on=company.invoice_trigger,
                invoices=tuple(inputs.invoices.values()),
                charges=tuple(inputs.charges.values()),
                refunds=tuple(inputs.refunds.values()),
                credit_notes=tuple(inputs.credit_notes.values()),
                invoice_by_payment=stored.invoice_payments(connection),
                credit_note_refunds=stored.credit_note_refunds(connection),
            )
        )
        stored.replace_events(connection, day, events)
    decided = Counter((e.trigger, e.decision.value) for e in events)
    amounts = _signed_totals(
        (e.kind, e.currency, e.amount) for e in events if e.decision is billable.Decision.DOCUMENT
    )
    skipped = [e for e in events if e.decision is billable.Decision.SKIP]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(events),
            "to_document": sum(1 for e in events if e.decision is billable.Decision.DOCUMENT),
            "skipped": len(skipped),
            "by_trigger": dg.MetadataValue.json(
                {f"{t} {d}": n for (t, d), n in sorted(decided.items())}
            ),
            "amounts_to_document": _json(amounts),
            **totals_metadata(amounts),
            "preview": dg.MetadataValue.md(_events_preview(events)),
            "skipped_preview": dg.MetadataValue.md(
                markdown_table(["source", "reason"], [[e.source_key, e.reason] for e in skipped])
            ),
            **warehouse_link(warehouse.path),
        }
    )


@dg.asset(
    description="The day's e-Factura documents, one row per source (document_id = its source "
    "key): UBL 2.1 CIUS-RO XML for invoices (380) and credit notes (381), numbered "
    "SERIES-YEAR-NNNNNN from invoice_number_allocations only when they pass the local rules. "
    "Status ready (numbered, XML in the row), held (errors say what to fix, no number) or "
    "blocked (the buyer's CUI is invalid, see customer_tax_profiles). Documents already handed "
    "to a provider are never rebuilt. efactura_submissions files the ready ones; the XML is "
    "also queryable: `SELECT xml FROM efactura_documents WHERE invoice_number = '…'`.",
    metadata=table_metadata("efactura_documents"),
    group_name="efactura",
    kinds={"xml", "duckdb"},
    owners=["team:billing"],
    partitions_def=daily_partitions,
    deps=["billable_events", "customer_tax_profiles", "fx_rates", "stripe_invoice_lines"],
    check_specs=[LOCAL_RULES_CHECK, TIE_CHECK],
)
def efactura_documents(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, company: CompanyResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    window = context.partition_time_window
    day = partition_day(window)
    policy = company.policy()
    with warehouse.connect() as connection:
        events = stored.load_events(connection, day)
        inputs = stored.day_inputs(
            connection, window.start, window.end, f"{company.invoice_trigger}_at"
        )
        customers = {e.customer_id for e in events if e.customer_id}
        profiles = {p.customer_id: p for p in load_profiles(connection, customers)}
        sources = documents.StripeSources(
            invoices=inputs.invoices,
            invoice_lines=inputs.invoice_lines,
            charges=inputs.charges,
            refunds=inputs.refunds,
            credit_notes=inputs.credit_notes,
            profiles=profiles,
            fx_rates=rates_between(connection, day - timedelta(days=MAX_RATE_AGE_DAYS), day),
            preceding=stored.preceding_documents(
                connection, [e.corrects for e in events if e.corrects]
            ),
        )
        frozen = stored.frozen_documents(connection, day)
        todo = [e for e in events if e.source_key not in frozen]
        outcomes = documents.build_day(todo, sources, policy, _allocator(connection))
        kept = numbering.numbers_for(
            connection,
            [o.source_key for o in outcomes if o.status is not documents.DocumentStatus.READY],
        )
        built_at = datetime.now(UTC)
        rows = [
            stored.document_row(
                outcome,
                day,
                classification=profiles[c].classification
                if (c := outcome.event.customer_id) in profiles
                else None,
                built_at=built_at,
                allocated=_allocated(kept.get(outcome.source_key)),
            )
            for outcome in outcomes
        ]
        before = stored.numbered_documents(connection, day)
        stored.replace_documents(connection, day, rows)
        # Only a day that numbers documents now can put numbers out of date order.
        newly = [r for r in rows if r["invoice_number"] and r["document_id"] not in before]
        later = _numbered_later(connection, policy.series, day) if newly else []
    gone = {
        k: n
        for k, n in before.items()
        if k not in frozen and k not in {o.source_key for o in outcomes}
    }
    if gone:
        context.log.error(
            f"{len(gone)} numbered documents of {day} are no longer billable in Stripe and were "
            f"removed: {', '.join(f'{n} ({k})' for k, n in sorted(gone.items()))}. Their numbers "
            "stay allocated to their sources: if the sale really did not happen, void the "
            "numbers (warehouse.numbering.void) so the sequence stays explained."
        )
    _log(context, outcomes, frozen, later)
    yield dg.MaterializeResult(
        metadata={
            **_metadata(outcomes, frozen, rows),
            "numbered_documents_removed": dg.MetadataValue.json(gone),
            **warehouse_link(warehouse.path),
            "to_fix_query": f"SELECT * FROM v_documents_to_fix WHERE partition_date = '{day}'",
        }
    )
    yield _local_rules_result(outcomes)
    yield _tie_result(events, rows)


def _events_preview(events: Sequence[billable.BillableEvent]) -> str:
    return markdown_table(
        ["source", "trigger", "customer", "currency", "amount", "decision"],
        [
            [e.source_key, e.trigger, e.customer_id or "", e.currency, str(e.amount),
             e.decision.value]
            for e in events
        ],
        limit=PREVIEW_ROWS,
    )  # fmt: skip


def _allocator(connection: duckdb.DuckDBPyConnection) -> documents.Allocator:
    def allocate(requests: Sequence[NumberingRequest]) -> dict[str, str]:
        found: dict[str, str] = {}
        for (series, year), keys in allocation_batches(requests).items():
            for key, allocation in numbering.allocate(connection, series, year, keys).items():
                found[key] = allocation.document_id
        return found

    return allocate


def _allocated(allocation: numbering.Allocation | None) -> tuple[str, int, str] | None:
    if allocation is None:
        return None
    return allocation.series, allocation.number, allocation.document_id


def _numbered_later(connection: duckdb.DuckDBPyConnection, series: str, day: date) -> list[date]:
    rows = connection.execute(
        "SELECT DISTINCT partition_date FROM efactura_documents WHERE series = ? "
        "AND number IS NOT NULL AND partition_date > ? AND year(partition_date) = ? "
        "ORDER BY 1 LIMIT 5",
        [series, day, day.year],
    ).fetchall()
    return [row[0] for row in rows]


def _log(
    context: dg.AssetExecutionContext,
    outcomes: Sequence[documents.DocumentOutcome],
    frozen: Mapping[str, str],
    later: Sequence[date],
) -> None:
    waiting = [o for o in outcomes if o.status is not documents.DocumentStatus.READY]
    for outcome in waiting:
        context.log.info(
            f"{outcome.source_key} is {outcome.status.value}: " + "; ".join(outcome.errors)
        )
    if waiting:
        context.log.warning(
            f"{len(waiting)} documents are held or blocked and get no number yet "
            f"({', '.join(o.source_key for o in waiting[:5])}{', …' if len(waiting) > 5 else ''}"
            "): see the documents_pass_local_rules check or the v_documents_to_fix view"
        )
    if frozen:
        context.log.info(
            f"{len(frozen)} documents of this day are already with a provider and were kept "
            "as filed (a later change in Stripe needs a credit note)"
        )
    if later:
        context.log.warning(
            "later days of this year already hold numbers ("
            + ", ".join(d.isoformat() for d in later)
            + "): this day's new documents are numbered after them. Build days in date order "
            "(backfills run oldest first) to keep numbers in date order."
        )


def _signed_totals(items: Iterable[tuple[str, str, Decimal]]) -> dict[str, Decimal]:
    """Per currency, invoices minus credit notes, from (kind, currency, amount)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for kind, currency, amount in items:
        totals[currency] += -amount if kind == "credit_note" else amount
    return dict(sorted(totals.items()))


def _json(totals: Mapping[str, Decimal]) -> dg.MetadataValue:
    return dg.MetadataValue.json({currency: str(total) for currency, total in totals.items()})


def _metadata(
    outcomes: Sequence[documents.DocumentOutcome],
    frozen: Mapping[str, str],
    rows: Sequence[dict],
) -> dict[str, Any]:
    status = Counter(o.status.value for o in outcomes)
    numbers = sorted(r["invoice_number"] for r in rows if r["status"] == "ready")
    ready = [r for r in rows if r["status"] == "ready"]
    totals = _signed_totals((r["kind"], r["currency"], Decimal(r["total"])) for r in ready)
    # Numbered documents in number order, then those waiting for a fix.
    shown = sorted(rows, key=lambda r: (r["number"] is None, r["number"] or 0, r["document_id"]))
    return {
        "dagster/row_count": len(rows) + len(frozen),
        "ready": status.get("ready", 0),
        "held": status.get("held", 0),
        "blocked": status.get("blocked", 0),
        "already_filed": len(frozen),
        "numbers": f"{numbers[0]} .. {numbers[-1]}" if numbers else "none",
        "credit_notes": sum(1 for r in ready if r["kind"] == "credit_note"),
        "totals_by_currency": _json(totals),
        **totals_metadata(totals),
        "preview": dg.MetadataValue.md(
            markdown_table(
                ["number", "buyer", "currency", "total", "VAT", "status", "document"],
                [
                    [
                        r["invoice_number"] or "",
                        r["buyer_name"] or "",
                        r["currency"],
                        str(r["total"] or ""),
                        str(r["tax_total"] or ""),
                        r["status"],
                        r["document_id"],
                    ]
                    for r in shown
                ],
                limit=PREVIEW_ROWS,
            )
        ),
    }


def _local_rules_result(outcomes: Sequence[documents.DocumentOutcome]) -> dg.AssetCheckResult:
    held = [o for o in outcomes if o.status is documents.DocumentStatus.HELD]
    blocked = sum(1 for o in outcomes if o.status is documents.DocumentStatus.BLOCKED)
    return dg.AssetCheckResult(
        check_name=LOCAL_RULES_CHECK.name,
        passed=not held,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "held": len(held),
            "blocked_by_customer_checks": blocked,
            "held_documents": dg.MetadataValue.md(
                markdown_table(
                    ["document", "customer", "what to fix"],
                    [[o.source_key, o.event.customer_id or "", " / ".join(o.errors)] for o in held],
                )
            ),
        },
    )


def _tie_result(
    events: Sequence[billable.BillableEvent], rows: Sequence[dict]
) -> dg.AssetCheckResult:
    built = [r for r in rows if r["total"] is not None]
    stripe = _signed_totals((r["kind"], r["currency"], Decimal(r["stripe_amount"])) for r in built)
    ours = _signed_totals((r["kind"], r["currency"], Decimal(r["total"])) for r in built)
    differences = {c: str(ours[c] - stripe[c]) for c in stripe if ours[c] != stripe[c]}
    wanted = {e.source_key for e in events if e.decision is billable.Decision.DOCUMENT}
    missing = sorted(wanted - {r["document_id"] for r in built})
    return dg.AssetCheckResult(
        check_name=TIE_CHECK.name,
        passed=not differences and not missing,
        severity=dg.AssetCheckSeverity.ERROR if differences else dg.AssetCheckSeverity.WARN,
        metadata={
            "stripe_totals": _json(stripe),
            "document_totals": _json(ours),
            "differences": dg.MetadataValue.json(differences),
            "sources_without_document": dg.MetadataValue.json(missing[:PREVIEW_ROWS]),
            "sources_without_document_count": len(missing),
            **({"what_to_do": TIE_FIX} if differences or missing else {}),
        },
    )
