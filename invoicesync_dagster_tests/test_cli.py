"""The `invoicesync` command line against the sandbox over loopback."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import stripe
from click.testing import CliRunner
from dotenv import dotenv_values

from invoicesync_dagster.cli import cli
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster_tests.defs.test_stripe_assets import Scenario, at

DAY = date.today() - timedelta(days=4)


@pytest.fixture
def loaded(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Scenario:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_cli")
    monkeypatch.setenv("STRIPE_API_BASE", sandbox.url)
    monkeypatch.setenv("INVOICESYNC_HOME", str(tmp_path / "home"))
    scenario = Scenario(sandbox)
    customer = scenario.customer(at(DAY, 1))
    other = scenario.customer(at(DAY, 1), name="Ionescu Ștefan")
    scenario.load(
        customer,
        other,
        scenario.invoice(customer, at(DAY, 9), paid_at=at(DAY, 10)),
        scenario.invoice(customer, at(DAY, 11)),
        scenario.invoice(other, at(DAY, 12), paid_at=at(DAY, 12)),
        scenario.invoice(other, at(DAY - timedelta(days=1), 12)),
    )
    return scenario


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_stripe_invoices_table_filters_and_range(loaded: Scenario) -> None:
    code, out = invoke("stripe", "invoices", "--start-date", str(DAY), "--end-date", str(DAY))
    assert code == 0
    assert "3 invoices from" in out
    assert "Ionescu Ștefan" in out and "100.00" in out

    code, out = invoke(
        "stripe",
        "invoices",
        "--start-date",
        str(DAY - timedelta(days=1)),
        "--end-date",
        str(DAY),
        "--status",
        "paid",
    )
    assert code == 0 and "2 invoices from" in out


def test_stripe_invoices_json_and_csv_outputs(loaded: Scenario, tmp_path: Path) -> None:
    code, _ = invoke(
        "stripe",
        "invoices",
        "--start-date",
        str(DAY),
        "--end-date",
        str(DAY),
        "-o",
        str(tmp_path / "out.json"),
    )
    rows = json.loads((tmp_path / "out.json").read_text())
    assert code == 0 and len(rows) == 3
    assert {row["status"] for row in rows} == {"paid", "open"}
    assert rows[0]["created"] >= rows[-1]["created"]  # newest first

    code, _ = invoke(
        "stripe",
        "invoices",
        "--start-date",
        str(DAY),
        "--end-date",
        str(DAY),
        "--customer-id",
        rows[0]["customer"],
        "-o",
        str(tmp_path / "out.csv"),
    )
    with (tmp_path / "out.csv").open(encoding="utf-8") as source:
        csv_rows = list(csv.DictReader(source))
    assert code == 0
    assert csv_rows and {r["customer"] for r in csv_rows} == {rows[0]["customer"]}


def test_stripe_charges_and_errors(loaded: Scenario, tmp_path: Path) -> None:
    code, out = invoke("stripe", "charges", "--start-date", str(DAY), "--end-date", str(DAY))
    assert code == 0 and "0 charges" in out

    code, out = invoke(
        "stripe", "invoices", "--start-date", str(DAY), "--end-date", str(DAY - timedelta(days=2))
    )
    assert code == 1 and "before --start-date" in out

    code, out = invoke("stripe", "invoices", "-o", str(tmp_path / "out.xlsx"))
    assert code == 1 and ".json or .csv" in out


def test_stripe_command_names_a_missing_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    code, out = invoke("stripe", "invoices")
    assert code == 1 and "STRIPE_API_KEY: is required" in out


def test_doctor_reports_each_part(loaded: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = invoke("doctor")
    assert code == 1  # no company configured
    assert "[FAIL] configuration" in out and "COMPANY_CUI" in out
    assert "[ok] stripe" in out

    settings = dotenv_values(Path(__file__).parents[1] / "sandbox.dotenv")
    for name, value in settings.items():
        if not name.startswith("STRIPE"):
            monkeypatch.setenv(name, value or "")
    code, out = invoke("doctor")
    assert code == 0, out
    assert "[ok] configuration" in out and "[ok] warehouse" in out
    assert "sk_test_cli" not in out


def test_sandbox_serve_runs_as_a_command(tmp_path: Path) -> None:
    """The installed entry point serves on loopback and stops cleanly on SIGINT."""
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "invoicesync_dagster.cli",
            "sandbox",
            "serve",
            "--port-file",
            str(port_file),
            "--faults",
            '{"rules": [{"path_prefix": "/v1/invoices", "status": 500, "times": 1}]}',
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.05)
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": f"http://127.0.0.1:{port_file.read_text()}"}
        )
        assert client.v1.customers.list().data == []
        with pytest.raises(stripe.APIError):  # the fault rule given on the command line
            client.v1.invoices.list(options={"max_network_retries": 0})
        assert client.v1.invoices.list(options={"max_network_retries": 0}).data == []
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
    assert process.returncode == 0


def test_sandbox_seed_writes_deterministic_fixtures(tmp_path: Path) -> None:
    args = ["sandbox", "seed", "--days", "2", "--invoices-per-day", "3", "--seed", "11"]
    code, out = invoke(*args, "--output", str(tmp_path / "a.jsonl"))
    again, _ = invoke(*args, "--output", str(tmp_path / "b.jsonl"))
    assert code == again == 0
    assert "invoice" in out and str(tmp_path / "a.jsonl") in out
    first = (tmp_path / "a.jsonl").read_bytes()
    assert first == (tmp_path / "b.jsonl").read_bytes()
    kinds = {json.loads(line)["object"] for line in first.splitlines()}
    assert {"customer", "invoice", "charge", "event"} <= kinds
