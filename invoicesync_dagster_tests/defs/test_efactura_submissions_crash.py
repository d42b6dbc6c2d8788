"""A filing process killed (SIGKILL) mid-upload, then run again: ANAF's ledger holds every
document exactly once and DuckDB agrees with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster_tests.defs.buyers import DAY
from invoicesync_dagster_tests.defs.test_efactura_documents import Day
from invoicesync_dagster_tests.defs.test_efactura_submissions import (
    SUBMIT,
    anaf_ready,  # noqa: F401 (fixture)
    day_of_documents,
)

Materialize = Callable[..., dg.ExecuteInProcessResult]

# The filing step alone, in its own process, as a Dagster run would run it.
FILER = """
import sys
import dagster as dg
from invoicesync_dagster.defs.efactura.submissions import efactura_submissions
from invoicesync_dagster.defs.resources import AnafResource, SmartBillResource, WarehouseResource
url, database, partition = sys.argv[1:4]
dg.materialize(
    [efactura_submissions],
    partition_key=partition,
    resources={
        "warehouse": WarehouseResource(database=database),
        "anaf": AnafResource(api_base=url, public_base=url, oauth_base=url, staging=True),
        "smartbill": SmartBillResource(api_base=url),
    },
)
"""
AT_ONCE = {"ops": {"efactura_submissions": {"config": {"reconcile_grace_minutes": 0}}}}


def start_filer(sandbox: SandboxServer, database: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", FILER, sandbox.url, str(database), DAY.isoformat()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert process.poll() is None, "the filing process ended before the moment to kill it"
        assert time.monotonic() < deadline, "the filing process never reached the upload"
        time.sleep(0.05)


def kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def consistent(database: Path, sandbox: SandboxServer) -> None:
    """Every numbered document uploaded exactly once, and DuckDB names that upload."""
    ledger = sandbox.anaf_efactura.ledger_entries()
    with duckdb.connect(str(database), read_only=True) as connection:
        documents = connection.execute(
            "SELECT invoice_number FROM efactura_documents WHERE xml IS NOT NULL"
        ).fetchall()
        sent = connection.execute(
            "SELECT document_id, upload_index FROM efactura_submissions WHERE state = 'sent'"
        ).fetchall()
    assert sorted(e["invoice_number"] for e in ledger) == sorted(n for (n,) in documents)
    assert len({d for d, _ in sent}) == len(sent) == len(documents)
    assert sorted(i for _, i in sent) == sorted(e["index"] for e in ledger)


@pytest.mark.usefixtures("anaf_ready")
def test_killed_before_the_upload_left_sends_it_once_after_restart(
    materialize: Materialize, sandbox: SandboxServer, tmp_path: Path
) -> None:
    day_of_documents(Day(sandbox), materialize, count=2)
    database = tmp_path / "w.duckdb"
    # The first upload hangs at ANAF's door and is then refused: ANAF never records it.
    sandbox.faults.configure({"rules": [{"path_prefix": "/test/FCTEL/rest/upload",
                                         "method": "POST", "delay_ms": 5000, "status": 503,
                                         "times": 1}]})  # fmt: skip
    filer = start_filer(sandbox, database)
    wait_for(lambda: sandbox.faults.snapshot()[0]["fired"] == 1, filer)
    kill(filer)  # the attempt is recorded as `sending`; nothing reached ANAF
    assert sandbox.anaf_efactura.ledger_entries() == []

    assert materialize(SUBMIT, run_config=AT_ONCE).success  # reconcile: not at ANAF → failed
    assert materialize(SUBMIT, run_config=AT_ONCE).success  # sent, once
    assert materialize(SUBMIT, run_config=AT_ONCE).success  # nothing more
    consistent(database, sandbox)


@pytest.mark.usefixtures("anaf_ready")
def test_killed_after_anaf_took_the_upload_finds_it_instead_of_resending(
    materialize: Materialize, sandbox: SandboxServer, tmp_path: Path
) -> None:
    day_of_documents(Day(sandbox), materialize, count=2)
    database = tmp_path / "w.duckdb"
    fake = sandbox.anaf_efactura
    # ANAF records the first upload and indexes it, then the process dies before the answer.
    fake.faults.update({"timeout_after_accept": 1, "accept_delay_s": 30.0})
    sandbox.clock.set(int(time.time()) - 300)
    filer = start_filer(sandbox, database)
    wait_for(lambda: len(fake.ledger_entries()) == 1, filer)
    kill(filer)
    fake.faults.update({"timeout_after_accept": 0})
    sandbox.clock.set(None)  # ANAF has processed and listed it since

    for _ in range(3):
        assert materialize(SUBMIT, run_config=AT_ONCE).success
    consistent(database, sandbox)
    fake.reset()  # release the answer still held for the killed process
