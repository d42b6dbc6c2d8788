"""The Stripe fake, exercised through the real `stripe` SDK over loopback HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from invoicesync_dagster.sandbox.faults import FaultConfigError, FaultInjector
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster.sandbox.stripe_fake import EVENT_RETENTION_SECONDS, FixtureError

NOW = 1_760_000_000  # the sandbox clock is pinned here where time matters
DAY = 86_400


def invoice(n: int, created: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"in_{n:05d}",
        "object": "invoice",
        "created": created,
        "customer": "cus_1",
        "status": "paid",
        "currency": "ron",
        "total": 1000 + n,
        **fields,
    }


def customer(n: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"cus_{n}", "object": "customer", "created": NOW - DAY + n, **fields}


def event(n: int, created: int, event_type: str) -> dict[str, Any]:
    return {
        "id": f"evt_{n}",
        "object": "event",
        "created": created,
        "type": event_type,
        "data": {"object": {"id": f"in_{n:05d}", "object": "invoice"}},
    }


def lines(parent: str, count: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": f"il_{parent}_{i}", "object": "line_item", "amount": i} for i in range(count)
        ],
        "has_more": False,
        "url": f"/v1/invoices/{parent}/lines",
    }


def client_for(server: SandboxServer, key: str = "sk_test_sandbox") -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": server.url})


def ids(items: Any) -> list[str]:
    return [item["id"] for item in items]


def served(server: SandboxServer, path: str) -> int:
    """How many GETs of `path` the server answered, read through the control endpoint."""
    counts = httpx.get(f"{server.url}/_sandbox/requests").json()["counts"]
    return counts.get(f"GET {path}", 0)


@pytest.fixture
def client(sandbox: SandboxServer) -> stripe.StripeClient:
    return client_for(sandbox)


# -- ordering, created filters, pagination -------------------------------------------------


def test_list_is_newest_first_with_ties_in_insertion_order(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    sandbox.stripe.load(
        [invoice(1, 100), invoice(2, 300), invoice(3, 200), invoice(4, 300), invoice(5, 100)]
    )
    page = client.v1.invoices.list()
    assert ids(page.data) == ["in_00002", "in_00004", "in_00003", "in_00001", "in_00005"]
    assert page.has_more is False
    assert page.url == "/v1/invoices"
    assert page.object == "list"


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (200, ["in_00002", "in_00003"]),
        ({"gt": 200}, ["in_00004"]),
        ({"gte": 200}, ["in_00004", "in_00002", "in_00003"]),
        ({"lt": 200}, ["in_00001"]),
        ({"lte": 200}, ["in_00002", "in_00003", "in_00001"]),
        ({"gte": 150, "lt": 300}, ["in_00002", "in_00003"]),
        ({"gt": 100, "lte": 300}, ["in_00004", "in_00002", "in_00003"]),
        ({"gt": 300}, []),
        ({"gte": 300, "lt": 300}, []),
    ],
)
def test_created_filter_operators(
    sandbox: SandboxServer,
    client: stripe.StripeClient,
    created: int | dict[str, int],
    expected: list[str],
) -> None:
    sandbox.stripe.load([invoice(1, 100), invoice(2, 200), invoice(3, 200), invoice(4, 300)])
    page = client.v1.invoices.list(params={"created": created})
    assert ids(page.data) == expected


def test_pagination_fetches_250_objects_in_3_requests(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    sandbox.stripe.load([invoice(n, NOW - n // 7) for n in range(250)])
    seen = [i.id for i in client.v1.invoices.list(params={"limit": 100}).auto_paging_iter()]
    assert seen == [f"in_{n:05d}" for n in range(250)]
    assert served(sandbox, "/v1/invoices") == 3


def test_pages_chain_with_exact_has_more(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    sandbox.stripe.load([invoice(n, NOW - n) for n in range(20)])
    first = client.v1.invoices.list(params={"limit": 10})
    second = client.v1.invoices.list(params={"limit": 10, "starting_after": first.data[-1].id})
    assert (first.has_more, second.has_more) == (True, False)
    assert ids(first.data) + ids(second.data) == [f"in_{n:05d}" for n in range(20)]


def test_ending_before_returns_the_newer_page_newest_first(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    sandbox.stripe.load([invoice(n, NOW - n) for n in range(10)])
    page = client.v1.invoices.list(params={"limit": 3, "ending_before": "in_00006"})
    assert ids(page.data) == ["in_00003", "in_00004", "in_00005"]
    assert page.has_more is True
    newest = client.v1.invoices.list(params={"limit": 3, "ending_before": "in_00003"})
    assert ids(newest.data) == ["in_00000", "in_00001", "in_00002"]
    assert newest.has_more is False
    # The SDK walks backwards through `ending_before` pages.
    backwards = client.v1.invoices.list(params={"limit": 2, "ending_before": "in_00005"})
    walked = [i.id for i in backwards.auto_paging_iter()]
    assert walked == ["in_00004", "in_00003", "in_00002", "in_00001", "in_00000"]


def test_cursor_respects_created_range(sandbox: SandboxServer, client: stripe.StripeClient) -> None:
    sandbox.stripe.load([invoice(n, NOW - n) for n in range(10)])
    page = client.v1.invoices.list(
        params={"created": {"gte": NOW - 6}, "starting_after": "in_00002", "limit": 100}
    )
    assert ids(page.data) == ["in_00003", "in_00004", "in_00005", "in_00006"]


def test_limit_bounds(sandbox: SandboxServer, client: stripe.StripeClient) -> None:
    sandbox.stripe.load([invoice(n, NOW - n) for n in range(120)])
    assert len(client.v1.invoices.list().data) == 10
    assert len(client.v1.invoices.list(params={"limit": 1}).data) == 1
    assert len(client.v1.invoices.list(params={"limit": 100}).data) == 100
    for bad in (0, 101):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            client.v1.invoices.list(params={"limit": bad})
        assert raised.value.param == "limit"
        assert raised.value.http_status == 400


def test_cursor_errors(sandbox: SandboxServer, client: stripe.StripeClient) -> None:
    sandbox.stripe.load([invoice(1, NOW), {"id": "ch_1", "object": "charge", "created": NOW}])
    with pytest.raises(stripe.InvalidRequestError) as both:
        client.v1.invoices.list(params={"starting_after": "in_00001", "ending_before": "in_00001"})
    assert "only specify one" in str(both.value.user_message)
    for cursor in ("in_missing", "ch_1"):  # unknown, or an object of another type
        with pytest.raises(stripe.InvalidRequestError) as missing:
            client.v1.invoices.list(params={"starting_after": cursor})
        assert missing.value.code == "resource_missing"
        assert missing.value.param == "starting_after"
        assert cursor in str(missing.value.user_message)


# -- filters ---------------------------------------------------------------------------


def test_per_resource_filters(sandbox: SandboxServer, client: stripe.StripeClient) -> None:
    sandbox.stripe.load(
        [
            customer(1, email="ana@example.ro"),
            customer(2, email="Ana@example.ro"),
            {"id": "pi_1", "object": "payment_intent", "created": NOW, "customer": "cus_1"},
            {"id": "pi_2", "object": "payment_intent", "created": NOW, "customer": "cus_2"},
            invoice(1, NOW - 1, status="open", customer="cus_1"),
            invoice(2, NOW - 2, status="paid", customer="cus_2"),
            invoice(3, NOW - 3, status="paid", customer="cus_1"),
            {
                "id": "ch_1",
                "object": "charge",
                "created": NOW,
                "customer": "cus_1",
                "payment_intent": "pi_1",
            },
            {
                "id": "ch_2",
                "object": "charge",
                "created": NOW,
                "customer": None,
                "payment_intent": None,
            },
            {
                "id": "re_1",
                "object": "refund",
                "created": NOW,
                "charge": "ch_1",
                "payment_intent": "pi_1",
            },
            {
                "id": "re_2",
                "object": "refund",
                "created": NOW,
                "charge": "ch_2",
                "payment_intent": None,
            },
            {
                "id": "cn_1",
                "object": "credit_note",
                "created": NOW,
                "invoice": "in_00003",
                "customer": "cus_1",
            },
            {
                "id": "cn_2",
                "object": "credit_note",
                "created": NOW,
                "invoice": "in_00002",
                "customer": "cus_2",
            },
        ]
    )
    v1 = client.v1
    assert ids(v1.invoices.list(params={"status": "paid"}).data) == ["in_00002", "in_00003"]
    assert ids(v1.invoices.list(params={"customer": "cus_1"}).data) == ["in_00001", "in_00003"]
    both = v1.invoices.list(params={"customer": "cus_1", "status": "paid"})
    assert ids(both.data) == ["in_00003"]
    assert ids(v1.charges.list(params={"customer": "cus_1"}).data) == ["ch_1"]
    assert ids(v1.charges.list(params={"payment_intent": "pi_1"}).data) == ["ch_1"]
    assert ids(v1.refunds.list(params={"charge": "ch_2"}).data) == ["re_2"]
    assert ids(v1.refunds.list(params={"payment_intent": "pi_1"}).data) == ["re_1"]
    assert ids(v1.credit_notes.list(params={"invoice": "in_00002"}).data) == ["cn_2"]
    assert ids(v1.credit_notes.list(params={"customer": "cus_1"}).data) == ["cn_1"]
    assert ids(v1.customers.list(params={"email": "ana@example.ro"}).data) == ["cus_1"]
    assert ids(v1.payment_intents.list(params={"customer": "cus_2"}).data) == ["pi_2"]


def test_filtered_pages_have_exact_has_more(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    statuses = ["paid", "open", "void"]
    sandbox.stripe.load([invoice(n, NOW - n, status=statuses[n % 3]) for n in range(30)])
    paid = [
        i.id
        for i in client.v1.invoices.list(params={"status": "paid", "limit": 4}).auto_paging_iter()
    ]
    assert paid == [f"in_{n:05d}" for n in range(0, 30, 3)]
    assert served(sandbox, "/v1/invoices") == 3  # 4 + 4 + 2
    back = client.v1.invoices.list(params={"status": "paid", "ending_before": "in_00009"})
    assert ids(back.data) == ["in_00000", "in_00003", "in_00006"]
    assert back.has_more is False


def test_event_type_filters(sandbox: SandboxServer, client: stripe.StripeClient) -> None:
    sandbox.clock.set(NOW)
    sandbox.stripe.load(
        [
            event(1, NOW - 10, "invoice.paid"),
            event(2, NOW - 20, "invoice.finalized"),
            event(3, NOW - 30, "charge.refunded"),
            event(4, NOW - 40, "credit_note.created"),
        ]
    )
    assert ids(client.v1.events.list(params={"type": "invoice.paid"}).data) == ["evt_1"]
    assert ids(client.v1.events.list(params={"type": "invoice.*"}).data) == ["evt_1", "evt_2"]
    both = client.v1.events.list(params={"types": ["charge.refunded", "credit_note.created"]})
    assert ids(both.data) == ["evt_3", "evt_4"]


# -- expand and sub-lists --------------------------------------------------------------


def test_expand_customer_on_list_and_retrieve(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    sandbox.stripe.load([customer(1, name="Ștefan & <Fiii> SRL"), invoice(1, NOW)])
    listed = client.v1.invoices.list(params={"expand": ["data.customer"]}).data[0]
    assert listed.customer.id == "cus_1"
    assert listed.customer.name == "Ștefan & <Fiii> SRL"
    retrieved = client.v1.invoices.retrieve("in_00001", params={"expand": ["customer"]})
    assert retrieved.customer.object == "customer"
    assert client.v1.invoices.retrieve("in_00001").customer == "cus_1"


def test_nested_expand(sandbox: SandboxServer, client: stripe.StripeClient) -> None:
    sandbox.stripe.load(
        [
            {"id": "pi_1", "object": "payment_intent", "created": NOW, "amount": 500},
            {"id": "ch_1", "object": "charge", "created": NOW, "payment_intent": "pi_1"},
            {
                "id": "re_1",
                "object": "refund",
                "created": NOW,
                "charge": "ch_1",
                "payment_intent": "pi_1",
            },
        ]
    )
    refund = client.v1.refunds.list(params={"expand": ["data.charge.payment_intent"]}).data[0]
    assert refund.charge.id == "ch_1"
    assert refund.charge.payment_intent.amount == 500
    charge = client.v1.charges.list(params={"expand": ["data.payment_intent"]}).data[0]
    assert charge.payment_intent.id == "pi_1"


def test_expand_errors(sandbox: SandboxServer, client: stripe.StripeClient) -> None:
    sandbox.stripe.load([invoice(1, NOW)])
    for bad in ("customer", "data.no_such_field", "data.total"):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            client.v1.invoices.list(params={"expand": [bad]})
        assert raised.value.param == "expand"
        assert f"cannot be expanded ({bad})" in str(raised.value.user_message)


def test_customer_tax_ids_are_returned_only_when_expanded(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    tax_ids = {
        "object": "list",
        "data": [
            {
                "id": "txi_1",
                "object": "tax_id",
                "created": NOW,
                "type": "eu_vat",
                "value": "RO18547290",
            }
        ],
        "has_more": False,
        "url": "/v1/customers/cus_1/tax_ids",
    }
    sandbox.stripe.load([customer(1, tax_ids=tax_ids), customer(2)])
    assert "tax_ids" not in client.v1.customers.retrieve("cus_1")
    assert "tax_ids" not in client.v1.customers.list().data[0]
    expanded = client.v1.customers.retrieve("cus_1", params={"expand": ["tax_ids"]})
    assert [t.value for t in expanded.tax_ids.data] == ["RO18547290"]
    listed = client.v1.customers.list(params={"expand": ["data.tax_ids"]}).data
    assert {c.id: len(c.tax_ids.data) for c in listed} == {"cus_1": 1, "cus_2": 0}
    sub = client.v1.customers.tax_ids.list("cus_1")
    assert ids(sub.data) == ["txi_1"]
    assert sub.data[0].customer == "cus_1"


def test_invoice_embeds_10_lines_and_lines_endpoint_pages_all(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    sandbox.stripe.load(
        [invoice(1, NOW, lines=lines("in_00001", 25)), invoice(2, NOW, lines=lines("in_00002", 1))]
    )
    embedded = client.v1.invoices.retrieve("in_00001").lines
    assert len(embedded.data) == 10
    assert embedded.has_more is True
    listed = client.v1.invoices.list(params={"expand": ["data.lines"]}).data[0]
    assert len(listed.lines.data) == 10  # data.lines is accepted and changes nothing
    every = client.v1.invoices.line_items.list("in_00001", params={"limit": 10})
    all_lines = [line.id for line in every.auto_paging_iter()]
    assert all_lines == [f"il_in_00001_{i}" for i in range(25)]
    assert served(sandbox, "/v1/invoices/in_00001/lines") == 3
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.line_items.list("in_missing")
    assert raised.value.code == "resource_missing"


def test_credit_note_lines(sandbox: SandboxServer, client: stripe.StripeClient) -> None:
    cn_lines = {
        "object": "list",
        "data": [
            {"id": f"cnli_{i}", "object": "credit_note_line_item", "amount": i} for i in range(3)
        ],
        "has_more": False,
        "url": "/v1/credit_notes/cn_1/lines",
    }
    sandbox.stripe.load(
        [{"id": "cn_1", "object": "credit_note", "created": NOW, "lines": cn_lines}]
    )
    page = client.v1.credit_notes.line_items.list("cn_1", params={"limit": 2})
    assert ids(page.data) == ["cnli_0", "cnli_1"]
    assert page.has_more is True
    assert page.url == "/v1/credit_notes/cn_1/lines"


# -- errors ------------------------------------------------------------------------------


def test_unknown_parameter_names_the_parameter(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.list(params={"colour": "blue"})
    assert raised.value.param == "colour"
    assert raised.value.code == "parameter_unknown"
    assert "colour" in str(raised.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as nested:
        client.v1.invoices.list(params={"created": {"after": 5}})
    assert nested.value.param == "created[after]"
    with pytest.raises(stripe.InvalidRequestError) as on_charges:
        client.v1.charges.list(params={"status": "succeeded"})  # a filter charges do not have
    assert on_charges.value.param == "status"
    with pytest.raises(stripe.InvalidRequestError) as not_int:
        client.v1.invoices.list(params={"created": {"gte": "yesterday"}})
    assert not_int.value.param == "created[gte]"


def test_unknown_id_is_resource_missing(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    sandbox.stripe.load([{"id": "ch_1", "object": "charge", "created": NOW}])
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.retrieve("in_x")
    error = raised.value
    assert (error.code, error.param, error.http_status) == ("resource_missing", "id", 404)
    assert error.user_message == "No such invoice: 'in_x'"
    assert error.request_id is not None and error.request_id.startswith("req_")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.retrieve("ch_1")  # exists, but is not an invoice


def test_authentication(sandbox: SandboxServer) -> None:
    sandbox.stripe.load([invoice(1, NOW)])
    with pytest.raises(stripe.AuthenticationError) as raised:
        client_for(sandbox, key="sk_live_secret123").v1.invoices.list()
    assert raised.value.http_status == 401
    assert "secret123" not in str(raised.value)
    assert client_for(sandbox, key="rk_test_1").v1.invoices.list().data[0].id == "in_00001"
    anonymous = httpx.get(f"{sandbox.url}/v1/invoices")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    basic = httpx.get(f"{sandbox.url}/v1/invoices", auth=("sk_test_1", ""))
    assert basic.status_code == 200


def test_unrecognized_url(sandbox: SandboxServer, client: stripe.StripeClient) -> None:
    response = httpx.get(
        f"{sandbox.url}/v1/subscriptions", headers={"Authorization": "Bearer sk_test_1"}
    )
    assert response.status_code == 404
    assert "Unrecognized request URL" in response.json()["error"]["message"]
    assert httpx.get(f"{sandbox.url}/elsewhere").status_code == 404


# -- faults and latency ----------------------------------------------------------------


def test_rate_limit_with_retry_after_then_success(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    sandbox.stripe.load([invoice(1, NOW)])
    rules = {
        "rules": [{"path_prefix": "/v1/invoices", "status": 429, "retry_after": 1, "times": 2}]
    }
    assert httpx.post(f"{sandbox.url}/_sandbox/faults", json=rules).status_code == 200
    for _ in range(2):
        with pytest.raises(stripe.RateLimitError) as raised:
            client.v1.invoices.list()
        assert raised.value.http_status == 429
        assert raised.value.headers["Retry-After"] == "1"
        assert raised.value.json_body["error"]["code"] == "rate_limit"
    assert ids(client.v1.invoices.list().data) == ["in_00001"]
    assert httpx.get(f"{sandbox.url}/_sandbox/faults").json()["rules"][0]["fired"] == 2


def test_server_error_then_success(sandbox: SandboxServer, client: stripe.StripeClient) -> None:
    sandbox.stripe.load([{"id": "ch_1", "object": "charge", "created": NOW}])
    sandbox.faults.configure({"rules": [{"path_prefix": "/v1/charges", "status": 500, "times": 1}]})
    with pytest.raises(stripe.APIError) as raised:
        client.v1.charges.list()
    assert raised.value.http_status == 500
    assert type(raised.value) is stripe.APIError
    assert ids(client.v1.charges.list().data) == ["ch_1"]


def test_slow_response_fault_is_measured_server_side(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    sandbox.faults.configure({"rules": [{"path_prefix": "/v1/", "delay_ms": 300, "times": 1}]})
    client.v1.invoices.list()
    client.v1.invoices.list()
    log = httpx.get(f"{sandbox.url}/_sandbox/requests").json()["log"]
    assert [entry["status"] for entry in log] == [200, 200]
    assert log[0]["duration_ms"] >= 300
    assert log[1]["duration_ms"] < 300


def test_every_nth_and_seeded_probability_rules() -> None:
    injector = FaultInjector([{"path_prefix": "/v1/", "status": 500, "every_nth": 3}])
    fired = [injector.check("GET", "/v1/invoices") is not None for _ in range(7)]
    assert fired == [False, False, True, False, False, True, False]
    assert injector.check("GET", "/v2/other") is None

    def pattern(seed: int) -> list[bool]:
        rules = [{"path_prefix": "/", "status": 503, "probability": 0.5}]
        chance = FaultInjector(rules, seed=seed)
        return [chance.check("GET", "/v1/charges") is not None for _ in range(40)]

    assert pattern(3) == pattern(3)
    assert 5 < sum(pattern(3)) < 35
    with pytest.raises(FaultConfigError, match="fault rule #0"):
        FaultInjector([{"path_prefix": "/v1/", "statuss": 500}])


def test_fault_config_errors_are_400(sandbox: SandboxServer) -> None:
    response = httpx.post(f"{sandbox.url}/_sandbox/faults", json={"rules": [{"times": 1}]})
    assert response.status_code == 400
    assert "status" in response.json()["error"]["message"]


def test_latency_applies_per_request_and_concurrent_requests_overlap(
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    server = sandbox_factory(latency_ms=150)
    client = client_for(server)
    threads = [threading.Thread(target=client.v1.invoices.list) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log = httpx.get(f"{server.url}/_sandbox/requests").json()["log"]
    assert len(log) == 4
    assert all(entry["duration_ms"] >= 150 for entry in log)
    # Every request started before the first one finished: the server sleeps concurrently.
    first_finish = min(e["started"] + e["duration_ms"] / 1000 for e in log)
    assert max(e["started"] for e in log) < first_finish


# -- events and the clock --------------------------------------------------------------


def test_events_are_kept_30_days(sandbox: SandboxServer, client: stripe.StripeClient) -> None:
    sandbox.stripe.load(
        [
            event(1, NOW - 29 * DAY, "invoice.paid"),
            event(2, NOW - 31 * DAY, "invoice.paid"),
        ]
    )
    clock = httpx.post(f"{sandbox.url}/_sandbox/clock", json={"now": NOW})
    assert clock.json()["now"] == NOW
    assert ids(client.v1.events.list(params={"limit": 100}).data) == ["evt_1"]
    assert client.v1.events.retrieve("evt_1").type == "invoice.paid"
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.events.retrieve("evt_2")
    assert gone.value.code == "resource_missing"
    # Move the clock back: the older event is inside the window again.
    sandbox.clock.set(NOW - 2 * DAY)
    assert ids(client.v1.events.list().data) == ["evt_1", "evt_2"]
    sandbox.clock.set(NOW - 29 * DAY + EVENT_RETENTION_SECONDS + 1)
    assert ids(client.v1.events.list().data) == []


# -- fixtures ----------------------------------------------------------------------------


def write_jsonl(path: Path, objects: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(o, ensure_ascii=False) for o in objects) + "\n")
    return path


def test_fixtures_from_file_and_reset_restores_them(
    sandbox_factory: Callable[..., SandboxServer], tmp_path: Path
) -> None:
    fixtures = write_jsonl(tmp_path / "stripe.jsonl", [customer(1), invoice(1, NOW)])
    server = sandbox_factory(stripe_fixtures=fixtures)
    client = client_for(server)
    assert ids(client.v1.invoices.list().data) == ["in_00001"]
    server.stripe.load([invoice(2, NOW + 1)])
    server.faults.configure({"rules": [{"status": 500}]})
    assert httpx.post(f"{server.url}/_sandbox/reset").status_code == 200
    assert ids(client.v1.invoices.list().data) == ["in_00001"]
    assert served(server, "/v1/invoices") == 1  # the counters were reset too


def test_fixtures_through_the_control_endpoint(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    body = "\n".join(json.dumps(o) for o in [customer(1), invoice(1, NOW), invoice(2, NOW)])
    response = httpx.post(f"{sandbox.url}/_sandbox/stripe/fixtures", content=body)
    assert response.json() == {"loaded": {"customer": 1, "invoice": 2}, "total": 3}
    assert ids(client.v1.invoices.list().data) == ["in_00001", "in_00002"]
    # Loading an id again replaces the object in place.
    changed = json.dumps(invoice(1, NOW, status="void"))
    httpx.post(f"{sandbox.url}/_sandbox/stripe/fixtures", content=changed)
    assert [(i.id, i.status) for i in client.v1.invoices.list().data] == [
        ("in_00001", "void"),
        ("in_00002", "paid"),
    ]
    replaced = httpx.post(
        f"{sandbox.url}/_sandbox/stripe/fixtures?replace=1", content=json.dumps(invoice(3, NOW))
    )
    assert replaced.status_code == 200
    assert ids(client.v1.invoices.list().data) == ["in_00003"]


def test_bad_fixture_lines_are_rejected_with_their_line_number(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.stripe.load([invoice(1, NOW)])
    bad = json.dumps({"id": "in_1", "object": "invoice"})  # no `created`
    response = httpx.post(f"{sandbox.url}/_sandbox/stripe/fixtures?replace=1", content=f"\n{bad}\n")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "request body:2" in message and "in_1" in message and "created" in message
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"id": "cus_1", "object": "customer", "created": 1}\n{not json\n')
    with pytest.raises(FixtureError, match=r"garbage\.jsonl:2: not a JSON object"):
        sandbox.stripe.load_jsonl(garbage)
    # Nothing half-loaded, and `replace` did not empty the store for a bad batch.
    assert sandbox.stripe.stats()["total"] == 1


# -- scale -------------------------------------------------------------------------------


def test_a_page_from_20k_objects_examines_only_the_page(
    sandbox: SandboxServer, client: stripe.StripeClient
) -> None:
    day = NOW - NOW % DAY
    sandbox.stripe.load(
        {"id": f"in_{n:05d}", "object": "invoice", "created": day + n * 4, "status": "paid"}
        for n in range(20_000)
    )
    before = sandbox.stripe.stats()["examined"]
    middle = client.v1.invoices.list(
        params={
            "created": {"gte": day + 20_000, "lt": day + 40_000},
            "starting_after": "in_09000",
            "limit": 100,
        }
    )
    assert ids(middle.data) == [f"in_{n:05d}" for n in range(8999, 8899, -1)]
    back = client.v1.invoices.list(params={"ending_before": "in_00500", "limit": 100})
    assert ids(back.data)[0] == "in_00600"
    assert sandbox.stripe.stats()["examined"] - before == 200


def test_concurrent_time_slices_see_every_object_once(sandbox: SandboxServer) -> None:
    day = NOW - NOW % DAY
    sandbox.stripe.load(invoice(n, day + n * 40) for n in range(2_000))
    client = client_for(sandbox)
    bounds = [day + k * 10_000 for k in range(9)]
    found: list[list[str]] = [[] for _ in range(8)]

    def fetch(k: int) -> None:
        params = {"created": {"gte": bounds[k], "lt": bounds[k + 1]}, "limit": 100}
        found[k] = [i.id for i in client.v1.invoices.list(params=params).auto_paging_iter()]

    threads = [threading.Thread(target=fetch, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for chunk in found for i in chunk]
    assert sorted(every) == [f"in_{n:05d}" for n in range(2_000)]
    assert served(sandbox, "/v1/invoices") == 24  # 250 per slice: 3 pages each


def test_server_refuses_non_loopback_hosts() -> None:
    for host in ("0.0.0.0", "localhost", "192.168.1.10"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
            SandboxServer(host=host)


def test_stop_hangs_up_on_keep_alive_clients(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory()
    with httpx.Client() as http:
        assert http.get(f"{server.url}/_sandbox/requests").status_code == 200
        server.stop()
        with pytest.raises(httpx.TransportError):
            http.get(f"{server.url}/_sandbox/requests")
