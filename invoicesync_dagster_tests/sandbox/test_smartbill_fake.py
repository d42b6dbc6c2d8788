"""The SmartBill fake, spoken to over loopback HTTP with plain httpx (no project client)."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pypdf
import pytest

from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster.sandbox.smartbill_fake import (
    ALREADY_REVERSED,
    BLOCKED,
    CLIENT_INVALID,
    NOT_FOUND,
    STORNO_OF_STORNO,
    TAX_UNKNOWN,
    UNAUTHORIZED,
    UNKNOWN_SERIES,
    SmartBillFake,
    canonical_sha256,
    render_pdf,
)

USER, TOKEN, CIF = "facturare@exemplu.ro", "tok-7f3a", "RO12345674"


class FakeTime:
    """A time source the tests move by hand."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def time_source() -> FakeTime:
    return FakeTime()


@pytest.fixture
def fake(sandbox: SandboxServer, time_source: FakeTime) -> SmartBillFake:
    mounted = SmartBillFake(
        sandbox.clock,
        username=USER,
        token=TOKEN,
        company_cif=CIF,
        invoice_series=("FCT", "FCTX"),
        time_source=time_source,
    )
    sandbox.mount(mounted)
    return mounted


@pytest.fixture
def http(sandbox: SandboxServer, fake: SmartBillFake) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{sandbox.url}/SBORO/api/", auth=(USER, TOKEN), timeout=10
    ) as client:
        yield client


def invoice(series: str = "FCT", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "companyVatCode": CIF,
        "client": {"name": "Client Exemplu SA", "vatCode": "RO8486152", "isTaxPayer": True},
        "issueDate": "2025-08-05",
        "seriesName": series,
        "currency": "RON",
        "products": [
            {
                "name": "Abonament",
                "measuringUnitName": "buc",
                "currency": "RON",
                "quantity": 2,
                "price": 100.5,
                "isTaxIncluded": False,
                "taxName": "Normala",
                "taxPercentage": 21,
            }
        ],
    }
    body.update(fields)
    return body


def create(http: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return http.post(
        "invoice", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )


def test_invoices_are_numbered_per_series_and_listed_with_their_next_number(
    http: httpx.Client, fake: SmartBillFake
) -> None:
    numbers = [
        (answer["series"], answer["number"])
        for answer in (create(http, invoice(s)).json() for s in ("FCT", "FCTX", "FCT", "FCT"))
    ]
    assert numbers == [("FCT", "0001"), ("FCTX", "0001"), ("FCT", "0002"), ("FCT", "0003")]
    answer = create(http, invoice("FCTX")).json()
    assert answer == {"errorText": "", "message": "", "number": "0002", "series": "FCTX", "url": ""}

    series = http.get("series", params={"cif": CIF, "type": "f"}).json()
    assert series["list"] == [
        {"name": "FCT", "nextNumber": "0004", "type": "f"},
        {"name": "FCTX", "nextNumber": "0003", "type": "f"},
    ]
    everything = http.get("series", params={"cif": CIF}).json()["list"]
    assert {s["type"] for s in everything} == {"f", "p", "c"}
    bad = http.get("series", params={"cif": CIF, "type": "g"})
    assert bad.status_code == 400 and "Tipul documentului nu poate fi g" in bad.json()["errorText"]


def test_the_ledger_has_one_entry_per_invoice_with_the_canonical_body_hash(
    http: httpx.Client, fake: SmartBillFake, sandbox: SandboxServer
) -> None:
    sandbox.clock.set(1_760_000_000)
    body = invoice(currency="EUR", exchangeRate=5.0843)
    body["products"][0]["currency"] = "EUR"
    sent = json.dumps(body, indent=2)  # whitespace and key order do not change the hash
    http.post("invoice", content=sent, headers={"Content-Type": "application/json"})
    create(http, invoice(client={"name": "Ion Popescu", "vatCode": "0000000000000"}))

    entries = fake.ledger_entries()
    assert [(e["invoice_number"], e["kind"], e["currency"]) for e in entries] == [
        ("FCT0001", "invoice", "EUR"),
        ("FCT0002", "invoice", "RON"),
    ]
    first = entries[0]
    assert first["body_sha256"] == canonical_sha256(body)
    assert first["total"] == "243.21"  # 201.00 + 21 % (42.21)
    assert first["cif"] == CIF and first["client_vat_code"] == "RO8486152"
    assert datetime.fromisoformat(first["received_at"]) == datetime.fromtimestamp(
        1_760_000_000, UTC
    )
    assert entries[1]["client_vat_code"] == "0000000000000"
    served = httpx.get(f"{sandbox.url}/_sandbox/smartbill/ledger").json()
    assert served == {"smartbill_invoices": entries}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seriesName": "NOPE"}, UNKNOWN_SERIES),
        ({"client": {"name": "  "}}, CLIENT_INVALID),
        ({"client": None}, "client trebuie specificat"),
        ({"companyVatCode": ""}, "CIF-ul firmei ('companyVatCode') trebuie specificat"),
        ({"companyVatCode": "RO99"}, "Firma la care incercati sa va conectati"),
        ({"issueDate": "05.08.2025"}, "Data documentului trebuie sa fie de forma yyyy-MM-dd."),
        ({"products": []}, "Factura nu contine produse!"),
        ({"currency": "EURO"}, "Moneda nu a fost gasita pe server!"),
        ({"products": [{"name": "X", "currency": "RON", "quantity": 1, "price": 1}]},
         "measuringUnitName trebuie specificat pentru fiecare produs"),
    ],
)  # fmt: skip
def test_business_errors_are_answered_with_error_text_and_create_nothing(
    http: httpx.Client, fake: SmartBillFake, change: dict[str, Any], message: str
) -> None:
    answer = create(http, invoice(**change))
    assert answer.status_code == 400
    assert answer.json()["errorText"].startswith(message)
    assert fake.ledger_entries() == []
    assert create(http, invoice()).json()["number"] == "0001"  # no number was used up


def test_a_tax_must_match_name_and_percentage_of_the_account(
    http: httpx.Client, fake: SmartBillFake
) -> None:
    taxes = http.get("tax", params={"cif": CIF}).json()
    assert taxes["errorText"] == ""
    assert {"name": "Normala", "percentage": 21} in taxes["taxes"]
    assert {"name": "Taxare inversa", "percentage": 0} in taxes["taxes"]

    body = invoice()
    body["products"][0].update(taxName="Normala", taxPercentage=11)
    answer = create(http, body)
    assert answer.json()["errorText"] == TAX_UNKNOWN.format(name="Abonament")
    del body["products"][0]["taxName"], body["products"][0]["taxPercentage"]
    answer = create(http, body)
    assert answer.json()["errorText"] == "Trebuie sa setezi o cota tva pentru produsul Abonament."


def test_errors_can_come_inside_http_200_as_smartbill_has_been_seen_to_do(
    sandbox: SandboxServer, http: httpx.Client, fake: SmartBillFake
) -> None:
    knobs = httpx.post(
        f"{sandbox.url}/_sandbox/smartbill/knobs", json={"business_error_status": 200}
    )
    assert knobs.json()["business_error_status"] == 200
    answer = create(http, invoice("NOPE"))
    assert answer.status_code == 200
    assert answer.json()["errorText"] == UNKNOWN_SERIES
    bad = httpx.post(f"{sandbox.url}/_sandbox/smartbill/knobs", json={"nonsense": 1})
    assert bad.status_code == 400


def test_storno_takes_the_next_number_and_cannot_be_repeated(
    http: httpx.Client, fake: SmartBillFake
) -> None:
    create(http, invoice())
    create(http, invoice())
    reverse = {
        "companyVatCode": CIF,
        "seriesName": "FCT",
        "number": "0001",
        "issueDate": "2025-08-06",
    }
    answer = http.post("invoice/reverse", json=reverse).json()
    assert (answer["series"], answer["number"], answer["errorText"]) == ("FCT", "0003", "")
    assert answer["message"] == "Factura cu seria si numarul FCT0001 a fost stornata cu succes."

    again = http.post("invoice/reverse", json=reverse).json()
    assert again["errorText"] == ALREADY_REVERSED.format(name="FCT0001", storno="FCT0003")
    of_storno = http.post("invoice/reverse", json={**reverse, "number": "0003"}).json()
    assert of_storno["errorText"] == STORNO_OF_STORNO.format(name="FCT0003")
    unknown = http.post("invoice/reverse", json={**reverse, "number": "0042"}).json()
    assert unknown["errorText"] == NOT_FOUND

    storno = fake.ledger_entries()[-1]
    assert (storno["kind"], storno["reverses"], storno["total"]) == ("storno", "FCT0001", "-243.21")
    assert len(fake.ledger_entries()) == 3
    status = http.get(
        "invoice/paymentstatus", params={"cif": CIF, "seriesname": "FCT", "number": "0003"}
    ).json()
    assert status["invoiceTotalAmount"] == -243.21


def test_payment_status_counts_the_payment_at_issue_and_later_ones(
    http: httpx.Client, fake: SmartBillFake
) -> None:
    create(http, invoice(payment={"value": 43.21, "type": "Card", "isCash": False}))
    query = {"cif": CIF, "seriesname": "FCT", "number": "0001"}
    status = http.get("invoice/paymentstatus", params=query).json()
    assert status == {
        "errorText": "",
        "message": "",
        "number": "0001",
        "series": "FCT",
        "invoiceTotalAmount": 243.21,
        "paidAmount": 43.21,
        "unpaidAmount": 200.0,
        "paid": False,
    }
    fake.record_payment("FCT", "0001", "200.00")
    assert http.get("invoice/paymentstatus", params=query).json()["paid"] is True
    missing = http.get("invoice/paymentstatus", params={**query, "number": "0009"})
    assert missing.json()["errorText"] == NOT_FOUND


def test_pdf_is_a_valid_pdf_of_the_invoice(http: httpx.Client, fake: SmartBillFake) -> None:
    create(http, invoice(client={"name": "Țară & (Ștefan) SRL", "vatCode": "RO8486152"}))
    answer = http.get(
        "invoice/pdf",
        params={"cif": CIF, "seriesname": "FCT", "number": "0001"},
        headers={"Accept": "application/octet-stream"},
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    text = pypdf.PdfReader(io.BytesIO(answer.content)).pages[0].extract_text()
    assert "FCT 0001" in text and "Tara & (Stefan) SRL" in text and "243.21 RON" in text
    missing = http.get("invoice/pdf", params={"cif": CIF, "seriesname": "FCT", "number": "0002"})
    assert missing.headers["content-type"].startswith("application/json")
    assert missing.json()["errorText"] == NOT_FOUND


def test_render_pdf_writes_a_correct_cross_reference_table() -> None:
    pdf = render_pdf(["Factura (test) \\ 1"])
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    start = int(pdf.rsplit(b"startxref\n", 1)[1].split()[0])
    assert pdf[start:].startswith(b"xref\n0 6\n")
    offsets = [int(line[:10]) for line in pdf[start:].split(b"\n")[3:8]]
    for number, offset in enumerate(offsets, 1):
        assert pdf[offset:].startswith(b"%d 0 obj" % number)


def test_wrong_credentials_get_401_and_do_not_count_against_the_limit(
    sandbox: SandboxServer, fake: SmartBillFake
) -> None:
    url = f"{sandbox.url}/SBORO/api/tax"
    for auth in (None, (USER, "wrong"), ("other@exemplu.ro", TOKEN)):
        answer = httpx.get(url, params={"cif": CIF}, auth=auth)
        assert answer.status_code == 401
        assert answer.json()["errorText"] == UNAUTHORIZED
        assert TOKEN not in answer.text
    garbage = httpx.get(url, headers={"Authorization": "Basic !!!"})
    assert garbage.status_code == 401
    assert [call.outcome for call in fake.calls] == ["unauthorized"] * 4
    assert httpx.get(url, params={"cif": CIF}, auth=(USER, TOKEN)).status_code == 200


def test_more_than_30_calls_in_10_seconds_block_the_account(
    http: httpx.Client, fake: SmartBillFake, time_source: FakeTime
) -> None:
    query = {"cif": CIF}
    for n in range(30):
        answer = http.get("tax", params=query)
        assert answer.status_code == 200
        assert answer.headers["X-RateLimit-Remaining"] == str(29 - n)
        time_source.now += 0.3  # 30 calls within 9 s
    assert answer.headers["X-RateLimit-Limit"] == "30"

    blocked = http.get("tax", params=query)
    assert blocked.status_code == 403
    assert blocked.json()["errorText"] == BLOCKED
    assert fake.blocked_until == pytest.approx(time_source.now + 600)
    time_source.now += 60  # the window is long gone, the block is not
    assert http.get("tax", params=query).status_code == 403
    time_source.now = fake.blocked_until
    assert http.get("tax", params=query).status_code == 200
    outcomes = [call.outcome for call in fake.calls]
    assert outcomes == ["served"] * 30 + ["blocked", "blocked", "served"]


def test_a_sliding_window_not_a_fixed_one(
    http: httpx.Client, fake: SmartBillFake, time_source: FakeTime
) -> None:
    for _ in range(30):
        assert http.get("tax", params={"cif": CIF}).status_code == 200
    time_source.now += 9.99
    assert http.get("tax", params={"cif": CIF}).status_code == 403
    fake.reset()
    for _ in range(30):
        http.get("tax", params={"cif": CIF})
    time_source.now += 10  # the 30 calls are now exactly 10 s old: out of the window
    assert http.get("tax", params={"cif": CIF}).status_code == 200


def test_the_block_can_be_answered_429(sandbox: SandboxServer, time_source: FakeTime) -> None:
    fake = SmartBillFake(
        username=USER, token=TOKEN, time_source=time_source, blocked_status=429, block_s=5
    )
    sandbox.mount(fake)
    with httpx.Client(auth=(USER, TOKEN)) as client:
        url = f"{sandbox.url}/SBORO/api/tax"
        statuses = [client.get(url, params={"cif": CIF}).status_code for _ in range(32)]
    assert statuses == [200] * 30 + [429, 429]
    with pytest.raises(ValueError, match="403 or 429"):
        SmartBillFake(blocked_status=500)


def test_create_answers_can_be_delayed_after_the_invoice_exists(
    sandbox: SandboxServer, fake: SmartBillFake
) -> None:
    httpx.post(
        f"{sandbox.url}/_sandbox/smartbill/knobs", json={"create_answer_delay_ms": 300, "times": 1}
    )
    body = json.dumps(invoice()).encode()
    credentials = base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
    request = (
        f"POST /SBORO/api/invoice HTTP/1.1\r\nHost: {sandbox.url[7:]}\r\n"
        f"Authorization: Basic {credentials}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", sandbox.port)) as raw:
        raw.sendall(request + body)
        raw.settimeout(0.05)
        with pytest.raises(TimeoutError):
            raw.recv(1)  # a client with a short timeout gives up here...
        assert [e["invoice_number"] for e in fake.ledger_entries()] == ["FCT0001"]  # ...yet
        raw.settimeout(10)
        late = b""
        while chunk := raw.recv(4096):
            late += chunk
    assert late.startswith(b"HTTP/1.1 200") and b'"number":"0001"' in late
    with httpx.Client(base_url=f"{sandbox.url}/SBORO/api/", auth=(USER, TOKEN)) as client:
        assert create(client, invoice()).json()["number"] == "0002"  # answered at once


def test_unknown_paths_and_methods(http: httpx.Client, fake: SmartBillFake) -> None:
    assert http.get("estimate").status_code == 404
    assert http.get("invoice").status_code == 405
    assert http.post("invoice", content=b"[1, 2]").json()["errorText"].startswith("Continutul")


def test_reset_forgets_invoices_calls_and_blocks(
    sandbox: SandboxServer, http: httpx.Client, fake: SmartBillFake
) -> None:
    create(http, invoice())
    fake.add_series("NEW", 41)
    httpx.post(f"{sandbox.url}/_sandbox/reset")
    assert fake.ledger_entries() == [] and fake.calls == []
    assert create(http, invoice()).json()["number"] == "0001"
    names = [s["name"] for s in http.get("series", params={"cif": CIF}).json()["list"]]
    assert "NEW" not in names
    assert re.fullmatch(r"SmartBillFake\(.*\)", repr(fake)) and TOKEN not in repr(fake)
