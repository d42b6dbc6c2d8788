"""Documents benchmark: seeded Stripe objects → mapped, built, checked documents → UBL XML.

    .venv/bin/python benchmarks/documents.py [--days 60] [--invoices-per-day 167]
                                             [--charges-per-day 40] [--seed 7] [--repeat 1]
                                             [--tracemalloc]

The project's seeder makes `days` days of Stripe objects ending 2025-08-30: the default 60 days
(about 10,000 invoices plus charges, refunds and credit notes) start on 2025-07-02, so half of
them are before the VAT change of 2025-08-01 (19 % → 21 %), and August's refunds and credit
notes of July's invoices keep July's rate. `sandbox.offline_documents.build_documents` turns them
into documents day by day with the pipeline's own code (billable events, mapping,
`build_document`, `rules.check`, numbering) and every ready document is written with
`ubl.xml_bytes`. It is pure Python in one process, so it runs on one core.

  (1) the timed pass: build and write everything, no instrumentation (--repeat N: the fastest
      of N). Its documents/s is the figure the target applies to; the seeding is timed apart
      and not counted.
  (2) the breakdown pass: the same again, with perf_counter wrappers around the mapping
      functions (`from_stripe.*_document`, `buyer_from_*`), `build_document`, `rules.check`,
      `ubl.xml_bytes` and `billable.events_for_day`, and a gc callback that times the cyclic
      garbage collector. A call nested in another is counted once, in the inner one; a
      collection (it strikes whatever code allocates) only as the collector's. The rest is
      everything else: numbering, outcomes, buyer profiles, FX lookups, the loop.
  Memory: peak RSS of the process, and with --tracemalloc the peak Python allocation of a third,
  traced pass (tracemalloc makes that pass several times slower; its time is not reported).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import resource
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from types import ModuleType
from typing import Any

from invoicesync_dagster.efactura import billable, documents, from_stripe, rules, ubl
from invoicesync_dagster.efactura.vat import RATE_CHANGE_DATE
from invoicesync_dagster.sandbox import seed
from invoicesync_dagster.sandbox.offline_documents import build_documents

END_DATE = date(2025, 8, 30)  # 60 days from 2025-07-02: the VAT change is in the middle
TARGET_PER_SECOND = 1_500

# (module, function, category): what the breakdown pass times. Their callers look each of them
# up on its module at call time (`from_stripe.invoice_document`, `rules.check`,
# `billable.events_for_day`, `ubl.xml_bytes`), except `build_document`, which `documents` imports
# by name: it is replaced there.
TIMED: list[tuple[ModuleType, str, str]] = [
    (from_stripe, "buyer_from_profile", "mapping"),
    (from_stripe, "buyer_from_billing", "mapping"),
    (from_stripe, "invoice_document", "mapping"),
    (from_stripe, "charge_document", "mapping"),
    (from_stripe, "credit_note_document", "mapping"),
    (from_stripe, "refund_document", "mapping"),
    (documents, "build_document", "build_document"),
    (rules, "check", "rules.check"),
    (billable, "events_for_day", "billable events"),
    (ubl, "xml_bytes", "xml_bytes"),
]


@dataclass
class Stopwatch:
    """Seconds per category, each call's own time only: the calls it makes to other timed
    functions are counted in theirs, and collections of the cyclic garbage collector (which
    strike whatever code happens to allocate) in "garbage collector"."""

    seconds: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    _nested: list[float] = field(default_factory=list)  # per open call: time of timed callees
    _gc_seconds: float = 0.0
    _gc_started: float = 0.0

    def wrap(self, category: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._nested.append(0.0)
            gc_before = self._gc_seconds
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                own = time.perf_counter() - started - (self._gc_seconds - gc_before)
                self.seconds[category] += own - self._nested.pop()
                self.calls[category] += 1
                if self._nested:
                    self._nested[-1] += own

        return timed

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_seconds += time.perf_counter() - self._gc_started
            self.seconds["garbage collector"] = self._gc_seconds
            self.calls["garbage collector"] += 1


@contextmanager
def instrumented(stopwatch: Stopwatch) -> Iterator[None]:
    originals = [(module, name, getattr(module, name)) for module, name, _ in TIMED]
    try:
        for (module, name, category), (_, _, original) in zip(TIMED, originals, strict=True):
            setattr(module, name, stopwatch.wrap(category, original))
        gc.callbacks.append(stopwatch.on_gc)
        yield
    finally:
        gc.callbacks.remove(stopwatch.on_gc)
        for module, name, original in originals:
            setattr(module, name, original)


@dataclass
class Run:
    seconds: float = 0.0
    xml_bytes: int = 0
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, status)
    held_by_rules: int = 0  # held because a local rule reported an error (str(RuleViolation))
    before_rate_change: int = 0  # documents issued before 2025-08-01
    warnings: int = 0

    @property
    def documents(self) -> int:
        return sum(self.statuses.values())

    @property
    def ready(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status == "ready")


def run_pipeline(objects: list[dict[str, Any]]) -> Run:
    """Every document of the objects, day by day, and the XML of each ready one."""
    run = Run()
    started = time.perf_counter()
    for outcome in build_documents(objects):
        status = outcome.status.value
        run.statuses[outcome.event.source_type.value, status] += 1
        run.warnings += len(outcome.warnings)
        run.before_rate_change += outcome.issue_date < RATE_CHANGE_DATE
        if status == "held" and any(e.startswith("error ") for e in outcome.errors):
            run.held_by_rules += 1
        if outcome.xml is not None:
            run.xml_bytes += len(outcome.xml)
    run.seconds = time.perf_counter() - started
    return run


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--invoices-per-day", type=int, default=167)
    parser.add_argument("--charges-per-day", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--repeat", type=int, default=1, help="time the pipeline N times and keep the fastest"
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="add a traced pass for the peak allocation"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    objects = list(
        seed.generate(
            args.days,
            seed=args.seed,
            invoices_per_day=args.invoices_per_day,
            charges_per_day=args.charges_per_day,
            end_date=END_DATE,
        )
    )
    seed_seconds = time.perf_counter() - started
    kinds = Counter(obj["object"] for obj in objects)
    rss_before = max_rss_mb()
    first = date.fromordinal(END_DATE.toordinal() - args.days + 1)
    print(
        f"seed: {args.days} days {first}..{END_DATE}, "
        f"{kinds['invoice']:,} invoices, {kinds['charge']:,} charges, {kinds['refund']:,} refunds, "
        f"{kinds['credit_note']:,} credit notes, {kinds['customer']:,} customers "
        f"({len(objects):,} objects) made in {seed_seconds:.1f} s (not counted)"
    )
    print(f"one process, one core (pure Python {sys.version.split()[0]}); {os.cpu_count()} CPUs")

    runs = [run_pipeline(objects) for _ in range(max(1, args.repeat))]
    timed = min(runs, key=lambda run: run.seconds)
    report_counts(timed)
    rate = timed.documents / timed.seconds
    fastest = f" (fastest of {len(runs)})" if len(runs) > 1 else ""
    print(
        f"(1) {timed.documents:,} documents in {timed.seconds:.2f} s{fastest} = "
        f"{rate:,.0f} documents/s "
        f"({timed.ready / timed.seconds:,.0f} ready documents/s with their XML, "
        f"{timed.xml_bytes / max(1, timed.ready) / 1024:.1f} KiB each); "
        f"{1e6 / rate:,.0f} µs per document"
    )

    stopwatch = Stopwatch()
    with instrumented(stopwatch):
        traced = run_pipeline(objects)
    report_breakdown(traced, stopwatch)
    if traced.statuses != timed.statuses:
        print("WARNING: the breakdown pass made different documents than the timed pass")

    peak = None
    if args.tracemalloc:
        tracemalloc.start()
        run_pipeline(objects)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss_after = max_rss_mb()
    print(
        f"memory: peak RSS {rss_after:.0f} MB, of which {rss_before:.0f} MB before the first "
        f"build (Python, libraries and the {len(objects):,} seeded objects)"
        + (f"; peak traced allocation of a build pass {peak / 2**20:.0f} MB" if peak else "")
    )
    verdict = "met" if rate >= TARGET_PER_SECOND else "NOT met"
    print(f"target >= {TARGET_PER_SECOND:,} documents/s on one core: {verdict} ({rate:,.0f}/s)")


def report_counts(run: Run) -> None:
    sources = sorted({source for source, _ in run.statuses})
    for source in sources:
        counts = {status: run.statuses[source, status] for status in ("ready", "held", "blocked")}
        print(
            f"    {source:<20} {sum(counts.values()):>6,} documents: "
            + ", ".join(f"{n:,} {status}" for status, n in counts.items())
        )
    print(
        f"    issued before the VAT change of {RATE_CHANGE_DATE}: {run.before_rate_change:,}, "
        f"from it: {run.documents - run.before_rate_change:,}; held by a local rule error: "
        f"{run.held_by_rules:,}; rule warnings: {run.warnings:,}"
    )


def report_breakdown(run: Run, stopwatch: Stopwatch) -> None:
    parts = dict(stopwatch.seconds)
    parts["rest"] = run.seconds - sum(parts.values())
    calls = stopwatch.calls
    print(
        f"(2) breakdown pass: {run.seconds:.2f} s with the timers in "
        f"({run.documents / run.seconds:,.0f} documents/s); per document of all {run.documents:,}:"
    )
    order = ["mapping", "build_document", "rules.check", "xml_bytes", "billable events"]
    order += ["garbage collector", "rest"]
    for part in order:
        seconds, count = parts.get(part, 0.0), calls.get(part, 0)
        per_call = f", {seconds / count * 1e6:,.0f} µs per call ({count:,})" if count > 1 else ""
        print(
            f"    {part:<17} {seconds:6.2f} s {seconds / run.seconds:6.1%} "
            f"{seconds / run.documents * 1e6:6,.0f} µs{per_call}"
        )


if __name__ == "__main__":
    main()
