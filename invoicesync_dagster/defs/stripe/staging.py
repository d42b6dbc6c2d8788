"""What one daily partition must read from Stripe, staged to NDJSON files for the warehouse.

A day's objects are (a) those created in the day's window and (b) older objects whose state
changed that day: an invoice created on D and paid on D+3 must show as paid once D+3 is
synced. Stripe lists filter only on `created` and objects carry no `updated` field, so (b) comes
from the day's events while Stripe still keeps them (30 days), and from a look-back listing of
older objects, filtered on their own transition timestamps, after that. Either way the object's
current state is fetched, so a re-run of an old day never writes an older state over a newer one.

Pages stream to disk as they arrive: a day of 20,000 invoices never sits in memory at once, and
no DuckDB connection is held while Stripe is being called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from invoicesync_dagster.clients.stripe import StripeReader

EVENT_RETENTION_SECONDS = 30 * 86_400
# Events are only trusted for windows that start this long after the retention edge, so that a
# run that takes a while does not straddle it.
_RETENTION_MARGIN_SECONDS = 6 * 3_600

# Event types that mean "this object's state changed", and where the object's id is.
CHANGE_EVENTS: dict[str, tuple[str, ...]] = {
    "invoices": (
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.voided",
        "invoice.marked_uncollectible",
        "invoice.updated",
    ),
    "charges": ("charge.succeeded", "charge.captured", "charge.refunded", "charge.updated"),
    "refunds": ("refund.updated", "charge.refund.updated"),
    "credit_notes": ("credit_note.created", "credit_note.voided", "credit_note.updated"),
    "customers": (
        "customer.updated",
        "customer.tax_id.created",
        "customer.tax_id.updated",
        "customer.tax_id.deleted",
    ),
}

# What each resource's objects must be fetched with.
EXPAND: dict[str, tuple[str, ...]] = {"customers": ("tax_ids",), "invoices": ("payments",)}

# Transition timestamps that a look-back listing filters on, per resource.
TRANSITIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "invoices": (
        ("status_transitions", "finalized_at"),
        ("status_transitions", "paid_at"),
        ("status_transitions", "voided_at"),
        ("status_transitions", "marked_uncollectible_at"),
    ),
    "credit_notes": (("voided_at",),),
}


@dataclass
class StagedPartition:
    resource: str
    objects: Path
    extra_lines: Path | None = None
    created_in_window: int = 0
    changed_earlier: int = 0
    ids: set[str] = field(default_factory=set)
    # Invoices whose embedded `lines` list was cut at Stripe's page size.
    long_invoices: list[str] = field(default_factory=list)
    # Referenced or changed ids that Stripe does not know (deleted objects, foreign accounts).
    missing: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.created_in_window + self.changed_earlier


def stage_partition(
    reader: StripeReader,
    resource: str,
    window: tuple[int, int],
    out_dir: Path,
    *,
    now: int,
    lookback_days: int,
    also_ids: Iterable[str] = (),
    on_progress: Callable[[str], None] = lambda _message: None,
) -> StagedPartition:
    """Write the partition's objects of `resource` (current state, one per line) under out_dir."""
    start, end = window
    staged = StagedPartition(resource, out_dir / f"{resource}.ndjson")
    expand = EXPAND.get(resource, ())
    with staged.objects.open("wb") as sink:
        params = {"expand": [f"data.{name}" for name in expand]} if expand else None
        for page in reader.list_window(resource, start, end, params=params):
            _write(sink, page, staged)
            staged.created_in_window += len(page)
            on_progress(f"{resource}: {staged.created_in_window} created in the window")
        if now - EVENT_RETENTION_SECONDS + _RETENTION_MARGIN_SECONDS <= start:
            changed = _changed_by_events(reader, resource, start, end)
        else:
            changed = _changed_by_lookback(reader, resource, start, end, lookback_days)
        to_fetch = (changed | set(also_ids)) - staged.ids
        for obj in reader.retrieve_many(
            resource, sorted(to_fetch), expand=expand, missing=staged.missing
        ):
            _write(sink, [obj], staged)
            staged.changed_earlier += 1
        if to_fetch:
            on_progress(f"{resource}: {staged.changed_earlier} older objects changed or referenced")
    if staged.long_invoices:
        staged.extra_lines = _stage_long_invoice_lines(reader, staged.long_invoices, out_dir)
    return staged


def _write(sink: IO[bytes], objects: Iterable[dict], staged: StagedPartition) -> None:
    for obj in objects:
        if obj["id"] in staged.ids:
            continue
        staged.ids.add(obj["id"])
        sink.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))
        if obj.get("object") == "invoice" and (obj.get("lines") or {}).get("has_more"):
            staged.long_invoices.append(obj["id"])


def _changed_by_events(reader: StripeReader, resource: str, start: int, end: int) -> set[str]:
    """Ids of objects created before `start` that an event of the window changed."""
    changed: set[str] = set()
    types = CHANGE_EVENTS.get(resource, ())
    if not types:
        return changed
    for page in reader.list_window("events", start, end, params={"types": list(types)}):
        for event in page:
            obj = event["data"]["object"]
            # A tax id event changes its customer; every other event carries the object itself.
            object_id = obj.get("customer") if obj.get("object") == "tax_id" else obj.get("id")
            if object_id:
                changed.add(object_id)
    return changed


def _changed_by_lookback(
    reader: StripeReader, resource: str, start: int, end: int, lookback_days: int
) -> set[str]:
    """Older objects whose own transition timestamps fall in the window (events are gone)."""
    if resource == "charges":
        # A charge changes when it is refunded: the day's refunds name their charges.
        return {
            refund["charge"]
            for page in reader.list_window("refunds", start, end)
            for refund in page
            if refund.get("charge")
        }
    paths = TRANSITIONS.get(resource)
    if not paths:
        return set()
    changed: set[str] = set()
    for page in reader.list_window(resource, start - lookback_days * 86_400, start):
        for obj in page:
            if any(start <= (_dig(obj, path) or 0) < end for path in paths):
                changed.add(obj["id"])
    return changed


def _dig(obj: dict, path: tuple[str, ...]) -> int | None:
    value: object = obj
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, int) else None


def _stage_long_invoice_lines(reader: StripeReader, invoice_ids: list[str], out_dir: Path) -> Path:
    """Every line of the invoices whose embedded `lines` list was cut at Stripe's page size."""
    path = out_dir / "invoice_lines.ndjson"
    with path.open("wb") as sink:
        for invoice_id in invoice_ids:
            for line in reader.list_lines("invoices", invoice_id):
                line_with_invoice = {**line, "invoice": invoice_id}
                sink.write(orjson.dumps(line_with_invoice, option=orjson.OPT_APPEND_NEWLINE))
    return path
