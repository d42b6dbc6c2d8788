from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from invoicesync_dagster.warehouse.database import connect
from invoicesync_dagster.warehouse.stripe import replace_partition

D = date(2025, 3, 30)  # 23 h DST day in Bucharest
D_START = 1743285600  # 2025-03-30T00:00+02:00


def _invoice(invoice_id: str, created: int, status: str = "open", lines: int = 2) -> dict:
    return {
        "id": invoice_id,
        "object": "invoice",
        "created": created,
        "currency": "ron",
        "status": status,
        "customer": "cus_1",
        "total": 1190 * lines,
        "subtotal": 1000 * lines,
        "amount_paid": 1190 * lines if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else 1190 * lines,
        "total_taxes": [{"amount": 190 * lines}],
        "status_transitions": {"finalized_at": created, "paid_at": None, "voided_at": None},
        "lines": {
            "object": "list",
            "has_more": False,
            "data": [
                {
                    "id": f"il_{invoice_id}_{n}",
                    "amount": 1000,
                    "currency": "ron",
                    "quantity": 1,
                    "taxes": [{"amount": 190}],
                    "period": {"start": created, "end": created},
                    "description": f"Line {n}",
                }
                for n in range(lines)
            ],
        },
    }


def _stage(tmp_path: Path, objects: list[dict], name: str = "staged.ndjson") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(obj) + "\n" for obj in objects))
    return path


def test_rerun_replaces_the_day_without_duplicates(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    objects = [_invoice(f"in_{n}", D_START + n * 600) for n in range(5)]
    with connect(database) as connection:
        for _ in range(2):
            assert replace_partition(connection, "invoices", D, _stage(tmp_path, objects)) == 5
        assert connection.execute(
            "SELECT count(*), count(DISTINCT id) FROM stripe_invoices"
        ).fetchone() == (5, 5)
        assert connection.execute("SELECT count(*) FROM stripe_invoice_lines").fetchone() == (10,)
        day, tax = connection.execute(
            "SELECT DISTINCT created_date, total_tax FROM stripe_invoices"
        ).fetchone()  # type: ignore[misc]
        assert (day, tax) == (D, 380)


def test_object_deleted_in_stripe_disappears_on_rerun(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    objects = [_invoice(f"in_{n}", D_START + n) for n in range(3)]
    with connect(database) as connection:
        replace_partition(connection, "invoices", D, _stage(tmp_path, objects))
        replace_partition(connection, "invoices", D, _stage(tmp_path, objects[:2]))
        ids = {row[0] for row in connection.execute("SELECT id FROM stripe_invoices").fetchall()}
        lines = connection.execute("SELECT count(*) FROM stripe_invoice_lines").fetchone()
    assert ids == {"in_0", "in_1"}
    assert lines == (4,)


def test_later_day_updates_an_older_object_in_place(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    later = date(2025, 4, 2)
    created = _invoice("in_late", D_START + 100)
    paid = {
        **created,
        "status": "paid",
        "status_transitions": {
            "finalized_at": D_START + 100,
            "paid_at": D_START + 3 * 86400,
            "voided_at": None,
        },
    }
    with connect(database) as connection:
        replace_partition(connection, "invoices", D, _stage(tmp_path, [created]))
        replace_partition(connection, "invoices", later, _stage(tmp_path, [paid]))
        rows = connection.execute(
            "SELECT status, created_date, partition_date, paid_at IS NOT NULL FROM stripe_invoices"
        ).fetchall()
        # Re-running the earlier day (current state from Stripe) keeps one row.
        replace_partition(connection, "invoices", D, _stage(tmp_path, [paid]))
        count = connection.execute("SELECT count(*) FROM stripe_invoices").fetchone()
    assert rows == [("paid", D, later, True)]
    assert count == (1,)


def test_extra_lines_replace_a_truncated_embedded_list(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    invoice = _invoice("in_long", D_START, lines=10)
    invoice["lines"]["has_more"] = True
    extra = [
        {
            "id": f"il_x{n}",
            "invoice": "in_long",
            "amount": 5,
            "currency": "ron",
            "quantity": 1,
            "taxes": [],
            "period": {"start": D_START, "end": D_START},
            "description": "x",
        }
        for n in range(12)
    ]
    with connect(database) as connection:
        replace_partition(
            connection,
            "invoices",
            D,
            _stage(tmp_path, [invoice]),
            extra_lines=_stage(tmp_path, extra, "lines.ndjson"),
        )
        rows = connection.execute(
            "SELECT count(*), min(line_no), max(line_no) FROM stripe_invoice_lines"
        ).fetchone()
    assert rows == (12, 1, 12)


def test_failed_load_leaves_the_previous_state(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    good = [_invoice("in_ok", D_START)]
    broken = tmp_path / "broken.ndjson"
    broken.write_text('{"id": "in_bad", "created": "not a number", "currency": "ron"}\n')
    with connect(database) as connection:
        replace_partition(connection, "invoices", D, _stage(tmp_path, good))
        try:
            replace_partition(connection, "invoices", D, broken)
        except Exception:
            pass
        else:
            raise AssertionError("a malformed staged object must fail the load")
        ids = connection.execute("SELECT id FROM stripe_invoices").fetchall()
    assert ids == [("in_ok",)]
