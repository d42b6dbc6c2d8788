"""Ingestion benchmark: one day of Stripe invoices through StripeReader vs the plain SDK.

    .venv/bin/python benchmarks/ingest.py [--invoices 20000] [--latency-ms 100] [--concurrency 8]
                                          [--sequential-limit N]

The sandbox runs in a subprocess (its CPU is not ours) with a fixed latency per request, loaded
with one Europe/Bucharest day of invoices made by the project's seeder. Each measurement
runs in a fresh subprocess, so its peak RSS is its own:

  (a) what the `stripe_invoices` asset does: `stage_partition` (StripeReader.list_window's
      concurrent time slices, pages streamed to NDJSON), then the DuckDB load, timed apart;
  (b) the plain sequential SDK path: `client.v1.invoices.list(...).auto_paging_iter()` with
      `.to_dict()` per object. `--sequential-limit N` times only the newest N objects and
      extrapolates the day's wall time from that rate (the output says so).

The objects/s figures compare reading only; (a)'s DuckDB load is printed on its own line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

API_KEY = "sk_test_benchmark"
DAY = datetime(2025, 6, 2, tzinfo=ZoneInfo("Europe/Bucharest"))  # a Monday
DAY_START = int(DAY.timestamp())
DAY_END = int((DAY + timedelta(days=1)).timestamp())
ROOT = Path(__file__).resolve().parent.parent


# -- fixtures --------------------------------------------------------------------------------


def day_of_invoices(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` invoices of DAY from the project's seeder (multi-line, several currencies)."""
    from invoicesync_dagster.sandbox import seed as seeder

    objects = seeder.generate(
        1, seed=seed, invoices_per_day=count, charges_per_day=0, end_date=DAY.date()
    )
    return [obj for obj in objects if obj["object"] == "invoice"]


# -- subprocess roles ------------------------------------------------------------------------


def serve(invoices: int, latency_ms: int) -> None:
    """Sandbox subprocess: load the day, print the URL and the average object size, serve."""
    from invoicesync_dagster.sandbox.server import SandboxServer

    objects = day_of_invoices(invoices)
    size = sum(len(json.dumps(obj)) for obj in objects) / max(1, len(objects))
    server = SandboxServer(port=0, latency_ms=latency_ms)
    server.stripe.load(objects)
    del objects
    print(json.dumps({"url": server.url, "avg_bytes": round(size)}), flush=True)
    server.serve_forever()


def measure_window(url: str, concurrency: int) -> dict[str, Any]:
    """(a): what the stripe_invoices asset does: stage the day, then load it into DuckDB."""
    from invoicesync_dagster.clients.stripe import StripeReader
    from invoicesync_dagster.defs.stripe.staging import stage_partition
    from invoicesync_dagster.warehouse.database import connect
    from invoicesync_dagster.warehouse.stripe import replace_partition

    reader = StripeReader(API_KEY, url, concurrency=concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        staged = stage_partition(
            reader,
            "invoices",
            (DAY_START, DAY_END),
            Path(tmp),
            now=int(time.time()),
            lookback_days=60,
        )
        seconds = time.perf_counter() - started
        staging_rss_mb = _max_rss_mb()
        with connect(Path(tmp) / "bench.duckdb") as connection:
            loaded_at = time.perf_counter()
            rows = replace_partition(
                connection, "invoices", DAY.date(), staged.objects, extra_lines=staged.extra_lines
            )
            load_seconds = time.perf_counter() - loaded_at
    return {
        "objects": staged.created_in_window,
        "unique": len(staged.ids),
        "seconds": seconds,
        "rows": rows,
        "load_seconds": load_seconds,
        "requests": reader.requests_made,
        "staging_rss_mb": staging_rss_mb,
        "max_rss_mb": _max_rss_mb(),
    }


def measure_sequential(url: str, limit: int | None) -> dict[str, Any]:
    """(b): the SDK's own sequential page chain, StripeObjects converted with .to_dict()."""
    import stripe

    client = stripe.StripeClient(API_KEY, base_addresses={"api": url}, max_network_retries=0)
    params: dict[str, Any] = {"created": {"gte": DAY_START, "lt": DAY_END}, "limit": 100}
    seen: set[str] = set()
    count = 0
    started = time.perf_counter()
    for invoice in client.v1.invoices.list(params=params).auto_paging_iter():
        row = invoice.to_dict()
        seen.add(row["id"])
        count += 1
        if limit is not None and count >= limit:
            break
    seconds = time.perf_counter() - started
    return {"objects": count, "unique": len(seen), "seconds": seconds, "max_rss_mb": _max_rss_mb()}


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- orchestration ---------------------------------------------------------------------------


def _python(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def _run_child(*args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(_python(*args), capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"benchmark step {args[0]} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _served(url: str) -> int:
    import httpx

    counts = httpx.get(f"{url}/_sandbox/requests").json()["counts"]
    return int(counts.get("GET /v1/invoices", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--sequential-limit",
        type=int,
        default=None,
        help="time only the newest N objects of the sequential run and extrapolate",
    )
    # Internal: the roles of the subprocesses.
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--window", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--sequential", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        serve(args.invoices, args.latency_ms)
        return
    if args.window:
        print(json.dumps(measure_window(args.window, args.concurrency)))
        return
    if args.sequential:
        print(json.dumps(measure_sequential(args.sequential, args.sequential_limit)))
        return

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server_args = [
        "--serve",
        "--invoices",
        str(args.invoices),
        "--latency-ms",
        str(args.latency_ms),
    ]
    server = subprocess.Popen(_python(*server_args), stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        ready = json.loads(server.stdout.readline() or "null")
        if not ready:
            raise SystemExit("the sandbox subprocess did not start (see its output above)")
        url = ready["url"]
        print(
            f"sandbox {url}: {args.invoices} invoices on {DAY.date()} (Europe/Bucharest), "
            f"~{ready['avg_bytes']} bytes of JSON each, {args.latency_ms} ms latency per request; "
            f"{os.cpu_count()} CPUs"
        )
        before = _served(url)
        window = _run_child("--window", url, "--concurrency", str(args.concurrency))
        window_requests = _served(url) - before
        limit = ["--sequential-limit", str(args.sequential_limit)] if args.sequential_limit else []
        before = _served(url)
        sequential = _run_child("--sequential", url, *limit)
        sequential_requests = _served(url) - before
    finally:
        server.terminate()
        server.wait(timeout=10)

    report(args, window, window_requests, sequential, sequential_requests)


def report(
    args: argparse.Namespace,
    window: dict[str, Any],
    window_requests: int,
    sequential: dict[str, Any],
    sequential_requests: int,
) -> None:
    window_rate = window["objects"] / window["seconds"]
    sequential_rate = sequential["objects"] / sequential["seconds"]
    complete = window["objects"] == window["unique"] == args.invoices
    print(
        f"(a) stripe_invoices staging (StripeReader.list_window + NDJSON), concurrency "
        f"{args.concurrency}: "
        f"{window['objects']} objects ({window['unique']} unique) in {window['seconds']:.2f} s "
        f"= {window_rate:,.0f} objects/s, {window_requests} requests"
    )
    print(
        f"    then loaded into DuckDB in one transaction: {window['rows']} rows in "
        f"{window['load_seconds']:.2f} s"
    )
    print(
        f"    peak RSS of (a): {window['staging_rss_mb']:.0f} MB fetching and staging, "
        f"{window['max_rss_mb']:.0f} MB once the DuckDB load ran"
    )
    partial = sequential["objects"] < args.invoices
    note = (
        f" (timed the newest {sequential['objects']} only; full day extrapolated: "
        f"{args.invoices / sequential_rate:.1f} s)"
        if partial
        else ""
    )
    print(
        f"(b) sequential auto_paging_iter + to_dict: {sequential['objects']} objects in "
        f"{sequential['seconds']:.2f} s = {sequential_rate:,.0f} objects/s, "
        f"{sequential_requests} requests{note}"
    )
    print(f"    peak RSS of the process running (b): {sequential['max_rss_mb']:.0f} MB")
    print(f"speed-up (a)/(b): {window_rate / sequential_rate:.1f}x (target >= 8x)")
    print(f"memory of (a) fetching: {window['staging_rss_mb']:.0f} MB (target < 300 MB)")
    if not complete:
        print("WARNING: (a) did not return every invoice exactly once")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
