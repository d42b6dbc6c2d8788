"""Invoice numbering policy (EFACTURA.md §4.10, ARCHITECTURE.md §4 rule 3). Pure, no I/O.

* A number is sequential per **series and year**: every (series, year) counts 1, 2, 3, ... and a
  new year starts again at 1 (the starting number is fixed per financial year, OMFP 2226/2006).
* The year of a document is the year of its issue date in Europe/Bucharest: a Stripe invoice paid
  at 2026-12-31T22:30Z is issued on 2027-01-01 in Bucharest and numbered in 2027.
* The document number (BT-1, `cbc:ID`) is `SERIES-YEAR-NNNNNN`, e.g. `INV-2026-000123`: the
  number zero-padded to 6 digits (wider past 999999, never truncated). The year is part of it
  because the count restarts every year: without it `INV-000001` of 2026 and of 2027 would be two
  invoices with one number. Series are 1-20 ASCII letters or digits (settings.py `_series`), so
  the `-` separators make the format reversible (`parse_document_number`) and the whole ID is at
  most 32 characters for numbers below a million, far inside BR-RO-010 (≥ 1 digit, ≤ 200 chars).
* A number is allocated only to a document that passed the local checks; a failing document gets
  none, so it leaves no gap. It is never reused and never reallocated: what a number is for is its
  `source_key` (`stripe_invoice:in_123`, `stripe_refund:re_1`, ...), and the same source gets the
  same number on every re-run. The ledger is `invoice_number_allocations` (warehouse/numbering.py).
* Within one (series, year) batch, numbers follow the order in which the sources became documents
  (Stripe's trigger time, then the source key), so a re-run of a day, a backfill and a first run
  all hand out the same numbers (`allocation_batches`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

BUCHAREST = ZoneInfo("Europe/Bucharest")
NUMBER_WIDTH = 6
SERIES_PATTERN = re.compile(r"^[A-Za-z0-9]{1,20}$")
DOCUMENT_ID_MAX = 200  # BR-RO-010
FIRST_YEAR, LAST_YEAR = 2000, 9999

_DOCUMENT_ID = re.compile(r"^([A-Za-z0-9]{1,20})-(\d{4})-(\d+)$")
_OBJECT_ID = re.compile(r"^[A-Za-z0-9_]+$")


class NumberingError(ValueError):
    """A series, year, number or source key that breaks the numbering rules."""


class SourceKind(StrEnum):
    """What in Stripe a document is for; the prefix of its source key."""

    STRIPE_INVOICE = "stripe_invoice"  # an invoice (paid or finalized, by INVOICE_ON)
    STRIPE_CHARGE = "stripe_charge"  # a charge without an invoice
    STRIPE_REFUND = "stripe_refund"  # a refund → credit note
    STRIPE_CREDIT_NOTE = "stripe_credit_note"  # a Stripe credit note → credit note


_SOURCE_KINDS = frozenset(member.value for member in SourceKind)


def check_series(series: str) -> str:
    if not isinstance(series, str) or not SERIES_PATTERN.match(series):
        raise NumberingError(
            f"invoice series {series!r} must be 1-20 letters or digits, e.g. INV "
            "(set DEFAULT_INVOICE_SERIES)"
        )
    return series


def check_year(year: int) -> int:
    if isinstance(year, bool) or not isinstance(year, int) or not FIRST_YEAR <= year <= LAST_YEAR:
        raise NumberingError(
            f"numbering year {year!r} must be an integer {FIRST_YEAR}-{LAST_YEAR}: the year of "
            "the issue date in Europe/Bucharest (issue_year)"
        )
    return year


def source_key(kind: SourceKind | str, object_id: str) -> str:
    """`stripe_invoice:in_123`: what a number is for (one source, one number, forever)."""
    return check_source_key(f"{SourceKind(kind).value}:{object_id}")


def check_source_key(key: str) -> str:
    kind, _, object_id = key.partition(":") if isinstance(key, str) else ("", "", "")
    known = _SOURCE_KINDS
    if kind not in known or not _OBJECT_ID.match(object_id):
        raise NumberingError(
            f"source key {key!r} must be KIND:STRIPE_ID with KIND one of {sorted(known)} and an "
            "id of letters, digits and _ (build it with numbering.source_key)"
        )
    return key


def issue_year(issued: date | datetime) -> int:
    """The numbering year of a document: its issue date's year in Europe/Bucharest. A date is
    taken as a Bucharest date; a datetime must carry its time zone."""
    if isinstance(issued, datetime):
        if issued.tzinfo is None or issued.utcoffset() is None:
            raise NumberingError(
                f"issue time {issued.isoformat()} has no time zone: pass an aware datetime "
                "(Stripe's unix seconds → datetime.fromtimestamp(ts, UTC))"
            )
        return issued.astimezone(BUCHAREST).year
    return issued.year


def format_document_number(series: str, year: int, number: int) -> str:
    """BT-1 of the document: `INV-2026-000123`."""
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise NumberingError(f"invoice number {number!r} must be an integer ≥ 1")
    text = f"{check_series(series)}-{check_year(year)}-{number:0{NUMBER_WIDTH}d}"
    if len(text) > DOCUMENT_ID_MAX:  # unreachable with 20-char series; BR-RO-010 all the same
        raise NumberingError(f"document number {text[:40]}... is longer than {DOCUMENT_ID_MAX}")
    return text


@dataclass(frozen=True)
class DocumentNumber:
    series: str
    year: int
    number: int

    def __str__(self) -> str:
        return format_document_number(self.series, self.year, self.number)


def parse_document_number(text: str) -> DocumentNumber:
    """`INV-2026-000123` → DocumentNumber("INV", 2026, 123); the inverse of the format."""
    found = _DOCUMENT_ID.match(text)
    if not found or int(found.group(3)) < 1:
        raise NumberingError(
            f"{text!r} is not a document number of the form SERIES-YEAR-NNNNNN (INV-2026-000123)"
        )
    parsed = DocumentNumber(found.group(1), check_year(int(found.group(2))), int(found.group(3)))
    if str(parsed) != text:
        raise NumberingError(f"{text!r} is not zero-padded to {NUMBER_WIDTH} digits")
    return parsed


@dataclass(frozen=True)
class NumberingRequest:
    """A document that passed the local checks and needs a number. `issued_at` is the moment the
    source became a document (Stripe's trigger time: paid_at, finalized_at, the refund's
    created...), time-zone aware; its Bucharest year is the numbering year."""

    source_key: str
    series: str
    issued_at: datetime


def allocation_batches(
    requests: Iterable[NumberingRequest],
) -> dict[tuple[str, int], list[str]]:
    """Source keys to number, grouped by (series, year) and ordered by (issued_at, source_key):
    the deterministic order `warehouse.numbering.allocate` hands out numbers in. Pass only the
    documents that passed the local checks; a source listed twice must agree with itself."""
    seen: dict[str, tuple[str, int, datetime]] = {}
    for request in requests:
        check_source_key(request.source_key)
        place = (check_series(request.series), issue_year(request.issued_at), request.issued_at)
        if seen.setdefault(request.source_key, place) != place:
            raise NumberingError(
                f"{request.source_key} is requested twice with different series or issue times "
                f"({seen[request.source_key]} and {place}): one source is one document"
            )
    batches: dict[tuple[str, int], list[str]] = {}
    for key, (series, year, _) in sorted(seen.items(), key=lambda item: (item[1][2], item[0])):
        batches.setdefault((series, year), []).append(key)
    return batches
