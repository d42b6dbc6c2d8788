"""The Stripe assets end to end: real sandbox over loopback, real DuckDB file, dg.materialize."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest

from invoicesync_dagster.defs.resources import StripeResource, WarehouseResource
from invoicesync_dagster.defs.stripe.assets import (
    stripe_charges,
    stripe_credit_notes,
    stripe_customers,
    stripe_invoices,
    stripe_refunds,
)
from invoicesync_dagster.sandbox import stripe_objects as so
from invoicesync_dagster.sandbox.server import SandboxServer

BUCHAREST = ZoneInfo("Europe/Bucharest")
ALL_ASSETS = [
    stripe_invoices,
    stripe_charges,
    stripe_refunds,
    stripe_credit_notes,
    stripe_customers,
]


def at(day: date, hour: int = 12, minute: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=BUCHAREST).timestamp())


class Scenario:
    """Builds Stripe objects with the sandbox's factories and loads them into a sandbox."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.ids = so.StripeIds(random.Random(1))

    def load(self, *objects: dict[str, Any]) -> None:
        self.server.stripe.load(list(objects))

    def customer(self, created: int, name: str = "Popescu & Fiii S.R.L.") -> dict[str, Any]:
        address = so.address(line1="Str. Lungă 1", city="Cluj-Napoca", country="RO", state="CJ")
        return so.customer(
            id=self.ids("cus"),
            created=created,
            name=name,
            email="office@popescu.ro",
            address=address,
            metadata={"cui": "4221306"},
        )

    def invoice(
        self, customer: dict[str, Any], created: int, *, paid_at: int | None = None, lines: int = 1
    ) -> dict[str, Any]:
        invoice_id = self.ids("in")
        items = [
            so.line_item(
                id=self.ids("il"),
                invoice=invoice_id,
                currency="ron",
                description=f"Plan {n}",
                unit_amount=10_000,
                quantity=1,
                price=self.ids("price"),
                product=self.ids("prod"),
                period_start=created,
                period_end=created,
            )
            for n in range(lines)
        ]
        return so.invoice(
            id=invoice_id,
            created=created,
            customer=customer,
            currency="ron",
            lines=items,
            status="paid" if paid_at else "open",
            number=f"ABC-{invoice_id[-4:]}",
            finalized_at=created,
            paid_at=paid_at,
        )

    def event(self, kind: str, created: int, obj: dict[str, Any]) -> dict[str, Any]:
        return so.event(id=self.ids("evt"), type=kind, created=created, data_object=obj)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_assets")


@pytest.fixture
def run(
    env: None, sandbox: SandboxServer, tmp_path: Path
) -> Callable[..., dg.ExecuteInProcessResult]:
    def materialize(
        day: date, assets: list[Any] | None = None, instance: dg.DagsterInstance | None = None
    ) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            assets or ALL_ASSETS,
            partition_key=day.isoformat(),
            resources={
                "stripe": StripeResource(api_base=sandbox.url, concurrency=4),
                "warehouse": WarehouseResource(database=str(tmp_path / "w.duckdb")),
            },
            raise_on_error=False,
            instance=instance,
        )

    return materialize


def query(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
        return connection.execute(sql).fetchall()


@pytest.mark.parametrize(
    ("day", "hours"), [(date(2025, 3, 30), 23), (date(2025, 10, 26), 25), (date(2025, 6, 1), 24)]
)
def test_dst_day_window_takes_exactly_its_own_objects(
    run: Callable[..., dg.ExecuteInProcessResult],
    sandbox: SandboxServer,
    tmp_path: Path,
    day: date,
    hours: int,
) -> None:
    scenario = Scenario(sandbox)
    start = at(day, 0)
    end = at(day + timedelta(days=1), 0)
    assert end - start == hours * 3600
    cus = scenario.customer(start - 86_400)
    inside = [scenario.invoice(cus, t) for t in (start, start + 3600, end - 1)]
    outside = [scenario.invoice(cus, t) for t in (start - 1, end)]
    scenario.load(cus, *inside, *outside)

    result = run(day, [stripe_invoices])

    assert result.success
    rows = query(tmp_path, "SELECT id, created_date FROM stripe_invoices")
    assert {r[0] for r in rows} == {i["id"] for i in inside}
    assert {r[1] for r in rows} == {day}


def test_many_pages_rerun_is_idempotent_and_reports_metadata(
    run: Callable[..., dg.ExecuteInProcessResult], sandbox: SandboxServer, tmp_path: Path
) -> None:
    scenario = Scenario(sandbox)
    day = date.today() - timedelta(days=3)
    cus = scenario.customer(at(day, 0) - 86_400)
    invoices = [scenario.invoice(cus, at(day, 0) + 60 * n, lines=2) for n in range(750)]
    scenario.load(cus, *invoices)

    first = run(day, [stripe_invoices])
    pages = sandbox.requests.count("GET", "/v1/invoices")
    second = run(day, [stripe_invoices])

    assert first.success and second.success
    assert pages >= 8  # 750 objects at 100 per page cannot come in fewer
    assert query(tmp_path, "SELECT count(*), count(DISTINCT id) FROM stripe_invoices") == [
        (750, 750)
    ]
    assert query(tmp_path, "SELECT count(*) FROM stripe_invoice_lines") == [(1500,)]
    (materialization,) = second.asset_materializations_for_node("stripe_invoices")[:1]
    metadata = materialization.metadata
    assert metadata["dagster/row_count"].value == 750
    assert metadata["amounts_by_currency_minor_units"].value == {
        "RON": sum(i["total"] for i in invoices)
    }
    assert "| id" in metadata["preview"].value


@pytest.mark.parametrize("via", ["events", "lookback"])
def test_late_payment_and_refund_are_caught(
    run: Callable[..., dg.ExecuteInProcessResult],
    sandbox: SandboxServer,
    tmp_path: Path,
    via: str,
) -> None:
    """Invoice created on D, paid on D+3, refunded on D+10: each later day updates it."""
    scenario = Scenario(sandbox)
    # Within Stripe's 30-day event retention, or beyond it (the fake drops old events too).
    d = date.today() - timedelta(days=15 if via == "events" else 70)
    cus = scenario.customer(at(d) - 86_400)
    open_invoice = scenario.invoice(cus, at(d, 9))
    scenario.load(cus, open_invoice, scenario.event("invoice.finalized", at(d, 9), open_invoice))
    assert run(d).success
    assert query(tmp_path, "SELECT status FROM stripe_invoices") == [("open",)]

    # D+3: paid, by a charge created that day.
    paid = {
        **open_invoice,
        "status": "paid",
        "amount_paid": open_invoice["total"],
        "amount_remaining": 0,
        "status_transitions": {
            **open_invoice["status_transitions"],
            "paid_at": at(d, 9) + 3 * 86_400,
        },
    }
    charge = so.charge(
        id=scenario.ids("ch"),
        created=at(d + timedelta(days=3), 10),
        amount=paid["total"],
        currency="ron",
        customer=cus["id"],
    )
    scenario.load(paid, charge, scenario.event("invoice.paid", at(d + timedelta(days=3)), paid))
    assert run(d + timedelta(days=3)).success
    assert query(tmp_path, "SELECT status, created_date, partition_date FROM stripe_invoices") == [
        ("paid", d, d + timedelta(days=3))
    ]

    # D+10: the charge is partly refunded.
    refund_day = d + timedelta(days=10)
    refunded = so.charge(
        id=charge["id"],
        created=charge["created"],
        amount=charge["amount"],
        currency="ron",
        customer=cus["id"],
        amount_refunded=5_000,
    )
    refund = so.refund(
        id=scenario.ids("re"),
        created=at(refund_day),
        amount=5_000,
        charge=charge["id"],
        currency="ron",
    )
    scenario.load(refunded, refund, scenario.event("charge.refunded", at(refund_day), refunded))
    assert run(refund_day).success
    assert query(tmp_path, "SELECT amount_refunded, partition_date FROM stripe_charges") == [
        (5_000, refund_day)
    ]
    assert query(tmp_path, "SELECT id, amount FROM stripe_refunds") == [(refund["id"], 5_000)]
    # The customer billed on D+3 is in the warehouse with its current state.
    assert query(tmp_path, "SELECT id, name FROM stripe_customers") == [
        (cus["id"], "Popescu & Fiii S.R.L.")
    ]


def test_rate_limits_and_server_errors_are_retried(
    run: Callable[..., dg.ExecuteInProcessResult], sandbox: SandboxServer, tmp_path: Path
) -> None:
    scenario = Scenario(sandbox)
    day = date.today() - timedelta(days=2)
    cus = scenario.customer(at(day, 1))
    scenario.load(cus, *(scenario.invoice(cus, at(day, 2) + n) for n in range(30)))
    sandbox.faults.configure(
        {
            "rules": [
                {"path_prefix": "/v1/invoices", "status": 429, "retry_after": 0, "times": 2},
                {"path_prefix": "/v1/customers", "status": 500, "times": 2},
            ]
        }
    )

    result = run(day, [stripe_invoices, stripe_charges, stripe_customers])

    assert result.success
    statuses = [entry["status"] for entry in sandbox.requests.snapshot()["log"]]
    assert statuses.count(429) == 2 and statuses.count(500) == 2
    assert query(tmp_path, "SELECT count(*) FROM stripe_invoices") == [(30,)]
    assert query(tmp_path, "SELECT count(*) FROM stripe_customers") == [(1,)]


def test_unknown_customer_is_named_and_the_day_goes_on(
    run: Callable[..., dg.ExecuteInProcessResult], sandbox: SandboxServer, tmp_path: Path
) -> None:
    scenario = Scenario(sandbox)
    day = date.today() - timedelta(days=2)
    known = scenario.customer(at(day, 1))
    ghost = {**scenario.customer(at(day, 1)), "id": "cus_deleted0001"}
    scenario.load(known, scenario.invoice(known, at(day, 2)), scenario.invoice(ghost, at(day, 3)))

    with dg.DagsterInstance.ephemeral() as instance:
        result = run(day, [stripe_invoices, stripe_charges, stripe_customers], instance)
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]

    assert result.success
    (materialization,) = result.asset_materializations_for_node("stripe_customers")
    assert materialization.metadata["missing_in_stripe"].value == ["cus_deleted0001"]
    assert any("cus_deleted0001" in m and "STRIPE_API_KEY" in m for m in messages)
    assert query(tmp_path, "SELECT id FROM stripe_customers") == [(known["id"],)]


def test_bad_api_key_fails_with_a_clear_error_and_no_secret(
    run: Callable[..., dg.ExecuteInProcessResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_notforthesandbox")
    result = run(date.today() - timedelta(days=1), [stripe_invoices])
    assert not result.success
    failure = result.failure_data_for_node("stripe_invoices")
    assert failure is not None
    text = json.dumps(failure.error.to_string() if failure.error else "")
    assert "STRIPE_API_KEY" in text
    assert "notforthesandbox" not in text
