"""The real thing, as `make dev` runs it: the sandbox and `dagster dev` (webserver + daemon) on
free loopback ports, driven over the webserver's GraphQL API, the `dagster` CLI and headless
Chromium (issue 6's acceptance).

One booted stack is shared by the module, in this order: the definitions as the UI sees them,
a 30-day backfill through the daemon, then a screenshot of the (now materialized) asset graph.
The module takes minutes: the backfill is 30 real runs, one at a time. Its tests must run on one
worker, in file order: `pytest -n 2 --dist loadfile`. (They also carry an xdist group, but
pytest 9.2 + pytest-xdist 3.8 ignore `--dist loadgroup` silently, pytest-xdist#1386; split
across workers, each worker boots its own stack and the tests still pass, only slower.)
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import pytest

from invoicesync_dagster.sandbox.dagster_dev import (
    LOCATION,
    REPO,
    WINDOW,
    DevStack,
    Run,
    boot,
    chromium,
    png_summary,
)

pytestmark = pytest.mark.xdist_group("dagster_dev")

DAYS = 30
BACKFILL_JOB = "daily_invoice_job"
WRITER = ("invoicesync/duckdb", "writer")
# 30 runs one at a time, each a fresh process: minutes on 2 cores, more under load.
BACKFILL_DEADLINE = 900

_DEFINITIONS = """
{
  assetNodes { assetKey { path } groupName dependencyKeys { path } }
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes {
        location { name }
        jobs { name }
        schedules { name cronSchedule executionTimezone pipelineName scheduleState { status } }
        sensors { name sensorState { status } }
    } }
    ... on PythonError { message }
  }
}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with boot(tmp_path_factory.mktemp("dagster_dev"), days=DAYS) as booted:
        print(f"\nsandbox + dagster dev ready in {booted.boot_seconds:.1f} s at {booted.ui_url}")
        yield booted


@pytest.fixture(scope="module")
def definitions(stack: DevStack) -> dict[str, Any]:
    data = stack.graphql(_DEFINITIONS)
    repositories = data["repositoriesOrError"]
    assert repositories["__typename"] == "RepositoryConnection", repositories
    (repository,) = repositories["nodes"]
    assert repository["location"]["name"] == "invoicesync_dagster"
    return {"assets": data["assetNodes"], **repository}


def test_graphql_lists_the_asset_graph(definitions: dict[str, Any]) -> None:
    groups = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in definitions["assets"]}
    parents = {
        "/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]}
        for n in definitions["assets"]
    }
    assert {"stripe", "customers", "efactura", "efactura_filing"} <= set(groups.values())
    assert groups["stripe_invoices"] == "stripe"
    assert groups["customer_tax_profiles"] == "customers"
    assert groups["efactura_documents"] == "efactura"
    assert groups["efactura_submissions"] == "efactura"
    assert "efactura_documents" in parents["efactura_submissions"]
    assert "efactura_submissions" in parents["efactura_status"]


def test_graphql_lists_jobs_schedules_and_sensors(definitions: dict[str, Any]) -> None:
    jobs = {job["name"] for job in definitions["jobs"]}
    assert {
        "daily_invoice_job",
        "stripe_sync_job",
        "customer_profiles_job",
        "efactura_job",
        "efactura_status_job",
    } <= jobs
    schedules = {schedule["name"]: schedule for schedule in definitions["schedules"]}
    daily = schedules["daily_invoice_schedule"]
    assert (daily["cronSchedule"], daily["executionTimezone"]) == ("15 2 * * *", "Europe/Bucharest")
    assert daily["pipelineName"] == "daily_invoice_job"
    assert daily["scheduleState"]["status"] == "STOPPED"  # filing is switched on by a person
    weekly = schedules["weekly_customer_sync_schedule"]
    assert (weekly["cronSchedule"], weekly["executionTimezone"]) == (
        "0 3 * * 0",
        "Europe/Bucharest",
    )
    sensors = {sensor["name"]: sensor["sensorState"]["status"] for sensor in definitions["sensors"]}
    assert sensors["anaf_status_sensor"] == "RUNNING"
    assert "failed_runs_sensor" in sensors


def test_a_30_day_backfill_runs_in_order_one_writer_at_a_time(
    stack: DevStack, tmp_path: Path
) -> None:
    days = stack.days
    assert len(days) == DAYS
    started = time.monotonic()
    stack.backfill(BACKFILL_JOB, days[0], days[-1])
    queued = time.monotonic() - started
    runs = stack.wait_for_runs(BACKFILL_JOB, DAYS, timeout=BACKFILL_DEADLINE)
    wall = time.monotonic() - started
    print(
        f"\n{DAYS}-day backfill: queued by `dagster job backfill` in {queued:.1f} s, "
        f"all runs done after {wall:.1f} s ({wall / DAYS:.1f} s per day)"
    )

    failed = [
        f"{run.partition}: {run.status} ({run.run_id})" for run in runs if run.status != "SUCCESS"
    ]
    assert not failed, f"backfill runs did not succeed (logs in {stack.workdir}): {failed}"
    assert sorted(run.partition or "" for run in runs) == [day.isoformat() for day in days]
    in_start_order = sorted(runs, key=_start)
    assert [run.partition for run in in_start_order] == [day.isoformat() for day in days]

    # Reading DuckDB waits for a moment with no run (the status sensor starts runs too).
    warehouse = stack.snapshot_warehouse(tmp_path / "warehouse.duckdb")
    writers = sorted((r for r in stack.runs() if _is_writer(r) and r.started), key=_start)
    assert {run.run_id for run in runs} <= {run.run_id for run in writers}
    for earlier, later in pairwise(writers):
        assert earlier.ended is not None and _start(later) >= earlier.ended, (
            f"two DuckDB writers overlapped: {earlier.job} {earlier.partition} "
            f"and {later.job} {later.partition}"
        )

    with duckdb.connect(str(warehouse), read_only=True) as connection:
        documented = connection.execute(
            "SELECT DISTINCT partition_date FROM efactura_documents"
        ).fetchall()
        numbered = connection.execute(
            "SELECT series, year(issue_date), number, partition_date, invoice_number "
            "FROM efactura_documents WHERE invoice_number IS NOT NULL ORDER BY series, number"
        ).fetchall()
        allocations = connection.execute(
            "SELECT series, year, number, state FROM invoice_number_allocations "
            "ORDER BY series, year, number"
        ).fetchall()
    assert {day for (day,) in documented} == set(days), "a seeded day has no documents"
    _assert_gapless_and_in_date_order(numbered, allocations)

    uploads = Counter(
        upload["invoice_number"] for upload in stack.sandbox_get("/_sandbox/ledger")["uploads"]
    )
    numbers = [row[4] for row in numbered]
    assert set(uploads) == set(numbers), "documents and ANAF's uploads differ"
    assert {n: c for n, c in uploads.items() if c != 1} == {}, "a document was uploaded twice"


_LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}
"""


def test_a_backfill_launched_as_the_ui_does_runs_in_order_and_sends_nothing_again(
    stack: DevStack,
) -> None:
    """The job's Launch backfill button sends this mutation: the days already filed above,
    again. Same queue, same order, and the outbox sends nothing twice."""
    days = [day.isoformat() for day in stack.days[-3:]]
    before = len(stack.runs(job=BACKFILL_JOB))
    ledger = len(stack.sandbox_get("/_sandbox/ledger")["uploads"])
    params = {
        "selector": {
            "partitionSetName": f"{BACKFILL_JOB}_partition_set",
            "repositorySelector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
            },
        },
        "partitionNames": days,
    }
    launched = stack.graphql(_LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    runs = stack.wait_for_runs(BACKFILL_JOB, before + len(days), timeout=BACKFILL_DEADLINE)
    mine = [r for r in runs if r.tags.get("dagster/backfill") == launched["backfillId"]]
    assert [r.status for r in mine] == ["SUCCESS"] * len(days)
    assert [r.partition for r in sorted(mine, key=_start)] == days
    assert all(_is_writer(r) for r in mine)
    assert len(stack.sandbox_get("/_sandbox/ledger")["uploads"]) == ledger


def test_ui_screenshot_of_the_asset_lineage(stack: DevStack, tmp_path: Path) -> None:
    """scripts/screenshot_ui.py, which refreshes the README's picture, on this stack."""
    chromium()  # fails naming scripts/ensure-test-tools.sh when Chromium is missing
    png = tmp_path / "asset-graph.png"
    done = subprocess.run(
        [sys.executable, "scripts/screenshot_ui.py", "--ui", stack.ui_url, "--output", str(png)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(f"\n{done.stdout}")
    # Exit 0 also says the rendered page names stripe_invoices, customer_tax_profiles and
    # efactura_submissions (the script checks the DOM Chromium dumps).
    assert done.returncode == 0, done.stdout + done.stderr
    summary = png_summary(png)
    assert (summary.width, summary.height) == WINDOW
    # A blank page, a spinner or an error box has a few dozen colours; the graph thousands.
    assert summary.colours > 500, f"{png} looks blank ({summary.colours} colours)"


def _start(run: Run) -> float:
    assert run.started is not None, f"run {run.run_id} never started"
    return run.started


def _is_writer(run: Run) -> bool:
    return run.tags.get(WRITER[0]) == WRITER[1]


def _assert_gapless_and_in_date_order(
    numbered: list[tuple[Any, ...]], allocations: list[tuple[Any, ...]]
) -> None:
    """Per series and year: numbers 1..N, none voided, every one on a document, and a later
    number never on an earlier day."""
    documents: dict[tuple[str, int], list[tuple[int, date]]] = defaultdict(list)
    for series, year, number, day, _ in numbered:
        documents[(series, year)].append((number, day))
    allocated: dict[tuple[str, int], list[int]] = defaultdict(list)
    for series, year, number, state in allocations:
        assert state == "allocated", f"{series}-{year}-{number} was voided"
        allocated[(series, year)].append(number)
    assert documents, "no numbered document at all"
    for key, rows in documents.items():
        numbers = [number for number, _ in rows]
        assert numbers == list(range(1, len(rows) + 1)), f"{key}: numbers have gaps: {numbers}"
        assert allocated[key] == numbers, f"{key}: allocated {allocated[key]}"
        days = [day for _, day in rows]
        assert days == sorted(days), f"{key}: a later number is on an earlier day"
