"""Ingestion benchmark: one day of Stripe invoices through StripeReader vs the plain SDK.

    .venv/bin/python benchmarks/ingest.py [--invoices 20000] [--latency-ms 100] [--concurrency 8]
                                          [--sequential-limit N]

The sandbox runs in a subprocess (its CPU is not ours) with a fixed latency per request, loaded
with one Europe/Bucharest day of invoices (more of them in business hours). Each measurement
runs in a fresh subprocess, so its peak RSS is its own:

  (a) `StripeReader.list_window` over the day: concurrent time slices, plain dicts;
  (b) the plain sequential SDK path: `client.v1.invoices.list(...).auto_paging_iter()` with
      `.to_dict()` per object. `--sequential-limit N` times only the newest N objects and
      extrapolates the day's wall time from that rate (the output says so).

Both only read and count (and check ids are unique); writing to DuckDB is not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
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
    """`count` finalized one-off invoices in the current API shape, created over DAY."""
    rng = random.Random(seed)
    invoices = []
    for n in range(count):
        # Two thirds in business hours (09:00-18:00 local), the rest spread over the day.
        if rng.random() < 2 / 3:
            created = DAY_START + rng.randrange(9 * 3600, 18 * 3600)
        else:
            created = rng.randrange(DAY_START, DAY_END)
        invoices.append(_invoice(n, created, rng))
    return invoices


def _invoice(n: int, created: int, rng: random.Random) -> dict[str, Any]:
    currency = rng.choice(["ron", "ron", "eur", "usd"])
    lines = [_line(n, i, currency, created, rng) for i in range(rng.randint(1, 3))]
    subtotal = sum(line["amount"] for line in lines)
    tax = sum(line["taxes"][0]["amount"] for line in lines)
    paid = created + rng.randrange(0, 5 * 86_400)
    customer = f"cus_bench{n % 3000:05d}"
    return {
        "id": f"in_bench{n:07d}",
        "object": "invoice",
        "account_country": "RO",
        "account_name": "Exemplu Software SRL",
        "account_tax_ids": None,
        "amount_due": subtotal + tax,
        "amount_overpaid": 0,
        "amount_paid": subtotal + tax,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 1,
        "attempted": True,
        "auto_advance": False,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "automatically_finalizes_at": None,
        "billing_reason": "manual",
        "collection_method": "charge_automatically",
        "created": created,
        "currency": currency,
        "custom_fields": None,
        "customer": customer,
        "customer_address": {
            "city": "București",
            "country": "RO",
            "line1": f"Str. Ștefan cel Mare nr. {n % 200 + 1}",
            "line2": "Sector 2",
            "postal_code": "020121",
            "state": "RO-B",
        },
        "customer_email": f"facturare{n}@exemplu.ro",
        "customer_name": f"Client Țară & Fiii <{n}> SRL",
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [{"type": "eu_vat", "value": f"RO{10_000_000 + n}"}],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": created,
        "ending_balance": 0,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_bench/in_bench{n:07d}",
        "invoice_pdf": f"https://pay.stripe.com/invoice/acct_bench/in_bench{n:07d}/pdf",
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/in_bench{n:07d}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": f"EXS-{n + 1:06d}",
        "on_behalf_of": None,
        "parent": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": created,
        "period_start": created,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "paid",
        "status_transitions": {
            "finalized_at": created,
            "marked_uncollectible_at": None,
            "paid_at": paid,
            "voided_at": None,
        },
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal,
        "test_clock": None,
        "total": subtotal + tax,
        "total_discount_amounts": [],
        "total_excluding_tax": subtotal,
        "total_pretax_credit_amounts": [],
        "total_taxes": [
            {
                "amount": tax,
                "tax_behavior": "exclusive",
                "tax_rate_details": {"tax_rate": "txr_bench_ro21"},
                "taxability_reason": "standard_rated",
                "taxable_amount": subtotal,
                "type": "tax_rate_details",
            }
        ],
        "webhooks_delivered_at": created,
    }


def _line(n: int, i: int, currency: str, created: int, rng: random.Random) -> dict[str, Any]:
    quantity = rng.randint(1, 5)
    unit = rng.choice([4_900, 9_900, 19_900, 49_900])
    amount = unit * quantity
    return {
        "id": f"il_bench{n:07d}{i}",
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": rng.choice(["Abonament lunar Pro", "Consultanță (ore)", "Licență anuală"]),
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": f"in_bench{n:07d}",
        "livemode": False,
        "metadata": {},
        "parent": {
            "invoice_item_details": {
                "invoice_item": f"ii_bench{n:07d}{i}",
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        },
        "period": {"end": created, "start": created},
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": "price_bench", "product": "prod_bench"},
            "type": "price_details",
            "unit_amount_decimal": str(unit),
        },
        "quantity": quantity,
        "subtotal": amount,
        "taxes": [
            {
                "amount": amount * 21 // 100,
                "tax_behavior": "exclusive",
                "tax_rate_details": {"tax_rate": "txr_bench_ro21"},
                "taxability_reason": "standard_rated",
                "taxable_amount": amount,
                "type": "tax_rate_details",
            }
        ],
    }


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
    """(a): the whole day through StripeReader.list_window."""
    from invoicesync_dagster.clients.stripe import StripeReader

    reader = StripeReader(API_KEY, url, concurrency=concurrency)
    seen: set[str] = set()
    count = 0
    started = time.perf_counter()
    for page in reader.list_window("invoices", DAY_START, DAY_END):
        count += len(page)
        seen.update(obj["id"] for obj in page)
    seconds = time.perf_counter() - started
    return {
        "objects": count,
        "unique": len(seen),
        "seconds": seconds,
        "requests": reader.requests_made,
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
        f"(a) StripeReader.list_window, concurrency {args.concurrency}: "
        f"{window['objects']} objects ({window['unique']} unique) in {window['seconds']:.2f} s "
        f"= {window_rate:,.0f} objects/s, {window_requests} requests"
    )
    print(f"    peak RSS of the process running (a): {window['max_rss_mb']:.0f} MB")
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
    print(f"memory of (a): {window['max_rss_mb']:.0f} MB (target < 300 MB)")
    if not complete:
        print("WARNING: (a) did not return every invoice exactly once")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
