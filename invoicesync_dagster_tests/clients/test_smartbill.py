"""The SmartBill client against the SmartBill fake, over loopback HTTP."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pypdf
import pytest

from invoicesync_dagster.clients.smartbill import (
    CallLimiter,
    SmartBillAuthError,
    SmartBillClient,
    SmartBillMappingError,
    SmartBillOutcomeUnknown,
    SmartBillRateLimited,
    SmartBillRejected,
    SmartBillTax,
    SmartBillUnavailable,
    encode_body,
    invoice_payload,
    match_tax,
)
from invoicesync_dagster.efactura.model import Document
from invoicesync_dagster.efactura.vat import VatCategory
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster.sandbox.smartbill_fake import BLOCKED, UNKNOWN_SERIES, SmartBillFake
from invoicesync_dagster_tests.efactura import samples

USER, TOKEN, CIF = "facturare@exemplu.ro", "sb-secret-token-5e1d", "RO12345674"


class FakeTime:
    """A clock that only moves when someone sleeps on it; shared by threads."""

    def __init__(self, start: float = 5_000.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += max(seconds, 0.0)


def most_in_any_window(times: list[float], window: float) -> int:
    """The most calls within any (t - window, t]: what the fake's sliding window counts."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - window:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def fake(sandbox: SandboxServer, clock: FakeTime) -> SmartBillFake:
    mounted = SmartBillFake(
        sandbox.clock,
        username=USER,
        token=TOKEN,
        company_cif=CIF,
        invoice_series=("FCT", "FCTX"),
        time_source=clock,
    )
    sandbox.mount(mounted)
    return mounted


@pytest.fixture
def connect(sandbox: SandboxServer, clock: FakeTime) -> Iterator[Callable[..., SmartBillClient]]:
    """Clients of the fake's account whose limiter runs on the test's clock."""
    opened: list[SmartBillClient] = []

    def make(**options: Any) -> SmartBillClient:
        options.setdefault("limiter", CallLimiter(clock=clock, sleep=clock.sleep))
        options.setdefault("sleep", clock.sleep)
        client = SmartBillClient(
            options.pop("api_base", sandbox.url),
            options.pop("username", USER),
            options.pop("token", TOKEN),
            options.pop("cif", CIF),
            **options,
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def client(connect: Callable[..., SmartBillClient], fake: SmartBillFake) -> SmartBillClient:
    return connect()


def posts(fake: SmartBillFake) -> list[str]:
    return [call.path for call in fake.calls if call.method == "POST"]


# -- issuing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("situation", "currency", "vat_code"),
    [
        ("ron_b2b_21", "RON", "RO8486152"),
        ("reverse_charge", "EUR", "DE123456789"),
        ("b2c_placeholder", "RON", "0000000000000"),
        ("multi_rate", "RON", "RO8486152"),
    ],
)
def test_sample_documents_become_smartbill_invoices_with_the_same_total(
    client: SmartBillClient, fake: SmartBillFake, situation: str, currency: str, vat_code: str
) -> None:
    document: Document = samples.SITUATIONS[situation]()
    issued = client.create_invoice(document, "FCT")

    assert (issued.series, issued.number, issued.name) == ("FCT", "0001", "FCT0001")
    [entry] = fake.ledger_entries()
    assert entry["kind"] == "invoice" and entry["currency"] == currency
    assert entry["client_vat_code"] == vat_code
    assert Decimal(entry["total"]) == document.totals.tax_inclusive_total
    assert entry["body_sha256"] == issued.request_sha256
    status = client.payment_status("FCT", "0001")
    assert status.total == document.totals.tax_inclusive_total
    assert status.paid == document.paid_amount
    assert status.is_paid is (document.totals.payable_amount == 0)


def test_lines_are_mapped_to_the_account_taxes(client: SmartBillClient) -> None:
    taxes = client.taxes()

    def products(document: Document) -> list[tuple[str, Any, Any]]:
        body = invoice_payload(document, series="FCT", cif=CIF, taxes=taxes)
        return [(p["name"], p.get("taxName"), p.get("taxPercentage")) for p in body["products"]]

    assert products(samples.multi_rate()) == [
        ("Consultanță", "Normala", Decimal(21)),
        ("Carte tipărită", "Redusa", Decimal(11)),
        ("Abonament revistă", "Redusa", Decimal(11)),
    ]
    assert products(samples.ron_b2b_19())[0][1:] == ("Normala", Decimal(19))
    assert products(samples.reverse_charge())[0][1:] == ("Taxare inversa", Decimal(0))
    assert products(samples.export_outside_eu())[0][1:] == ("SDD", Decimal(0))
    assert products(samples.intra_community_supply())[0][1:] == ("SDD", Decimal(0))
    assert products(samples.exempt())[0][1:] == ("SFDD", Decimal(0))
    # The seller of this sample is not a VAT payer: SmartBill shows no VAT at all.
    assert products(samples.not_subject())[0][1:] == (None, None)


def test_the_payload_carries_client_prices_currency_and_payment(client: SmartBillClient) -> None:
    body = invoice_payload(samples.reverse_charge(), series="FCTX", cif=CIF, taxes=client.taxes())
    assert body["client"] == {
        "name": "Beispiel GmbH",
        "vatCode": "DE123456789",
        "isTaxPayer": True,
        "address": "Musterstraße 1",
        "city": "Berlin",
        "country": "DE",
        "saveToDb": False,
    }
    assert (body["currency"], body["exchangeRate"], body["seriesName"]) == (
        "EUR",
        Decimal("5.0843"),
        "FCTX",
    )
    [product] = body["products"]
    assert product["price"] == Decimal("400.00") and product["isTaxIncluded"] is False
    assert "Taxare inversă" in body["mentions"]
    assert body["observations"] == "invoicesync FCTX-2025-000010"

    b2c = invoice_payload(samples.b2c_placeholder(), series="FCT", cif=CIF, taxes=client.taxes())
    assert b2c["client"]["isTaxPayer"] is False and b2c["client"]["county"] == "Iași"
    assert b2c["payment"] == {"value": Decimal("9.99"), "type": "Card", "isCash": False}
    sector = invoice_payload(samples.b2c_cnp(), series="FCT", cif=CIF, taxes=client.taxes())
    assert (sector["client"]["city"], sector["client"]["county"]) == ("Sector 4", "București")
    assert json.loads(encode_body(body))["exchangeRate"] == 5.0843


def test_discounts_and_credit_notes(client: SmartBillClient, fake: SmartBillFake) -> None:
    document = samples.with_discounts()
    issued = client.create_invoice(document, "FCT")
    assert client.payment_status("FCT", issued.number).total == document.totals.tax_inclusive_total

    credit_note = samples.credit_note()  # a partial refund: negative quantities
    partial = client.create_invoice(credit_note, "FCT")
    entry = fake.ledger_entries()[-1]
    assert partial.number == "0002"
    assert Decimal(entry["total"]) == -credit_note.totals.tax_inclusive_total


def test_numbers_are_sequential_per_series(client: SmartBillClient) -> None:
    document = samples.ron_b2b_21()
    issued = [client.create_invoice(document, s).name for s in ("FCT", "FCTX", "FCT", "FCTX")]
    issued.append(client.create_invoice(document, "FCT").name)
    assert issued == ["FCT0001", "FCTX0001", "FCT0002", "FCTX0002", "FCT0003"]
    assert client.next_number("FCT") == "0004"
    assert [(s.name, s.next_number) for s in client.series()] == [
        ("FCT", "0004"),
        ("FCTX", "0003"),
    ]


def test_storno_reverses_an_invoice_with_the_next_number(
    client: SmartBillClient, fake: SmartBillFake
) -> None:
    document = samples.ron_b2b_21()
    original = client.create_invoice(document, "FCT")
    storno = client.reverse(original.series, original.number, date(2025, 8, 20))

    assert (storno.series, storno.number) == ("FCT", "0002")
    assert "stornata cu succes" in storno.message
    kinds = [(e["invoice_number"], e["kind"], e["total"]) for e in fake.ledger_entries()]
    assert kinds == [("FCT0001", "invoice", "302.38"), ("FCT0002", "storno", "-302.38")]
    assert client.payment_status("FCT", "0002").total == Decimal("-302.38")
    with pytest.raises(SmartBillRejected, match="deja stornata"):
        client.reverse("FCT", "0001", date(2025, 8, 21))


def test_pdf(client: SmartBillClient) -> None:
    client.create_invoice(samples.ron_b2b_21(), "FCT")
    pdf = client.pdf("FCT", "0001")
    text = pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert "FCT 0001" in text and "302.38 RON" in text
    with pytest.raises(SmartBillRejected, match="Factura nu a fost gasita") as caught:
        client.pdf("FCT", "0099")
    assert caught.value.error_text == "Factura nu a fost gasita"


def test_taxes_are_asked_once_per_client(client: SmartBillClient, fake: SmartBillFake) -> None:
    taxes = client.taxes()
    assert SmartBillTax("Normala", Decimal(21)) in taxes
    for _ in range(3):
        client.create_invoice(samples.ron_b2b_21(), "FCT")
    assert [c.path for c in fake.calls].count("/SBORO/api/tax") == 1
    client.taxes(refresh=True)
    assert [c.path for c in fake.calls].count("/SBORO/api/tax") == 2


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 200])
def test_error_text_is_an_error_whatever_the_http_status(
    client: SmartBillClient, fake: SmartBillFake, status: int
) -> None:
    fake.knobs.business_error_status = status
    with pytest.raises(SmartBillRejected) as caught:
        client.create_invoice(samples.ron_b2b_21(), "NOPE")
    assert caught.value.error_text == UNKNOWN_SERIES
    assert caught.value.status == status
    assert UNKNOWN_SERIES in str(caught.value) and "FCT-2025-000123" in str(caught.value)
    assert fake.ledger_entries() == []


def test_a_line_no_tax_fits_is_named_and_nothing_is_sent(
    sandbox: SandboxServer, connect: Callable[..., SmartBillClient], clock: FakeTime
) -> None:
    fake = SmartBillFake(
        username=USER,
        token=TOKEN,
        company_cif=CIF,
        taxes=[("Normala", 21), ("Taxare inversa", 0)],
        time_source=clock,
    )
    sandbox.mount(fake)
    client = connect()
    with pytest.raises(SmartBillMappingError) as caught:
        client.create_invoice(samples.multi_rate(), "FCT")
    message = str(caught.value)
    assert "document FCT-2025-000123, line 2 ('Carte tipărită')" in message
    assert "no tax has 11 %" in message and "Normala 21 %" in message
    with pytest.raises(SmartBillMappingError, match=r"line 1 \('E-book download'\).*VAT O"):
        match_tax(VatCategory.NOT_SUBJECT, None, client.taxes(), where="line 1 ('E-book download')")
    assert posts(fake) == [] and fake.ledger_entries() == []


def test_tax_names_choose_the_tax_of_a_category(
    sandbox: SandboxServer, connect: Callable[..., SmartBillClient], clock: FakeTime
) -> None:
    taxes = [SmartBillTax("Normala", Decimal(21)), SmartBillTax("Scutit art. 278", Decimal(0))]
    with pytest.raises(SmartBillMappingError, match="neimpozabil"):
        match_tax(VatCategory.NOT_SUBJECT, None, taxes, where="line 1")
    chosen = match_tax(
        VatCategory.NOT_SUBJECT, None, taxes, where="line 1", tax_names={"O": "scutit ART. 278"}
    )
    assert chosen.name == "Scutit art. 278"
    with pytest.raises(SmartBillMappingError, match="tax_names names 'Zero'"):
        match_tax(VatCategory.EXPORT, None, taxes, where="line 1", tax_names={"G": "Zero"})


def test_bad_credentials_raise_an_auth_error_without_the_token(
    connect: Callable[..., SmartBillClient], fake: SmartBillFake
) -> None:
    client = connect(token="not-the-right-token-9c2b")
    with pytest.raises(SmartBillAuthError) as caught:
        client.taxes()
    text = f"{caught.value} {caught.value!r} {client!r}"
    assert "HTTP 401" in text and USER in text and "SMARTBILL_TOKEN" in text
    assert "not-the-right-token-9c2b" not in text and TOKEN not in text
    assert "token" not in vars(client)


def test_a_timeout_after_a_create_was_sent_is_an_unknown_outcome(
    connect: Callable[..., SmartBillClient], fake: SmartBillFake
) -> None:
    client = connect(timeout_s=0.1)
    client.taxes()
    before = client.next_number("FCT")
    fake.delay_create_answers(0.3)
    with pytest.raises(SmartBillOutcomeUnknown) as caught:
        client.create_invoice(samples.ron_b2b_21(), "FCT")
    assert "Do not send it again before reconciling" in str(caught.value)
    assert caught.value.series == "FCT"
    # SmartBill did issue it: the series moved on and the ledger has the very request sent.
    assert (before, client.next_number("FCT")) == ("0001", "0002")
    [entry] = fake.ledger_entries()
    assert entry["body_sha256"] == caught.value.request_sha256
    assert posts(fake) == ["/SBORO/api/invoice"]  # tried once, never again


def test_a_server_error_on_create_is_unknown_and_on_a_lookup_is_retried(
    sandbox: SandboxServer, client: SmartBillClient, fake: SmartBillFake, clock: FakeTime
) -> None:
    client.taxes()
    sandbox.faults.configure({"rules": [{"path_prefix": "/SBORO/api/", "status": 502, "times": 2}]})
    with pytest.raises(SmartBillOutcomeUnknown, match="HTTP 502"):
        client.create_invoice(samples.ron_b2b_21(), "FCT")
    assert client.next_number("FCT") == "0001"  # second 502 retried after a backoff
    assert clock.slept == [1.0]
    sandbox.faults.configure({"rules": [{"path_prefix": "/SBORO/api/", "status": 503}]})
    with pytest.raises(SmartBillUnavailable, match="HTTP 503"):
        client.series()
    assert clock.slept == [1.0, 1.0, 2.0]


def test_nothing_listening_is_unavailable_even_for_a_create(
    connect: Callable[..., SmartBillClient], clock: FakeTime
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = connect(api_base=f"http://127.0.0.1:{closed_port}/SBORO/api/", max_retries=0)
    assert client.api_base.endswith(f":{closed_port}/SBORO/api")
    with pytest.raises(SmartBillUnavailable, match="cannot connect"):
        client.reverse("FCT", "0001", date(2025, 8, 6))


# -- the call limit -----------------------------------------------------------------------------


def test_the_limiter_waits_and_never_lets_31_calls_into_10_seconds(clock: FakeTime) -> None:
    limiter = CallLimiter(clock=clock, sleep=clock.sleep)
    starts, ends = [], []
    for _ in range(95):
        with limiter.slot():
            starts.append(clock())
            clock.now += 0.05  # each call takes 50 ms
            ends.append(clock())
    assert most_in_any_window(starts, 10.0) == 30
    assert clock.slept and all(seconds > 0 for seconds in clock.slept)
    # A call counts from its answer: the 31st after it starts 10 s after that answer at least,
    # so the server sees them 10 s apart however long the first one travelled.
    assert all(start >= ends[n] + 10.0 for n, start in enumerate(starts[30:]))


def test_the_limiter_is_thread_safe(clock: FakeTime) -> None:
    limiter = CallLimiter(calls=5, per_s=1.0, clock=clock, sleep=clock.sleep)
    starts: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            with limiter.slot(), lock:
                starts.append(clock())

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(starts) == 60
    assert most_in_any_window(starts, 1.0) == 5


def test_the_server_never_sees_more_than_30_calls_in_10_seconds(
    client: SmartBillClient, fake: SmartBillFake, clock: FakeTime
) -> None:
    document = samples.ron_b2b_21()
    for n in range(40):
        client.create_invoice(document, "FCT")
        client.payment_status("FCT", f"{n + 1:04d}")
    arrivals = [call.at for call in fake.calls]
    assert len(arrivals) == 81  # taxes once, then 40 creates and 40 status calls
    assert {call.outcome for call in fake.calls} == {"served"}
    assert most_in_any_window(arrivals, 10.0) == 30
    assert fake.blocked_until is None
    assert len(fake.ledger_entries()) == 40


def test_exceeding_the_limit_gets_the_account_blocked(
    connect: Callable[..., SmartBillClient], fake: SmartBillFake, clock: FakeTime
) -> None:
    reckless = connect(limiter=CallLimiter(calls=1000, clock=clock, sleep=clock.sleep))
    for _ in range(30):
        reckless.series()
    with pytest.raises(SmartBillRateLimited) as caught:
        reckless.series()
    assert "HTTP 403" in str(caught.value) and BLOCKED in str(caught.value)
    assert caught.value.reset_at == pytest.approx(clock() + 600)
    clock.now += 300
    with pytest.raises(SmartBillRateLimited):
        reckless.create_invoice(samples.ron_b2b_21(), "FCT")
    assert fake.ledger_entries() == []
    clock.now += 300
    assert reckless.next_number("FCT") == "0001"
