#!/usr/bin/env python3
"""Refreshes docs/asset-graph.png, the README's picture of the asset graph in the Dagster UI.

Boots what `make dev` boots (the sandbox and `dagster dev`, on free loopback ports, in a
throw-away folder), materializes the last few seeded days through `dagster job backfill` so that
the graph shows state, and photographs the global asset lineage page with headless Chromium
(scripts/ensure-test-tools.sh installs it).

    .venv/bin/python scripts/screenshot_ui.py [--days 3] [--output docs/asset-graph.png]
    .venv/bin/python scripts/screenshot_ui.py --ui http://127.0.0.1:3000   # a running `make dev`
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from invoicesync_dagster.sandbox.dagster_dev import (
    REPO,
    ChromiumMissing,
    DevStack,
    boot,
    capture,
    chromium,
    png_summary,
)

MIN_COLOURS = 500  # a blank page, spinner or error box has far fewer
# Assets the page must name (from the rendered DOM) for the picture to count as the graph.
SHOWN = ("stripe_invoices", "customer_tax_profiles", "efactura_submissions")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/screenshot_ui.py", description=__doc__)
    parser.add_argument("--days", type=int, default=3, help="days to materialize (0: none)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "asset-graph.png")
    parser.add_argument("--budget-ms", type=int, default=20_000, help="Chromium virtual time")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away folder")
    parser.add_argument(
        "--ui",
        metavar="URL",
        help="photograph the Dagster UI at URL instead of booting one",
    )
    args = parser.parse_args(argv)
    try:
        chromium()
    except ChromiumMissing as error:
        print(error, file=sys.stderr)
        return 1
    if args.ui:
        running = DevStack(Path.cwd(), {}, sandbox_url="", ui_url=args.ui.rstrip("/"), days=[])
        return _photograph(running, args)

    workdir = Path(tempfile.mkdtemp(prefix="invoicesync-screenshot-"))
    with boot(workdir, days=max(args.days, 1)) as stack:
        print(f"sandbox + dagster dev ready in {stack.boot_seconds:.1f} s at {stack.ui_url}")
        if args.days:
            started = time.monotonic()
            stack.backfill("daily_invoice_job", stack.days[0], stack.days[-1])
            runs = stack.wait_for_runs("daily_invoice_job", len(stack.days), timeout=900)
            failed = [run.partition for run in runs if run.status != "SUCCESS"]
            if failed:
                print(f"runs failed for {failed}; logs in {workdir}", file=sys.stderr)
                return 1
            print(f"materialized {args.days} days in {time.monotonic() - started:.1f} s")
        status = _photograph(stack, args)
    if not args.keep:
        _remove(workdir)
    return status


def _photograph(stack: DevStack, args: argparse.Namespace) -> int:
    url = stack.lineage_url()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    shot = capture(url, args.output, budget_ms=args.budget_ms)
    summary = png_summary(args.output)
    print(
        f"{args.output}: {summary.width}x{summary.height}, {summary.colours} colours, "
        f"taken in {shot.seconds:.1f} s from {url}"
    )
    missing = [name for name in SHOWN if name not in shot.dom]
    if summary.colours < MIN_COLOURS or missing:
        print(
            f"the page does not show the asset graph (missing {missing}); see {args.output}",
            file=sys.stderr,
        )
        return 1
    return 0


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
