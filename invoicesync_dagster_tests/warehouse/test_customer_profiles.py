"""Table `customer_tax_profiles`: who was billed on a day, replacing rows, blocked customers."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from invoicesync_dagster.efactura.customers import BuyerProfile, Classification, Source
from invoicesync_dagster.warehouse.customers import (
    billed_customers,
    load_profiles,
    replace_profiles,
    submission_blocks,
)
from invoicesync_dagster.warehouse.database import connect
from invoicesync_dagster.warehouse.schema import MIGRATIONS
from invoicesync_dagster.warehouse.stripe import replace_partition

D = date(2025, 6, 2)
D_START = 1748811600  # 2025-06-02T00:00+03:00


def _stage(tmp_path: Path, name: str, objects: list[dict[str, Any]]) -> Path:
    path = tmp_path / f"{name}.ndjson"
    path.write_text("".join(json.dumps(obj) + "\n" for obj in objects))
    return path


def _invoice(invoice_id: str, customer: str, status: str = "paid", **extra: Any) -> dict:
    return {
        "id": invoice_id, "object": "invoice", "created": D_START + 60, "currency": "ron",
        "status": status, "customer": customer, "number": f"INV-{invoice_id}", "total": 100,
        "status_transitions": {}, "lines": {"data": []}, **extra,
    }  # fmt: skip


def _profile(customer_id: str, **fields: Any) -> BuyerProfile:
    defaults: dict[str, Any] = {
        "classification": Classification.RO_COMPANY,
        "classification_reason": "has a Romanian CUI",
        "cui": "4221306",
        "cui_source": Source.MAPPINGS_CSV,
        "cui_valid": True,
        "business_signals": ["name has the company marker SRL"],
        "notes": [],
    }
    return BuyerProfile(customer_id=customer_id, **{**defaults, **fields})


def test_billed_customers_of_a_day_with_their_documents(tmp_path: Path) -> None:
    customers = [
        {"id": f"cus_{n}", "object": "customer", "created": D_START - 86_400, "name": f"C{n}"}
        for n in range(1, 5)
    ]
    invoices = [
        _invoice("in_1", "cus_1", customer_tax_ids=[{"type": "eu_vat", "value": "RO4221306"}]),
        _invoice("in_2", "cus_1"),
        _invoice("in_3", "cus_2", status="draft"),  # a draft bills nobody
        _invoice("in_4", "cus_ghost"),  # never synced into stripe_customers
    ]
    charges = [
        {"id": "ch_1", "object": "charge", "created": D_START + 90, "currency": "ron",
         "customer": "cus_1", "amount": 100},
        {"id": "ch_2", "object": "charge", "created": D_START + 90, "currency": "ron",
         "customer": "cus_3", "amount": 100},
    ]  # fmt: skip
    with connect(tmp_path / "w.duckdb") as connection:
        replace_partition(connection, "customers", D, _stage(tmp_path, "customers", customers))
        replace_partition(connection, "invoices", D, _stage(tmp_path, "invoices", invoices))
        replace_partition(connection, "charges", D, _stage(tmp_path, "charges", charges))
        billed = billed_customers(connection, D)
        other_day = billed_customers(connection, date(2025, 6, 3))

    assert [(b.customer_id, b.invoices, b.charges) for b in billed] == [
        ("cus_1", ["INV-in_1", "INV-in_2"], 1),
        ("cus_3", [], 1),
        ("cus_ghost", ["INV-in_4"], 0),
    ]
    assert billed[0].raw is not None and billed[0].raw["name"] == "C1"
    assert billed[0].invoice_tax_ids == [{"type": "eu_vat", "value": "RO4221306"}]
    assert billed[2].raw is None
    assert other_day == []


def test_replacing_profiles_touches_only_those_customers(tmp_path: Path) -> None:
    invalid = _profile(
        "cus_2",
        cui="12345678",
        cui_valid=False,
        submission_blocked=True,
        block_reason="check digit",
    )
    first = [_profile("cus_1"), invalid]
    with connect(tmp_path / "w.duckdb") as connection:
        assert replace_profiles(connection, first, D) == 2
        fixed = _profile("cus_2", cui="12345674", cui_source=Source.STRIPE_TAX_ID)
        assert replace_profiles(connection, [fixed], date(2025, 6, 3)) == 1
        rows = connection.execute(
            "SELECT customer_id, cui, cui_source, submission_blocked, partition_date "
            "FROM customer_tax_profiles ORDER BY customer_id"
        ).fetchall()
        stored = load_profiles(connection, ["cus_2", "cus_1", "cus_9"])
        blocks_before_fix = submission_blocks(connection, ["cus_1", "cus_2"])
        replace_profiles(connection, [first[1]], D)
        blocks = submission_blocks(connection, ["cus_1", "cus_2", "cus_9"])

    assert rows == [
        ("cus_1", "4221306", "mappings_csv", False, D),
        ("cus_2", "12345674", "stripe_tax_id", False, date(2025, 6, 3)),
    ]
    assert stored == [first[0], fixed]  # read back exactly as written
    assert blocks_before_fix == {}
    assert blocks == {"cus_2": "check digit"}


def test_a_failed_write_leaves_the_previous_rows(tmp_path: Path) -> None:
    with connect(tmp_path / "w.duckdb") as connection:
        replace_profiles(connection, [_profile("cus_1", cui="8486152")], D)
        # model_copy skips validation: a row the table refuses (NOT NULL) half-way through.
        broken = _profile("cus_1").model_copy(update={"classification_reason": None})
        with pytest.raises(duckdb.ConstraintException, match="classification_reason"):
            replace_profiles(connection, [_profile("cus_0"), broken], D)
        assert load_profiles(connection, ["cus_0", "cus_1"]) == [_profile("cus_1", cui="8486152")]


def test_migrations_create_both_tables_once(tmp_path: Path) -> None:
    for _ in range(2):
        with connect(tmp_path / "w.duckdb") as connection:
            tables = {
                name
                for (name,) in connection.execute(
                    "SELECT table_name FROM duckdb_tables()"
                ).fetchall()
            }
            versions = connection.execute("SELECT max(version) FROM schema_migrations").fetchone()
    assert {"anaf_registry", "customer_tax_profiles"} <= tables
    assert versions == (len(MIGRATIONS),)
