"""StripeReader against the sandbox over loopback HTTP: slicing, retries, typed errors.

Retries never really wait: the reader's sleep is replaced by a recorder, so the tests assert on
what the reader decided to wait and on how many requests the sandbox served.
"""

from __future__ import annotations

import json
import random
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from invoicesync_dagster.clients.stripe import (
    StripeAuthError,
    StripeError,
    StripeNotFound,
    StripeReader,
)
from invoicesync_dagster.sandbox.server import SandboxServer

API_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dcSECRETKEY"
DAY_START = 1_750_000_000  # some second in June 2025
BUCHAREST = ZoneInfo("Europe/Bucharest")


def invoice(number: int, created: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"in_test{number:06d}",
        "object": "invoice",
        "created": created,
        "currency": "ron",
        "total": 1000 + number,
        "status": "paid",
        "customer": "cus_test1",
        **fields,
    }


def load(server: SandboxServer, objects: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(obj) for obj in objects).encode()
    response = httpx.post(f"{server.url}/_sandbox/stripe/fixtures", content=body)
    response.raise_for_status()


def set_faults(server: SandboxServer, *rules: dict[str, Any]) -> None:
    httpx.post(f"{server.url}/_sandbox/faults", json={"rules": list(rules)}).raise_for_status()


def served(server: SandboxServer, method_path: str) -> int:
    counts = httpx.get(f"{server.url}/_sandbox/requests").json()["counts"]
    return int(counts.get(method_path, 0))


class Waits(list[float]):
    """Stands in for the reader's pause before a retry: records each wait, never sleeps."""

    def __call__(self, seconds: float, stop: object = None) -> None:
        self.append(seconds)


def make_reader(server: SandboxServer, **options: Any) -> tuple[StripeReader, Waits]:
    options.setdefault("backoff_seconds", 0.01)
    reader = StripeReader(API_KEY, server.url, **options)
    waits = Waits()
    reader._pause = waits  # type: ignore[method-assign]
    return reader, waits


def window_ids(reader: StripeReader, start: int, end: int, **kwargs: Any) -> list[str]:
    return [
        obj["id"] for page in reader.list_window("invoices", start, end, **kwargs) for obj in page
    ]


def expected_ids(objects: list[dict[str, Any]], start: int, end: int) -> list[str]:
    return sorted(obj["id"] for obj in objects if start <= obj["created"] < end)


def assert_exactly_once(got: list[str], want: list[str]) -> None:
    duplicates = [object_id for object_id, n in Counter(got).items() if n > 1]
    assert duplicates == []
    assert sorted(got) == want


# -- list_window -------------------------------------------------------------------------------


def test_window_with_thousands_of_objects_returns_each_once_in_about_one_request_per_page(
    sandbox: SandboxServer,
) -> None:
    rng = random.Random(2)
    objects = [invoice(i, DAY_START + rng.randrange(86_400)) for i in range(3_000)]
    load(sandbox, objects)
    reader, _ = make_reader(sandbox, concurrency=6)
    pages: list[int] = []

    got = window_ids(reader, DAY_START, DAY_START + 86_400, on_page=pages.append)

    assert_exactly_once(got, expected_ids(objects, DAY_START, DAY_START + 86_400))
    assert sum(pages) == 3_000 and all(1 <= n <= 100 for n in pages)
    requests = served(sandbox, "GET /v1/invoices")
    assert requests == reader.requests_made
    # 30 full pages is the minimum; slicing may waste some requests on part-full pages.
    assert 30 <= requests <= 45


def test_objects_on_slice_borders_and_window_edges_are_neither_lost_nor_duplicated(
    sandbox: SandboxServer,
) -> None:
    start, end = DAY_START, DAY_START + 4_000
    # With concurrency 4 the first slices border at +1000, +2000, +3000: put objects on those
    # seconds, one second either side, at both window edges and just outside the window.
    seconds = [start - 1, start, start + 1, end - 1, end, end + 1]
    seconds += [start + b + d for b in (1_000, 2_000, 3_000) for d in (-1, 0, 1)]
    objects = [invoice(i, second) for i, second in enumerate(seconds)]
    # 250 objects share the second of a slice border: their listing spans three pages.
    objects += [invoice(1_000 + i, start + 2_000) for i in range(250)]
    load(sandbox, objects)
    reader, _ = make_reader(sandbox, concurrency=4)

    got = window_ids(reader, start, end)

    assert_exactly_once(got, expected_ids(objects, start, end))
    assert len(got) == len(seconds) - 3 + 250


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_many_objects_in_one_second_are_paged_through_with_a_cursor(
    sandbox: SandboxServer, concurrency: int
) -> None:
    burst = DAY_START + 500
    objects = [invoice(i, burst) for i in range(430)]
    # A few around it, so the burst second is first a slice's newest and then its oldest.
    objects += [invoice(1_000 + i, DAY_START + 10 * i) for i in range(100)]
    load(sandbox, objects)
    reader, _ = make_reader(sandbox, concurrency=concurrency)

    for start, end in [
        (burst, burst + 1),
        (DAY_START, burst + 1),
        (burst, DAY_START + 1_000),
        (DAY_START, DAY_START + 1_000),
    ]:
        assert_exactly_once(window_ids(reader, start, end), expected_ids(objects, start, end))


def test_dense_bursts_inside_a_sparse_day_are_all_fetched(sandbox: SandboxServer) -> None:
    rng = random.Random(5)
    objects = [invoice(i, DAY_START + rng.randrange(86_400)) for i in range(300)]
    # Bursts: 150 invoices in one second and 150 in the 30 seconds before it.
    for burst in (DAY_START + 3_600, DAY_START + 50_000, DAY_START + 86_399):
        seconds = [burst] * 150 + [burst - rng.randrange(30) for _ in range(150)]
        objects += [invoice(len(objects) + i, second) for i, second in enumerate(seconds)]
    load(sandbox, objects)
    reader, _ = make_reader(sandbox, concurrency=5)

    got = window_ids(reader, DAY_START, DAY_START + 86_400)

    assert_exactly_once(got, expected_ids(objects, DAY_START, DAY_START + 86_400))


def test_fixed_initial_slices_still_split_where_dense(sandbox: SandboxServer) -> None:
    rng = random.Random(9)
    objects = [invoice(i, DAY_START + rng.randrange(7_200)) for i in range(700)]
    load(sandbox, objects)
    reader, _ = make_reader(sandbox, concurrency=3, slice_seconds=3_600)

    got = window_ids(reader, DAY_START, DAY_START + 86_400)

    assert_exactly_once(got, expected_ids(objects, DAY_START, DAY_START + 86_400))


def test_stopping_early_sends_no_further_requests(sandbox: SandboxServer) -> None:
    # Spread over the whole day: an empty slice would let the loop go on and submit more.
    objects = [invoice(i, DAY_START + i * 28) for i in range(3_000)]
    load(sandbox, objects)
    reader, _ = make_reader(sandbox, concurrency=4)

    pages = reader.list_window("invoices", DAY_START, DAY_START + 86_400)
    first = next(pages)
    pages.close()

    assert 90 <= len(first) <= 100
    # The first four slices, plus at most one refill if a slice finished before the yield;
    # a listing that kept going after the stop would send dozens (3,000 objects).
    assert reader.requests_made <= 8


def bucharest_day(year: int, month: int, day: int) -> tuple[int, int]:
    midnight = datetime(year, month, day, tzinfo=BUCHAREST)
    next_midnight = datetime.combine(
        midnight.date() + timedelta(days=1), midnight.time(), tzinfo=BUCHAREST
    )
    return int(midnight.timestamp()), int(next_midnight.timestamp())


@pytest.mark.parametrize(("day", "hours"), [((2025, 3, 30), 23), ((2025, 10, 26), 25)])
def test_dst_day_window_gets_every_object_of_the_local_day(
    sandbox: SandboxServer, day: tuple[int, int, int], hours: int
) -> None:
    start, end = bucharest_day(*day)
    assert end - start == hours * 3600
    # One invoice every 90 s from an hour before the local day to an hour after it, so the
    # hour that only a 25 h day has (and its absence on the 23 h day) is covered too.
    objects = [invoice(i, second) for i, second in enumerate(range(start - 3600, end + 3600, 90))]
    objects += [invoice(90_000, start), invoice(90_001, end - 1), invoice(90_002, end)]
    load(sandbox, objects)
    reader, _ = make_reader(sandbox, concurrency=4)

    got = window_ids(reader, start, end)

    assert_exactly_once(got, expected_ids(objects, start, end))
    assert len(got) == hours * 40 + 2  # 40 invoices an hour, plus the two edge ones
    last_local_hour = datetime.fromtimestamp(end - 1, BUCHAREST)
    assert (last_local_hour.hour, last_local_hour.minute) == (23, 59)


def test_window_passes_filters_and_expand(sandbox: SandboxServer) -> None:
    customer = {"id": "cus_test1", "object": "customer", "created": DAY_START, "name": "Ștefan"}
    objects = [invoice(i, DAY_START + i, status="paid" if i % 3 else "open") for i in range(150)]
    load(sandbox, [customer, *objects])
    reader, _ = make_reader(sandbox, concurrency=2)

    pages = list(
        reader.list_window(
            "invoices",
            DAY_START,
            DAY_START + 150,
            params={"status": "open", "expand": ["data.customer"]},
        )
    )

    rows = [obj for page in pages for obj in page]
    assert sorted(obj["id"] for obj in rows) == sorted(
        obj["id"] for obj in objects if obj["status"] == "open"
    )
    assert {obj["customer"]["name"] for obj in rows} == {"Ștefan"}
    assert all(type(obj) is dict and type(obj["customer"]) is dict for obj in rows)


def test_window_refuses_params_that_would_break_slicing(sandbox: SandboxServer) -> None:
    reader, _ = make_reader(sandbox)
    with pytest.raises(ValueError, match="created"):
        list(reader.list_window("invoices", 0, 10, params={"created": {"gte": 5}}))
    with pytest.raises(ValueError, match="unknown Stripe resource 'invoice'"):
        list(reader.list_window("invoice", 0, 10))
    assert list(reader.list_window("invoices", 10, 10)) == []


# -- retries -----------------------------------------------------------------------------------


def count_clean_run(sandbox: SandboxServer, run: Callable[[StripeReader], object]) -> int:
    reader, _ = make_reader(sandbox)
    run(reader)
    return reader.requests_made


def test_rate_limit_is_retried_after_the_retry_after_header(sandbox: SandboxServer) -> None:
    objects = [invoice(i, DAY_START + i * 10) for i in range(500)]
    load(sandbox, objects)

    def run(reader: StripeReader) -> list[str]:
        return window_ids(reader, DAY_START, DAY_START + 5_000)

    clean = count_clean_run(sandbox, run)
    set_faults(
        sandbox, {"path_prefix": "/v1/invoices", "status": 429, "retry_after": 3, "times": 2}
    )
    reader, waits = make_reader(sandbox)

    got = run(reader)

    assert_exactly_once(got, expected_ids(objects, DAY_START, DAY_START + 5_000))
    assert waits == [3.0, 3.0]
    assert reader.requests_made == clean + 2


def test_an_excessive_retry_after_is_capped(sandbox: SandboxServer) -> None:
    load(sandbox, [invoice(1, DAY_START)])
    set_faults(
        sandbox, {"path_prefix": "/v1/invoices", "status": 429, "retry_after": 86_400, "times": 1}
    )
    reader, waits = make_reader(sandbox)

    assert reader.retrieve("invoices", "in_test000001")["id"] == "in_test000001"
    assert waits == [60.0]


def test_server_errors_are_retried_with_growing_backoff(sandbox: SandboxServer) -> None:
    objects = [invoice(i, DAY_START + i) for i in range(250)]
    load(sandbox, objects)
    set_faults(sandbox, {"path_prefix": "/v1/invoices", "status": 500, "times": 3})
    reader, waits = make_reader(sandbox, concurrency=1, backoff_seconds=1.0)

    got = [obj["id"] for obj in reader.list_all("invoices")]

    assert got == [obj["id"] for obj in reversed(objects)]  # newest first
    assert served(sandbox, "GET /v1/invoices") == 3 + 3  # three pages, three failures
    # Exponential with jitter in [0.5, 1.5): 1x, 2x, 4x the base.
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):
        assert 0.5 * 2**attempt <= wait < 1.5 * 2**attempt


def test_timeouts_are_retried(sandbox: SandboxServer) -> None:
    load(sandbox, [invoice(1, DAY_START)])
    set_faults(sandbox, {"path_prefix": "/v1/invoices", "delay_ms": 1_500, "times": 1})
    reader, waits = make_reader(sandbox, timeout_seconds=0.3)

    assert reader.retrieve("invoices", "in_test000001")["total"] == 1001
    assert len(waits) == 1


def test_exhausted_retries_give_a_clear_error(sandbox: SandboxServer) -> None:
    load(sandbox, [invoice(i, DAY_START + i) for i in range(10)])
    set_faults(sandbox, {"path_prefix": "/v1/invoices", "status": 503})
    reader, waits = make_reader(sandbox, max_retries=2, concurrency=1)

    with pytest.raises(StripeError) as caught:
        list(reader.list_window("invoices", DAY_START, DAY_START + 10))

    message = str(caught.value)
    assert "GET /v1/invoices still failing after 3 attempts" in message
    assert "HTTP 503" in message and "retry later" in message
    assert caught.value.http_status == 503
    assert len(waits) == 2 and served(sandbox, "GET /v1/invoices") == 3


def test_a_down_server_gives_a_clear_error(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory()
    url = server.url
    server.stop()
    reader = StripeReader(API_KEY, url, max_retries=1)
    reader._pause = Waits()  # type: ignore[method-assign]

    with pytest.raises(StripeError, match="still failing after 2 attempts") as caught:
        reader.retrieve("invoices", "in_1")
    assert "ConnectionError" in str(caught.value)
    assert caught.value.http_status is None


# -- typed errors ------------------------------------------------------------------------------


def test_unknown_id_is_not_found_naming_the_id(sandbox: SandboxServer) -> None:
    reader, waits = make_reader(sandbox)

    with pytest.raises(StripeNotFound) as caught:
        reader.retrieve("credit_notes", "cn_missing42")

    assert str(caught.value) == (
        "No such credit note 'cn_missing42' (check the id / the STRIPE_API_KEY account)"
    )
    assert caught.value.http_status == 404
    assert waits == [] and served(sandbox, "GET /v1/credit_notes/cn_missing42") == 1


def test_bad_parameter_is_not_retried_and_named(sandbox: SandboxServer) -> None:
    reader, waits = make_reader(sandbox)

    with pytest.raises(StripeError, match="parameter 'colour'") as caught:
        list(reader.list_all("charges", params={"colour": "blue"}))

    assert type(caught.value) is StripeError and caught.value.http_status == 400
    assert waits == []


def test_rejected_key_is_an_auth_error(sandbox: SandboxServer) -> None:
    live_key = "sk_live_DoNotLeakMe1234567890"
    reader = StripeReader(live_key, sandbox.url)

    with pytest.raises(StripeAuthError, match="STRIPE_API_KEY") as caught:
        reader.retrieve("customers", "cus_1")

    assert live_key not in error_text(caught.value)


def error_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error) + str(error.args)


def test_api_key_never_appears_in_errors(sandbox: SandboxServer) -> None:
    load(sandbox, [invoice(1, DAY_START)])
    reader, _ = make_reader(sandbox, max_retries=1)
    failures: list[BaseException] = []
    for call in (
        lambda: reader.retrieve("invoices", API_KEY),  # the key itself as an id
        lambda: list(reader.list_all("invoices", params={"bogus": API_KEY})),
        lambda: list(
            reader.list_window("invoices", DAY_START, DAY_START + 1, params={"expand": [API_KEY]})
        ),
    ):
        with pytest.raises(StripeError) as caught:
            call()
        failures.append(caught.value)
    set_faults(sandbox, {"path_prefix": "/v1/", "status": 500, "message": f"echo {API_KEY}"})
    with pytest.raises(StripeError) as caught:
        reader.retrieve("invoices", "in_test000001")
    failures.append(caught.value)

    assert len(failures) == 4
    for failure in failures:
        assert API_KEY not in error_text(failure)
        assert API_KEY not in repr(failure.__context__)


# -- retrieve and list_all ---------------------------------------------------------------------


def test_retrieve_many_keeps_order_and_expands(sandbox: SandboxServer) -> None:
    customer = {"id": "cus_test1", "object": "customer", "created": DAY_START, "name": "Ana"}
    objects = [invoice(i, DAY_START + i) for i in range(40)]
    load(sandbox, [customer, *objects])
    reader, _ = make_reader(sandbox, concurrency=4)
    ids = [obj["id"] for obj in objects][::-3]

    got = list(reader.retrieve_many("invoices", ids, expand=["customer"]))

    assert [obj["id"] for obj in got] == ids
    assert {obj["customer"]["name"] for obj in got} == {"Ana"}


def test_retrieve_many_stops_at_an_unknown_id(sandbox: SandboxServer) -> None:
    load(sandbox, [invoice(1, DAY_START)])
    reader, _ = make_reader(sandbox)

    with pytest.raises(StripeNotFound, match="No such invoice 'in_nope'"):
        list(reader.retrieve_many("invoices", ["in_test000001", "in_nope"]))


def test_list_all_filters_and_stops_at_the_limit(sandbox: SandboxServer) -> None:
    objects = [invoice(i, DAY_START + i, customer=f"cus_{i % 2}") for i in range(300)]
    load(sandbox, objects)
    reader, _ = make_reader(sandbox)

    got = list(reader.list_all("invoices", params={"customer": "cus_1"}, limit=120))

    want = [obj for obj in reversed(objects) if obj["customer"] == "cus_1"][:120]
    assert [obj["id"] for obj in got] == [obj["id"] for obj in want]
    assert served(sandbox, "GET /v1/invoices") == 2  # 100 + 20, not a third page
    assert list(reader.list_all("invoices", limit=0)) == []
