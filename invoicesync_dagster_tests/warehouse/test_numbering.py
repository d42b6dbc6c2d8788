"""`invoice_number_allocations`: stable, gapless, never reused numbers, in a real DuckDB file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoicesync_dagster.efactura.numbering import (
    DocumentNumber,
    NumberingError,
    NumberingRequest,
    allocation_batches,
    parse_document_number,
)
from invoicesync_dagster.warehouse.database import connect
from invoicesync_dagster.warehouse.numbering import (
    MAX_ATTEMPTS,
    AllocationConflict,
    allocate,
    gaps,
    numbers_for,
    void,
)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "w.duckdb"


@pytest.fixture
def connection(database: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with connect(database) as opened:
        yield opened


def _keys(*ids: str) -> list[str]:
    return [f"stripe_invoice:{object_id}" for object_id in ids]


def _numbers(allocations: dict[str, Any]) -> dict[str, int]:
    return {key: allocation.number for key, allocation in allocations.items()}


def test_new_sources_get_consecutive_numbers_in_the_order_given(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    allocations = allocate(connection, "INV", 2026, _keys("in_b", "in_a", "in_c"))
    assert _numbers(allocations) == dict(zip(_keys("in_b", "in_a", "in_c"), [1, 2, 3], strict=True))
    assert allocations["stripe_invoice:in_c"].document_id == "INV-2026-000003"
    assert {a.state for a in allocations.values()} == {"allocated"}
    assert gaps(connection, "INV", 2026) == []


def test_a_rerun_returns_the_same_numbers_for_the_same_sources(database: Path) -> None:
    with connect(database) as first_run:
        first = allocate(first_run, "INV", 2026, _keys("in_1", "in_2", "in_3"))
    with connect(database) as rerun:  # a later run, e.g. the day re-materialized
        again = allocate(rerun, "INV", 2026, _keys("in_3", "in_1", "in_2", "in_4"))
        stored = numbers_for(rerun, _keys("in_1", "in_2", "in_3", "in_4"))
    assert {key: again[key] for key in first} == first
    assert again["stripe_invoice:in_4"].number == 4
    assert stored == again


def test_a_key_listed_twice_in_one_call_gets_one_number(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    allocations = allocate(connection, "INV", 2026, _keys("in_1", "in_1", "in_2"))
    assert _numbers(allocations) == {"stripe_invoice:in_1": 1, "stripe_invoice:in_2": 2}


def test_each_series_and_each_year_counts_from_one(connection: duckdb.DuckDBPyConnection) -> None:
    allocate(connection, "INV", 2026, _keys("in_1", "in_2"))
    credit_notes = allocate(connection, "CN", 2026, ["stripe_refund:re_1"])
    next_year = allocate(connection, "INV", 2027, _keys("in_3"))
    later_this_year = allocate(connection, "INV", 2026, _keys("in_4"))
    assert credit_notes["stripe_refund:re_1"].document_id == "CN-2026-000001"
    assert next_year["stripe_invoice:in_3"].document_id == "INV-2027-000001"
    assert later_this_year["stripe_invoice:in_4"].document_id == "INV-2026-000003"
    assert all(
        gaps(connection, s, y) == [] for s, y in [("INV", 2026), ("CN", 2026), ("INV", 2027)]
    )


def test_an_existing_number_wins_over_a_new_series_or_year(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    first = allocate(connection, "INV", 2026, _keys("in_1"))
    # e.g. DEFAULT_INVOICE_SERIES changed: a number already handed out is never reallocated.
    again = allocate(connection, "F", 2027, _keys("in_1", "in_2"))
    assert again["stripe_invoice:in_1"] == first["stripe_invoice:in_1"]
    assert again["stripe_invoice:in_2"].document_id == "F-2027-000001"


def test_a_failing_document_gets_no_number_and_leaves_no_gap(database: Path) -> None:
    """Five sources of a day; the third fails its local checks on day one, is fixed and passes on
    the re-run of the next day."""
    day = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    sources = [
        NumberingRequest(f"stripe_invoice:in_{i}", "INV", day.replace(hour=8 + i)) for i in range(5)
    ]

    def run(passing: list[NumberingRequest]) -> dict[str, int]:
        with connect(database) as opened:
            for (series, year), keys in allocation_batches(passing).items():
                allocate(opened, series, year, keys)
            assert gaps(opened, "INV", 2026) == []
            return _numbers(numbers_for(opened, [source.source_key for source in sources]))

    day_one = run([source for i, source in enumerate(sources) if i != 2])
    assert day_one == {
        "stripe_invoice:in_0": 1,
        "stripe_invoice:in_1": 2,
        "stripe_invoice:in_3": 3,
        "stripe_invoice:in_4": 4,
    }
    rerun = run(sources)
    assert rerun == {**day_one, "stripe_invoice:in_2": 5}


def test_a_voided_number_keeps_its_row_and_is_never_reused(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    allocate(connection, "INV", 2026, _keys("in_1", "in_2"))
    voided = void(connection, "stripe_invoice:in_1", "  Stripe invoice deleted before upload ")
    assert (voided.number, voided.state) == (1, "voided") and voided.voided
    assert voided.void_reason == "Stripe invoice deleted before upload"
    assert voided.voided_at is not None
    assert gaps(connection, "INV", 2026) == []

    again = allocate(connection, "INV", 2026, _keys("in_1", "in_3"))
    assert again["stripe_invoice:in_1"] == voided  # still voided: the caller must not issue it
    assert again["stripe_invoice:in_3"].number == 3
    assert void(connection, "stripe_invoice:in_1", "second thoughts") == voided
    (rows,) = connection.execute("SELECT count(*) FROM invoice_number_allocations").fetchone()  # type: ignore[misc]
    assert rows == 3


def test_void_needs_a_known_source_and_a_reason(connection: duckdb.DuckDBPyConnection) -> None:
    allocate(connection, "INV", 2026, _keys("in_1"))
    with pytest.raises(KeyError, match="stripe_invoice:in_9 has no invoice number"):
        void(connection, "stripe_invoice:in_9", "typo")
    with pytest.raises(ValueError, match="needs a reason"):
        void(connection, "stripe_invoice:in_1", " ")
    assert not numbers_for(connection, _keys("in_1"))["stripe_invoice:in_1"].voided


@pytest.mark.parametrize(
    ("values", "violated"),
    [
        (("INV", 2026, 1, "stripe_invoice:in_x", "allocated", None), "number: 1.*primary key"),
        (("INV", 2026, 2, "stripe_invoice:in_1", "allocated", None), "stripe_invoice:in_1"),
        (("INV", 2026, 0, "stripe_invoice:in_x", "allocated", None), "CHECK"),
        (("INV", 2026, 2, "stripe_invoice:in_x", "cancelled", None), "CHECK"),
        (("INV", 2026, 2, "stripe_invoice:in_x", "voided", None), "CHECK"),
        (("INV", 2026, 2, "stripe_invoice:in_x", "allocated", "why"), "CHECK"),
    ],
)
def test_the_table_enforces_unique_numbers_and_sources(
    connection: duckdb.DuckDBPyConnection, values: tuple[Any, ...], violated: str
) -> None:
    allocate(connection, "INV", 2026, _keys("in_1"))
    series, year, number, key, state, reason = values
    with pytest.raises(duckdb.ConstraintException, match=violated):
        connection.execute(
            "INSERT INTO invoice_number_allocations "
            "(series, year, number, source_key, document_id, allocated_at, state, void_reason) "
            "VALUES (?, ?, ?, ?, 'X', now(), ?, ?)",
            [series, year, number, key, state, reason],
        )


@pytest.mark.parametrize(
    ("series", "year", "keys"),
    [("IN-V", 2026, _keys("in_1")), ("INV", 26, _keys("in_1")), ("INV", 2026, ["in_1"])],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    connection: duckdb.DuckDBPyConnection, series: str, year: int, keys: list[str]
) -> None:
    with pytest.raises(NumberingError):
        allocate(connection, series, year, keys)
    assert numbers_for(connection, ["stripe_invoice:in_1", "in_1"]) == {}


def test_allocate_will_not_run_inside_the_callers_transaction(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    connection.execute("BEGIN TRANSACTION")
    with pytest.raises(duckdb.TransactionException, match="within a transaction"):
        allocate(connection, "INV", 2026, _keys("in_1"))
    connection.execute("ROLLBACK")
    assert allocate(connection, "INV", 2026, _keys("in_1"))["stripe_invoice:in_1"].number == 1


def test_readers_on_an_unmigrated_warehouse_see_nothing(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "old.duckdb")) as old:
        assert numbers_for(old, _keys("in_1")) == {}
        assert gaps(old, "INV", 2026) == []


class _RivalBeforeCommit:
    """A connection on which, just before each of the first `races` COMMITs, another connection
    allocates a number of the same series and commits first: the optimistic-concurrency loser."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, rival: Any, races: int) -> None:
        self.connection, self.rival, self.races = connection, rival, races

    def execute(self, sql: str, parameters: Any = None) -> Any:
        if sql == "COMMIT" and self.races:
            self.races -= 1
            allocate(self.rival, "INV", 2026, [f"stripe_refund:re_{self.races}"])
        if parameters is None:
            return self.connection.execute(sql)
        return self.connection.execute(sql, parameters)


def test_a_commit_conflict_is_retried_on_a_fresh_snapshot(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    raced = _RivalBeforeCommit(connection, connection.cursor(), races=2)
    ours = allocate(cast(duckdb.DuckDBPyConnection, raced), "INV", 2026, _keys("in_1", "in_2"))
    # The rival's two numbers committed first (1, 2); ours come after, still consecutive.
    assert _numbers(ours) == {"stripe_invoice:in_1": 3, "stripe_invoice:in_2": 4}
    assert _numbers(numbers_for(connection, ["stripe_refund:re_1", "stripe_refund:re_0"])) == {
        "stripe_refund:re_1": 1,
        "stripe_refund:re_0": 2,
    }
    assert gaps(connection, "INV", 2026) == []


def test_endless_conflicts_give_up_with_nothing_allocated(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    raced = _RivalBeforeCommit(connection, connection.cursor(), races=MAX_ATTEMPTS)
    with pytest.raises(AllocationConflict, match=r"after 20 attempts.*run again"):
        allocate(cast(duckdb.DuckDBPyConnection, raced), "INV", 2026, _keys("in_1"))
    assert numbers_for(connection, _keys("in_1")) == {}
    (highest,) = connection.execute("SELECT max(number) FROM invoice_number_allocations").fetchone()  # type: ignore[misc]
    assert highest == MAX_ATTEMPTS and gaps(connection, "INV", 2026) == []


def test_two_threads_allocating_at_once_get_unique_consecutive_numbers(database: Path) -> None:
    with connect(database):
        pass  # migrate once, before the threads open their own connections
    start = threading.Barrier(2)
    results: dict[str, list[dict[str, int]]] = {}

    def worker(name: str) -> None:
        with connect(database) as own:
            start.wait()
            results[name] = [
                _numbers(
                    allocate(
                        own, "INV", 2026, [f"stripe_{name}:{name[:2]}_{i}_{j}" for j in range(3)]
                    )
                )
                for i in range(40)
            ]

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("invoice", "charge")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    batches = results["invoice"] + results["charge"]
    numbers = sorted(number for batch in batches for number in batch.values())
    assert numbers == list(range(1, 241))
    for batch in batches:  # each call's numbers are consecutive, in the order given
        assert list(batch.values()) == list(range(min(batch.values()), min(batch.values()) + 3))
    with connect(database) as check:
        assert gaps(check, "INV", 2026) == []


PLACES = [("INV", 2026), ("INV", 2027), ("CN", 2026)]
CALLS = st.lists(
    st.tuples(
        st.sampled_from(range(len(PLACES))),
        st.lists(st.integers(0, 11), max_size=6),  # keys from a small pool: repeats are common
        st.booleans(),  # which of two connections makes the call
    ),
    max_size=10,
)


@pytest.fixture(scope="module")
def shared_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("numbering") / "w.duckdb"


@settings(max_examples=30, deadline=None)
@given(calls=CALLS)
def test_any_interleaving_numbers_each_series_and_year_exactly_one_to_n(
    shared_database: Path, calls: list[tuple[int, list[int], bool]]
) -> None:
    with connect(shared_database) as first:
        first.execute("DELETE FROM invoice_number_allocations")  # a fresh ledger per example
        connections = (first, first.cursor())
        owner: dict[str, tuple[str, int, int]] = {}  # the first answer for each key
        for place, ids, second in calls:
            series, year = PLACES[place]
            keys = [f"stripe_charge:ch_{i}" for i in ids]
            answer = allocate(connections[second], series, year, keys)
            assert list(answer) == list(dict.fromkeys(keys))
            for key, allocation in answer.items():
                got = (allocation.series, allocation.year, allocation.number)
                assert owner.setdefault(key, got) == got  # repeated keys are stable
                assert parse_document_number(allocation.document_id) == DocumentNumber(*got)
        for series, year in PLACES:
            numbers = sorted(n for s, y, n in owner.values() if (s, y) == (series, year))
            assert numbers == list(range(1, len(numbers) + 1))
            assert gaps(first, series, year) == []
        (rows, distinct_keys) = first.execute(
            "SELECT count(*), count(DISTINCT source_key) FROM invoice_number_allocations"
        ).fetchone()  # type: ignore[misc]
        assert rows == distinct_keys == len(owner)
