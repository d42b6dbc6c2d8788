"""The e-Factura client against the ANAF e-Factura fake, over loopback HTTP."""

from __future__ import annotations

import hashlib
import io
import socket
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lxml import etree

from invoicesync_dagster.clients.anaf.efactura import (
    AnafAuthError,
    AnafError,
    AnafMessageExpired,
    AnafRateLimited,
    AnafRequestError,
    AnafUnavailable,
    AnafUnexpectedResponse,
    AnafUploadOutcomeUnknown,
    AnafWafRejected,
    EfacturaClient,
    StatusState,
    plain_cif,
    read_zip,
)
from invoicesync_dagster.efactura.model import build_document
from invoicesync_dagster.efactura.ubl import xml_bytes
from invoicesync_dagster.sandbox.anaf_efactura_fake import BUCHAREST, AnafEfacturaFake
from invoicesync_dagster.sandbox.http import Request, Response
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster_tests.efactura import samples

T0 = int(datetime(2026, 3, 10, 10, 0, tzinfo=BUCHAREST).timestamp())
SELLER = "12345674"
BUYER = "8486152"
TOKEN = "secret-access-token-do-not-print"
UNKNOWN_BUYER = samples.RO_COMPANY.model_copy(
    update={"vat_id": "RO18547290", "tax_registration_id": "18547290"}
)


@pytest.fixture
def server(sandbox: SandboxServer) -> SandboxServer:
    sandbox.clock.set(T0)
    sandbox.registry.add_records([{"date_generale": {"cui": int(BUYER)}}])
    return sandbox


def mount(server: SandboxServer, **options: Any) -> AnafEfacturaFake:
    fake = AnafEfacturaFake(server.clock, registry=server.registry, **options)
    server.mount(fake)
    return fake


@pytest.fixture
def fake(server: SandboxServer) -> AnafEfacturaFake:
    return mount(server)


@pytest.fixture
def connect(server: SandboxServer) -> Iterator[Callable[..., EfacturaClient]]:
    clients: list[EfacturaClient] = []

    def make(**options: Any) -> EfacturaClient:
        options = {"staging": True, "backoff_s": 0, "timeout": 5.0, **options}
        token = options.pop("token", TOKEN)
        client = EfacturaClient(server.url, server.url, lambda: token, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(connect: Callable[..., EfacturaClient], fake: AnafEfacturaFake) -> EfacturaClient:
    return connect()


def invoice(**fields: Any) -> bytes:
    return xml_bytes(build_document(samples.draft(**fields)))


def later(server: SandboxServer, seconds: int = 61) -> None:
    server.clock.set(server.clock.now() + seconds)


def window(server: SandboxServer) -> tuple[datetime, datetime]:
    now = datetime.fromtimestamp(server.clock.now(), UTC)
    return now - timedelta(days=1), now


def requests_to(server: SandboxServer, operation: str, method: str = "GET") -> int:
    return server.requests.count(method, f"/test/FCTEL/rest/{operation}")


# -- the happy paths --------------------------------------------------------------------------


def test_invoice_upload_status_download(
    server: SandboxServer, fake: AnafEfacturaFake, client: EfacturaClient
) -> None:
    xml = xml_bytes(samples.ron_b2b_21())
    receipt = client.upload(xml, cif="RO12345674")  # the RO is dropped, as ANAF wants
    assert receipt.index.isdigit()
    assert receipt.date_response == datetime(2026, 3, 10, 10, 0, tzinfo=BUCHAREST)
    pending = client.status(receipt.index)
    assert pending.state is StatusState.IN_PROGRESS and not pending.is_final
    assert pending.download_id is None

    later(server)
    done = client.status(receipt.index)
    assert done.state is StatusState.OK and done.download_id
    archive = client.download(done.download_id)
    assert archive.document == xml
    assert archive.upload_index == receipt.index
    assert archive.signature_name == f"semnatura_{receipt.index}.xml"
    assert etree.fromstring(archive.signature)[-1].tag.endswith("}Signature")
    assert not archive.is_error and archive.errors == ()
    assert zipfile.ZipFile(io.BytesIO(archive.content)).namelist() == sorted(archive.members)

    [entry] = fake.ledger_entries()
    assert entry["index"] == receipt.index
    assert entry["cif"] == SELLER
    assert entry["xml_sha256"] == hashlib.sha256(xml).hexdigest()


def test_credit_note_and_b2c_invoice(
    server: SandboxServer, fake: AnafEfacturaFake, client: EfacturaClient
) -> None:
    credit = client.upload(xml_bytes(samples.credit_note()), cif=SELLER, standard="CN")
    b2c = client.upload(xml_bytes(samples.b2c_cnp()), cif=SELLER, b2c=True)
    foreign = client.upload(xml_bytes(samples.export_outside_eu()), cif=SELLER, extern=True)
    later(server)
    for receipt in (credit, b2c, foreign):
        assert client.status(receipt.index).state is StatusState.OK
    assert [e["b2c"] for e in fake.ledger_entries()] == [False, True, False]
    assert [e["standard"] for e in fake.ledger_entries()] == ["CN", "UBL", "UBL"]
    assert requests_to(server, "uploadb2c", "POST") == 1


def test_nok_zip_carries_anafs_errors(server: SandboxServer, client: EfacturaClient) -> None:
    receipt = client.upload(invoice(buyer=UNKNOWN_BUYER), cif=SELLER)
    later(server)
    status = client.status(receipt.index)
    assert status.state is StatusState.NOK
    archive = client.download(status.download_id)
    assert archive.is_error
    [message] = archive.errors
    assert "CIF-ul cumparatorului nu figureaza in baza de date:18547290" in message


def test_duplicate_upload_is_nok_with_the_first_index(
    server: SandboxServer, client: EfacturaClient
) -> None:
    first = client.upload(invoice(), cif=SELLER)
    later(server)
    second = client.upload(invoice(), cif=SELLER)
    later(server)
    status = client.status(second.index)
    assert status.state is StatusState.NOK
    [message] = client.download(status.download_id).errors
    assert message.startswith(f"Factura a mai fost transmisa anterior cu index={first.index}")


def test_xml_rejected_by_the_system(server: SandboxServer, client: EfacturaClient) -> None:
    receipt = client.upload(b"<Invoice><broken></Invoice>", cif=SELLER)
    status = client.status(receipt.index)
    assert status.state is StatusState.REJECTED_XML
    assert status.is_final and status.download_id is None


def test_production_and_test_are_separate(
    server: SandboxServer, fake: AnafEfacturaFake, connect: Callable[..., EfacturaClient]
) -> None:
    prod, test = connect(staging=False), connect(staging=True)
    receipt = prod.upload(invoice(), cif=SELLER)
    assert fake.ledger_entries()[0]["environment"] == "prod"
    assert prod.status(receipt.index).state is StatusState.IN_PROGRESS
    with pytest.raises(AnafRequestError, match="Nu exista factura cu id_incarcare"):
        test.status(receipt.index)


# -- lists ------------------------------------------------------------------------------------


def test_message_pages_and_the_paging_helper(
    server: SandboxServer, connect: Callable[..., EfacturaClient]
) -> None:
    mount(server, page_size=2)
    client = connect()
    indexes = [
        client.upload(invoice(number=f"FCT-2026-{n:06d}"), cif=SELLER).index for n in (1, 2, 3, 4)
    ]
    failed = client.upload(invoice(number="FCT-2026-000009", buyer=UNKNOWN_BUYER), cif=SELLER)
    later(server)
    start, end = window(server)
    page = client.list_messages(SELLER, start, end)
    assert (page.page, page.total_pages, page.total_messages, page.per_page) == (1, 3, 5, 2)
    first = page.messages[0]
    assert first.upload_index == indexes[0]
    assert first.kind == "FACTURA TRIMISA"
    assert (first.issuer_cif, first.buyer_cif, first.cif) == (SELLER, BUYER, SELLER)
    assert first.created_at == datetime(2026, 3, 10, 10, 1, tzinfo=BUCHAREST)
    everything = list(client.iter_messages(SELLER, start, end))
    assert [m.upload_index for m in everything] == [*indexes, failed.index]
    assert everything[-1].kind == "ERORI FACTURA"
    errors = list(client.iter_messages(SELLER, start, end, filter="E"))
    assert [m.upload_index for m in errors] == [failed.index]
    assert len({m.id for m in everything}) == 5
    with pytest.raises(AnafRequestError, match="paginatie"):
        client.list_recent(SELLER, 1)  # more than one page: ANAF says use the paged list


def test_empty_lists_are_benign(server: SandboxServer, client: EfacturaClient) -> None:
    start, end = window(server)
    empty = client.list_messages(SELLER, start, end)
    assert empty.messages == () and empty.total_pages == 0
    assert list(client.iter_messages(SELLER, start, end)) == []
    assert client.list_recent(SELLER, 60).messages == ()


def test_list_window_rules(server: SandboxServer, client: EfacturaClient) -> None:
    start, end = window(server)
    with pytest.raises(AnafRequestError) as future:
        client.list_messages(SELLER, start, end + timedelta(seconds=1))
    assert "10-03-2026 10:00:00" in str(future.value)  # ANAF's clock, quoted
    with pytest.raises(AnafRequestError, match="60 de zile"):
        client.list_messages(SELLER, end - timedelta(days=61), end)
    with pytest.raises(ValueError, match="timezone-aware"):
        client.list_messages(SELLER, datetime(2026, 3, 1), datetime(2026, 3, 2))
    with pytest.raises(ValueError, match=r"1\.\.60"):
        client.list_recent(SELLER, 61)


# -- limits -----------------------------------------------------------------------------------


def test_every_daily_limit_is_a_rate_limited_error(
    server: SandboxServer, connect: Callable[..., EfacturaClient]
) -> None:
    mount(server, download_limit=1, list_limit=1, paged_list_limit=1)
    client = connect()
    receipt = client.upload(invoice(), cif=SELLER)
    later(server)
    for _ in range(99):
        client.status(receipt.index)
    download_id = client.status(receipt.index).download_id
    start, end = window(server)
    client.download(download_id)
    client.list_recent(SELLER, 1)
    client.list_messages(SELLER, start, end)
    calls = {
        "stareMesaj": lambda: client.status(receipt.index),
        "descarcare": lambda: client.download(download_id),
        "listaMesajeFactura": lambda: client.list_recent(SELLER, 1),
        "listaMesajePaginatieFactura": lambda: client.list_messages(SELLER, start, end),
    }
    for operation, call in calls.items():
        before = requests_to(server, operation)
        with pytest.raises(AnafRateLimited) as limited:
            call()
        assert limited.value.limit_text.startswith("S-au facut deja")
        assert limited.value.limit == {"stareMesaj": 100}.get(operation, 1)
        assert requests_to(server, operation) == before + 1  # a limit is never retried


# -- errors -----------------------------------------------------------------------------------


def test_query_errors_are_request_errors(server: SandboxServer, client: EfacturaClient) -> None:
    with pytest.raises(AnafRequestError) as unknown:
        client.status("5999999999")
    assert unknown.value.errors[0].startswith("Nu exista factura cu id_incarcare=")
    with pytest.raises(AnafRequestError, match="nu exista inregistrata"):
        client.download("3999999999")
    receipt = client.upload(invoice(), cif=SELLER)
    later(server)
    download_id = client.status(receipt.index).download_id
    later(server, 61 * 86400)
    with pytest.raises(AnafMessageExpired):
        client.download(download_id)
    with pytest.raises(ValueError):
        client.upload(invoice(), cif=SELLER, standard="XML")
    with pytest.raises(ValueError):
        client.status("abc")
    assert plain_cif(" ro 123-456-74 ") == SELLER


def test_auth_errors_never_show_the_token(
    server: SandboxServer, connect: Callable[..., EfacturaClient]
) -> None:
    mount(server, token_check=lambda token: token == "the-good-one")
    refused = connect()
    errors: list[AnafError] = []
    for call in (
        lambda: refused.status("1"),
        lambda: refused.upload(invoice(), cif=SELLER),
        lambda: refused.list_recent(SELLER, 1),
    ):
        with pytest.raises(AnafAuthError) as error:
            call()
        assert error.value.status_code == 401
        errors.append(error.value)
    assert all(TOKEN not in str(error) for error in errors)
    no_token = connect(token="")
    with pytest.raises(AnafAuthError, match="anaf login"):
        no_token.status("1")
    with pytest.raises(AnafRequestError, match="Nu exista factura"):  # past the auth check
        connect(token="the-good-one").status("1")


def test_faults_map_to_typed_errors(
    server: SandboxServer, fake: AnafEfacturaFake, connect: Callable[..., EfacturaClient]
) -> None:
    client = connect(max_retries=2)
    receipt = client.upload(invoice(), cif=SELLER)
    fake.faults.update({"http_500": 2, "operation": "stareMesaj"})
    assert client.status(receipt.index).state is StatusState.IN_PROGRESS  # third try answers
    assert requests_to(server, "stareMesaj") == 3
    fake.faults.update({"http_500": 3})
    with pytest.raises(AnafUnavailable, match="HTTP 500"):
        client.status(receipt.index)
    fake.faults.update({"http_429": 1})
    with pytest.raises(AnafRateLimited) as limited:
        client.status(receipt.index)
    assert limited.value.status_code == 429
    fake.faults.update({"waf": 1})
    with pytest.raises(AnafWafRejected) as blocked:
        client.status(receipt.index)
    assert blocked.value.support_id and blocked.value.support_id.isdigit()
    for name, error in (("http_429", AnafRateLimited), ("waf", AnafWafRejected)):
        fake.faults.update({name: 1, "operation": "upload"})
        with pytest.raises(error):
            client.upload(invoice(number="FCT-2026-000777"), cif=SELLER)
    assert len(fake.ledger_entries()) == 1  # none of those reached ANAF's records
    assert all(TOKEN not in str(e) for e in (limited.value, blocked.value))


def test_a_500_on_upload_is_an_unknown_outcome_and_never_retried(
    server: SandboxServer, fake: AnafEfacturaFake, connect: Callable[..., EfacturaClient]
) -> None:
    client = connect(max_retries=3)
    fake.faults.update({"http_500": 1, "operation": "upload"})
    with pytest.raises(AnafUploadOutcomeUnknown) as unknown:
        client.upload(invoice(), cif=SELLER)
    assert unknown.value.xml_sha256 == hashlib.sha256(invoice()).hexdigest()
    assert requests_to(server, "upload", "POST") == 1


def test_timeout_after_accept_is_an_unknown_outcome_to_reconcile(
    server: SandboxServer, fake: AnafEfacturaFake, connect: Callable[..., EfacturaClient]
) -> None:
    client = connect(timeout=0.3)
    fake.faults.update({"timeout_after_accept": 1, "accept_delay_s": 3.0})
    xml = invoice()
    with pytest.raises(AnafUploadOutcomeUnknown) as unknown:
        client.upload(xml, cif=SELLER)
    assert unknown.value.cif == SELLER and unknown.value.standard == "UBL"
    assert "reconcile" in str(unknown.value)
    # ANAF has it exactly once: the client did not send it again.
    [entry] = fake.ledger_entries()
    assert entry["xml_sha256"] == unknown.value.xml_sha256
    # Reconciliation: the message list shows the upload once it is processed.
    later(server)
    start, end = window(server)
    [message] = client.iter_messages(SELLER, start, end)
    assert message.upload_index == entry["index"]
    fake.reset()  # releases the late answer


def test_nothing_listening_is_unavailable_and_safe_to_resend() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with EfacturaClient(base, base, lambda: TOKEN, staging=True, backoff_s=0) as client:
        with pytest.raises(AnafUnavailable, match="nothing was sent"):
            client.upload(invoice(), cif=SELLER)
        with pytest.raises(AnafUnavailable, match="connection failed"):
            client.status("1")


# -- public services --------------------------------------------------------------------------


def test_validate_and_pdf(server: SandboxServer, client: EfacturaClient) -> None:
    xml = invoice()
    valid = client.validate(xml)
    assert valid.ok and valid.messages == () and valid.trace_id
    wrong_kind = client.validate(xml, "FCN")
    assert not wrong_kind.ok and "CreditNote" in wrong_kind.messages[0]
    assert client.validate(xml_bytes(samples.credit_note()), "FCN").ok
    assert client.to_pdf(xml).startswith(b"%PDF")
    no_number = xml.replace(b"<cbc:ID>FCT-2025-000123</cbc:ID>", b"")
    with pytest.raises(AnafRequestError) as refused:
        client.to_pdf(no_number)
    assert any("[BR-02]" in message for message in refused.value.errors)
    assert client.to_pdf(no_number, validate=False).startswith(b"%PDF")
    relative = xml.replace(
        b'<Invoice xmlns="',
        b'<Invoice xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation='
        b'"urn:oasis:names:specification:ubl:schema:xsd:Invoice-2 UBL-Invoice-2.1.xsd" xmlns="',
    )
    with pytest.raises(AnafWafRejected, match="schemaLocation"):
        client.validate(relative)
    with pytest.raises(ValueError):
        client.validate(xml, "CN")  # the public services say FCN


# -- shapes the fake does not produce ---------------------------------------------------------


class Canned:
    """Answers one path with a fixed response (mounted over the e-Factura fake)."""

    def __init__(self, path: str, response: Response) -> None:
        self.path = path
        self.response = response

    def handle(self, request: Request) -> Response | None:
        return self.response if request.path == self.path else None

    def reset(self) -> None:
        pass


def canned(
    server: SandboxServer, operation: str, body: bytes, status: int = 200, **kw: Any
) -> None:
    server.mount(Canned(f"/test/FCTEL/rest/{operation}", Response(status, body, **kw)))


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_documented_shapes_from_canned_answers(
    server: SandboxServer, client: EfacturaClient
) -> None:
    rejected = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><header '
        b'xmlns="mfp:anaf:dgti:spv:respUploadFisier:v1" dateResponse="202108051144" '
        b'ExecutionStatus="1"><Errors errorMessage="Valorile acceptate pentru parametrul '
        b'standard sunt UBL, CII sau RASP"/></header>'
    )
    canned(server, "upload", rejected, content_type="application/xml")
    with pytest.raises(AnafRequestError) as refused:
        client.upload(invoice(), cif=SELLER)
    assert refused.value.errors == (
        "Valorile acceptate pentru parametrul standard sunt UBL, CII sau RASP",
    )

    canned(server, "uploadb2c", b"<html><body>Maintenance</body></html>", content_type="text/html")
    with pytest.raises(AnafUploadOutcomeUnknown):
        client.upload(invoice(), cif=SELLER, b2c=True)

    canned(server, "listaMesajeFactura", b"", status=204)
    with pytest.raises(AnafRateLimited):
        client.list_recent(SELLER, 1)

    self_billed = (
        b'{"mesaje":[{"data_creare":"202603101001","cif":"8486152","id_solicitare":"5000000007",'
        b'"detalii":"Factura cu id_incarcare=5000000007 transmisa de cif=8486152 ca autofactura '
        b'in numele cif=12345674","tip":"FACTURA PRIMITA","id":"3000000007"}],"serial":"x",'
        b'"cui":"8486152","titlu":"Lista Mesaje","numar_total_pagini":"1"}'
    )
    canned(server, "listaMesajePaginatieFactura", self_billed)
    start, end = window(server)
    [message] = client.list_messages(BUYER, start, end).messages
    assert (message.issuer_cif, message.buyer_cif) == (SELLER, BUYER)

    bad_request = (
        b'{"timestamp":"05-08-2021 12:04:01","status":400,"error":"Bad Request",'
        b'"message":"Parametrul id este obligatoriu"}'
    )
    canned(server, "descarcare", bad_request, status=400)
    with pytest.raises(AnafRequestError, match="Parametrul id este obligatoriu") as bad:
        client.download("1")
    assert bad.value.status_code == 400


@pytest.mark.parametrize(
    "name", ["../5000000001.xml", "/etc/5000000001.xml", "dir/5000000001.xml", "a\\b.xml"]
)
def test_zip_members_with_paths_are_refused(
    server: SandboxServer, client: EfacturaClient, name: str
) -> None:
    body = zip_of({name: b"<x/>", "semnatura_5000000001.xml": b"<x/>"})
    canned(server, "descarcare", body, content_type="application/zip")
    with pytest.raises(AnafUnexpectedResponse, match=r"plain \.xml name"):
        client.download("1")


def test_read_zip_limits() -> None:
    bomb = zip_of({"5000000001.xml": b"\0" * 200_000})
    assert len(bomb) < 2_000
    with pytest.raises(AnafUnexpectedResponse, match=r"bytes|size limit"):
        read_zip(bomb, max_member_bytes=100_000)
    with pytest.raises(AnafUnexpectedResponse, match="members"):
        read_zip(zip_of({f"{n}.xml": b"" for n in range(9)}))
    with pytest.raises(AnafUnexpectedResponse, match="not a readable zip"):
        read_zip(b"PK\x03\x04 truncated")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("1.xml", b"a")
        archive.writestr("1.xml", b"b")
    with pytest.raises(AnafUnexpectedResponse, match="twice"):
        read_zip(buffer.getvalue())
    # zipfile cannot write encrypted members: set the "encrypted" flag bit in the central
    # directory entry (its flags are at offset 8) of a plain one.
    plain = bytearray(zip_of({"1.xml": b"secret"}))
    central = plain.index(b"PK\x01\x02")
    plain[central + 8] |= 0x1
    with pytest.raises(AnafUnexpectedResponse, match="encrypted"):
        read_zip(bytes(plain))
    assert read_zip(zip_of({"1.xml": b"a", "semnatura_1.xml": b"b"})) == {
        "1.xml": b"a",
        "semnatura_1.xml": b"b",
    }
