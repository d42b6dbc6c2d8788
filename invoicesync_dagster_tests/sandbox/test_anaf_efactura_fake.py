"""The ANAF e-Factura fake on the wire: raw HTTP against a sandbox, shapes as ANAF sends them."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from lxml import etree
from pypdf import PdfReader

from invoicesync_dagster.efactura.model import build_document
from invoicesync_dagster.efactura.ubl import xml_bytes
from invoicesync_dagster.sandbox.anaf_efactura_fake import (
    BUCHAREST,
    NS_DSIG,
    NS_ERRORS,
    NS_STATUS,
    NS_UPLOAD,
    STANDARD_ERROR,
    AnafEfacturaFake,
)
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster_tests.efactura import samples

T0 = int(datetime(2026, 3, 10, 10, 0, tzinfo=BUCHAREST).timestamp())
SELLER = "12345674"
BUYER = 8486152
AUTH = {"Authorization": "Bearer sandbox-access-token"}
API = "/test/FCTEL/rest/"
# One client for the module: a new httpx client per call costs ~40 ms (its SSL context).
HTTP = httpx.Client(timeout=10)


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    HTTP.close()


@pytest.fixture
def server(sandbox: SandboxServer) -> SandboxServer:
    sandbox.clock.set(T0)
    sandbox.registry.add_records([{"date_generale": {"cui": BUYER}}])
    return sandbox


def mount(server: SandboxServer, **options: Any) -> AnafEfacturaFake:
    options.setdefault("registry", server.registry)
    fake = AnafEfacturaFake(server.clock, **options)
    server.mount(fake)
    return fake


@pytest.fixture
def fake(server: SandboxServer) -> AnafEfacturaFake:
    return mount(server)


def invoice(**fields: Any) -> bytes:
    """An invoice from the project's own builder and writer (sample seller and buyer)."""
    return xml_bytes(build_document(samples.draft(**fields)))


def upload(
    server: SandboxServer, xml: bytes, *, cif: str = SELLER, standard: str = "UBL", **params: str
) -> httpx.Response:
    query = {"standard": standard, "cif": cif, **params}
    return HTTP.post(f"{server.url}{API}upload", params=query, content=xml, headers=AUTH)


def get(server: SandboxServer, operation: str, **params: Any) -> httpx.Response:
    return HTTP.get(f"{server.url}{API}{operation}", params=params, headers=AUTH)


def index_of(response: httpx.Response) -> str:
    root = etree.fromstring(response.content)
    assert root.tag == f"{{{NS_UPLOAD}}}header", response.text
    assert root.get("ExecutionStatus") == "0"
    return root.get("index_incarcare")


def status(server: SandboxServer, index: str) -> etree._Element:
    response = get(server, "stareMesaj", id_incarcare=index)
    assert response.headers["content-type"] == "application/xml"
    root = etree.fromstring(response.content)
    assert root.tag == f"{{{NS_STATUS}}}header"
    return root


def errors_of(root: etree._Element, tag: str = "Errors") -> list[str]:
    return [child.get("errorMessage") for child in root if etree.QName(child).localname == tag]


def settle(server: SandboxServer, seconds: int = 61) -> None:
    server.clock.set(server.clock.now() + seconds)


def unzip(response: httpx.Response) -> dict[str, bytes]:
    assert response.headers["content-type"] == "application/zip", response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


# -- upload and processing --------------------------------------------------------------------


def test_upload_is_in_processing_then_ok_and_downloads_the_signed_original(
    server: SandboxServer, fake: AnafEfacturaFake
) -> None:
    xml = invoice()
    response = upload(server, xml)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/xml"
    assert response.content.startswith(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>')
    index = index_of(response)
    assert len(index) == 10 and index.startswith("50")
    # dateResponse is Romanian local time: 10:00 in Bucharest.
    assert etree.fromstring(response.content).get("dateResponse") == "202603101000"
    assert status(server, index).attrib == {"stare": "in prelucrare"}

    settle(server)
    done = status(server, index)
    assert done.get("stare") == "ok"
    download_id = done.get("id_descarcare")
    members = unzip(get(server, "descarcare", id=download_id))
    assert sorted(members) == [f"{index}.xml", f"semnatura_{index}.xml"]
    assert members[f"{index}.xml"] == xml  # byte for byte as uploaded
    signed = etree.fromstring(members[f"semnatura_{index}.xml"])
    signature = signed[-1]
    assert signature.tag == f"{{{NS_DSIG}}}Signature"  # enveloped, last child of the invoice
    assert etree.QName(signed).localname == "Invoice"
    # The digest is real (exclusive C14N of the document without its signature).
    signed.remove(signature)
    digest = hashlib.sha256(etree.tostring(signed, method="c14n", exclusive=True)).digest()
    value = signature.find(f".//{{{NS_DSIG}}}DigestValue").text
    assert base64.b64decode(value) == digest
    assert "NOT A VALID SIGNATURE" in signature.find(f".//{{{NS_DSIG}}}X509SubjectName").text

    [entry] = fake.ledger_entries()
    assert entry["index"] == index
    assert entry["cif"] == SELLER
    assert entry["standard"] == "UBL"
    assert entry["invoice_number"] == "FCT-2025-000123"
    assert entry["xml_sha256"] == hashlib.sha256(xml).hexdigest()
    assert entry["state"] == "ok"
    assert entry["received_at"] == "2026-03-10T08:00:00+00:00"
    ledger = HTTP.get(f"{server.url}/_sandbox/anaf/ledger").json()
    assert ledger == {"uploads": [entry]}


def test_buyer_unknown_to_the_registry_ends_nok_with_the_error_xml_in_the_zip(
    server: SandboxServer, fake: AnafEfacturaFake
) -> None:
    unknown = samples.RO_COMPANY.model_copy(
        update={"vat_id": "RO18547290", "tax_registration_id": "18547290"}
    )
    index = index_of(upload(server, invoice(buyer=unknown)))
    settle(server)
    root = status(server, index)
    assert root.get("stare") == "nok"
    members = unzip(get(server, "descarcare", id=root.get("id_descarcare")))
    error = etree.fromstring(members[f"{index}.xml"])
    assert error.tag == f"{{{NS_ERRORS}}}header"
    assert error.get("Index_incarcare") == index
    assert error.get("Cif_emitent") == SELLER
    [message] = errors_of(error, "Error")
    assert "CIF-ul cumparatorului nu figureaza in baza de date:18547290" in message
    assert etree.fromstring(members[f"semnatura_{index}.xml"])[-1].tag == f"{{{NS_DSIG}}}Signature"


def test_buyer_known_callable_replaces_the_registry(server: SandboxServer) -> None:
    asked: list[str] = []
    mount(server, registry=None, buyer_known=lambda cui: asked.append(cui) or False)
    index = index_of(upload(server, invoice()))
    settle(server)
    assert status(server, index).get("stare") == "nok"
    assert asked == [str(BUYER)]


def test_seller_must_match_the_cif_and_be_known(server: SandboxServer) -> None:
    mount(server, known_sellers={SELLER})
    mismatch = index_of(upload(server, invoice(), cif="8486152"))
    other_seller = samples.SELLER.model_copy(update={"vat_id": "RO18547290"})
    unknown = index_of(upload(server, invoice(seller=other_seller), cif="18547290"))
    fine = index_of(upload(server, invoice()))
    settle(server)
    assert status(server, fine).get("stare") == "ok"
    for index, text in ((mismatch, "nu corespunde"), (unknown, "R6.1: CIF-ul vanzatorului nu")):
        root = status(server, index)
        assert root.get("stare") == "nok"
        members = unzip(get(server, "descarcare", id=root.get("id_descarcare")))
        assert text in errors_of(etree.fromstring(members[f"{index}.xml"]), "Error")[0]


def test_duplicate_of_an_accepted_invoice_ends_nok_with_anafs_message(
    server: SandboxServer, fake: AnafEfacturaFake
) -> None:
    xml = invoice()
    first = index_of(upload(server, xml))
    second = index_of(upload(server, xml))  # sent while the first is still processing
    settle(server)
    assert status(server, first).get("stare") == "ok"
    root = status(server, second)
    assert root.get("stare") == "nok"
    members = unzip(get(server, "descarcare", id=root.get("id_descarcare")))
    [message] = errors_of(etree.fromstring(members[f"{second}.xml"]), "Error")
    assert message == (
        f"Factura a mai fost transmisa anterior cu index={first} si data incarcare=2026-03-10"
    )
    # Same number on another date, or in the other environment, is not a duplicate.
    other_day = index_of(upload(server, invoice(issue_date=samples.BEFORE_CHANGE)))
    prod = HTTP.post(
        f"{server.url}/prod/FCTEL/rest/upload",
        params={"standard": "UBL", "cif": SELLER},
        content=xml,
        headers=AUTH,
    )
    settle(server)
    assert status(server, other_day).get("stare") == "ok"
    assert [e["state"] for e in fake.ledger_entries()] == ["ok", "nok", "ok", "ok"]
    assert fake.ledger_entries()[-1]["environment"] == "prod"
    assert index_of(prod) == fake.ledger_entries()[-1]["index"]


def test_malformed_xml_wrong_root_and_entities_are_rejected_xml(server: SandboxServer) -> None:
    mount(server)
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE Invoice [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">&x;</Invoice>'
    )
    for xml, standard in ((b"<Invoice>", "UBL"), (invoice(), "CN"), (xxe, "UBL")):
        index = index_of(upload(server, xml, standard=standard))
        # Final at once, with nothing to download.
        assert status(server, index).attrib == {"stare": "XML cu erori nepreluat de sistem"}
    credit_note = xml_bytes(samples.credit_note())
    index = index_of(upload(server, credit_note, standard="CN"))
    settle(server)
    assert status(server, index).get("stare") == "ok"


def test_upload_parameters_are_checked_as_anaf_does(server: SandboxServer) -> None:
    fake = mount(server)
    bad_standard = upload(server, invoice(), standard="XML")
    root = etree.fromstring(bad_standard.content)
    assert root.get("ExecutionStatus") == "1"
    assert root.get("index_incarcare") is None
    assert errors_of(root) == [STANDARD_ERROR]
    assert root.get("dateResponse") == "202603101000"
    assert upload(server, invoice(), extern="NU").text.count('ExecutionStatus="1"') == 1
    assert 'ExecutionStatus="1"' in upload(server, invoice(), cif="12a").text
    with_ro = upload(server, invoice(), cif="RO12345674")
    assert with_ro.status_code == 403
    missing = HTTP.post(
        f"{server.url}{API}upload", params={"standard": "UBL"}, content=b"<x/>", headers=AUTH
    )
    assert missing.status_code == 400
    assert set(missing.json()) == {"timestamp", "status", "error", "message"}
    assert missing.json()["message"] == "Parametrul cif este obligatoriu"
    assert fake.ledger_entries() == []  # nothing indexed


def test_b2c_and_extern_uploads_skip_the_buyer_registry_check(server: SandboxServer) -> None:
    mount(server, registry=None, buyer_known=lambda cui: False)
    b2c = HTTP.post(
        f"{server.url}{API}uploadb2c",
        params={"standard": "UBL", "cif": SELLER},
        content=xml_bytes(samples.b2c_cnp()),
        headers=AUTH,
    )
    extern = upload(server, xml_bytes(samples.export_outside_eu()), extern="DA")
    settle(server)
    assert status(server, index_of(b2c)).get("stare") == "ok"
    assert status(server, index_of(extern)).get("stare") == "ok"


def test_self_billing_is_filed_by_the_buyer_in_the_sellers_name(server: SandboxServer) -> None:
    mount(server)
    index = index_of(upload(server, invoice(), cif=str(BUYER), autofactura="DA"))
    settle(server)
    assert status(server, index).get("stare") == "ok"
    [sent] = get(server, "listaMesajeFactura", zile=1, cif=str(BUYER)).json()["mesaje"]
    assert sent["tip"] == "FACTURA TRIMISA"
    assert sent["detalii"] == (
        f"Factura cu id_incarcare={index} transmisa de cif={BUYER} ca autofactura in numele "
        f"cif={SELLER}"
    )
    [received] = get(server, "listaMesajeFactura", zile=1, cif=SELLER).json()["mesaje"]
    assert (received["tip"], received["id_solicitare"]) == ("FACTURA PRIMITA", index)


def test_bearer_token_is_required_and_checked(server: SandboxServer) -> None:
    mount(server, token_check=lambda token: token == "good")
    for headers in ({}, {"Authorization": "Bearer bad"}, {"Authorization": "Basic good"}):
        response = HTTP.get(f"{server.url}{API}stareMesaj?id_incarcare=1", headers=headers)
        assert response.status_code == 401
        assert response.json()["status"] == 401
    ok = HTTP.get(
        f"{server.url}{API}stareMesaj?id_incarcare=1", headers={"Authorization": "Bearer good"}
    )
    assert ok.status_code == 200


# -- stareMesaj -------------------------------------------------------------------------------


def test_status_errors_and_daily_limit_per_message(server: SandboxServer) -> None:
    mount(server)
    assert errors_of(status(server, "aaa")) == [
        "Id_incarcare introdus= aaa nu este un numar intreg"
    ]
    [unknown] = errors_of(status(server, "5999999999"))
    assert unknown.startswith("Nu exista factura cu id_incarcare=")
    index = index_of(upload(server, invoice()))
    for _ in range(100):
        assert status(server, index).get("stare") == "in prelucrare"
    refused = status(server, index)
    assert refused.get("stare") is None
    [limit] = errors_of(refused)
    assert limit.startswith("S-au facut deja 100 ") and limit.endswith("in cursul zilei")
    # The count is per Bucharest day: 22:00 UTC on 10 March is already 11 March there.
    server.clock.set(int(datetime(2026, 3, 11, 0, 0, tzinfo=BUCHAREST).timestamp()))
    assert status(server, index).get("stare") == "ok"


# -- lists ------------------------------------------------------------------------------------


def test_lists_page_through_messages_with_strings_and_details(server: SandboxServer) -> None:
    mount(server, page_size=2)
    numbers = [f"FCT-2026-00000{n}" for n in range(1, 6)]
    indexes = [index_of(upload(server, invoice(number=number))) for number in numbers]
    unknown = samples.RO_COMPANY.model_copy(
        update={"vat_id": "RO18547290", "tax_registration_id": "18547290"}
    )
    failed = index_of(upload(server, invoice(number="FCT-2026-000009", buyer=unknown)))
    settle(server, 120)
    now_ms = server.clock.now() * 1000
    window = {"startTime": (T0 - 3600) * 1000, "endTime": now_ms, "cif": SELLER}
    pages = [get(server, "listaMesajePaginatieFactura", pagina=p, **window).json() for p in (1, 4)]
    first, last = pages
    assert first["numar_total_inregistrari"] == 6
    assert first["numar_total_pagini"] == 3
    assert first["numar_total_inregistrari_per_pagina"] == 2
    assert first["numar_inregistrari_in_pagina"] == 2
    assert first["index_pagina_curenta"] == 1
    message = first["mesaje"][0]
    assert set(message) == {"data_creare", "cif", "id_solicitare", "detalii", "tip", "id"}
    assert all(isinstance(value, str) for value in message.values())
    assert message["id_solicitare"] == indexes[0]
    assert message["tip"] == "FACTURA TRIMISA"
    assert message["detalii"] == (
        f"Factura cu id_incarcare={indexes[0]} emisa de cif_emitent={SELLER} "
        f"pentru cif_beneficiar={BUYER}"
    )
    assert message["data_creare"] == "202603101001"  # settled after 60 s, Bucharest time
    assert last["eroare"].startswith("Pagina solicitata 4")
    everything = [
        m
        for p in (1, 2, 3)
        for m in get(server, "listaMesajePaginatieFactura", pagina=p, **window).json()["mesaje"]
    ]
    assert [m["id_solicitare"] for m in everything] == [*indexes, failed]
    assert everything[-1]["tip"] == "ERORI FACTURA"
    errors_only = get(server, "listaMesajePaginatieFactura", pagina=1, filtru="E", **window)
    assert [m["id_solicitare"] for m in errors_only.json()["mesaje"]] == [failed]
    # The buyer sees the accepted ones as received invoices.
    buyer = {**window, "cif": str(BUYER)}
    received = get(server, "listaMesajePaginatieFactura", pagina=1, **buyer).json()
    assert {m["tip"] for m in received["mesaje"]} == {"FACTURA PRIMITA"}
    assert received["numar_total_inregistrari"] == 5
    # The simple list answers at most one page and points to the paged one beyond.
    too_many = get(server, "listaMesajeFactura", zile=1, cif=SELLER).json()["eroare"]
    assert "paginatie" in too_many


def test_list_answers_benign_empty_and_refuses_bad_windows(server: SandboxServer) -> None:
    mount(server)
    now_ms = server.clock.now() * 1000
    assert get(server, "listaMesajeFactura", zile=3, cif=SELLER).json() == {
        "eroare": "Nu exista mesaje in ultimele 3 zile",
        "titlu": "Lista Mesaje",
    }
    paged = get(
        server, "listaMesajePaginatieFactura", startTime=now_ms - 1000, endTime=now_ms,
        cif=SELLER, pagina=1,
    )  # fmt: skip
    assert paged.json() == {
        "eroare": "Nu exista mesaje in intervalul selectat",
        "titlu": "Lista Mesaje",
    }
    future = get(
        server, "listaMesajePaginatieFactura", startTime=now_ms - 1000, endTime=now_ms + 1000,
        cif=SELLER, pagina=1,
    ).json()["eroare"]  # fmt: skip
    assert str(now_ms) in future and "10-03-2026 10:00:00" in future  # ANAF quotes its clock
    old = now_ms - 61 * 86_400_000
    too_old = get(
        server, "listaMesajePaginatieFactura", startTime=old, endTime=now_ms, cif=SELLER, pagina=1
    ).json()["eroare"]
    assert "60 de zile" in too_old
    assert (
        "intre 1 si 60" in get(server, "listaMesajeFactura", zile=61, cif=SELLER).json()["eroare"]
    )
    assert get(server, "listaMesajeFactura", zile=1, cif="RO123").status_code == 403
    assert (
        "nu este un numar" in get(server, "listaMesajeFactura", zile=1, cif="x1").json()["eroare"]
    )


def test_list_daily_limits_per_cui(server: SandboxServer) -> None:
    mount(server, list_limit=2, paged_list_limit=1, known_sellers={SELLER, "18547290"})
    for _ in range(2):
        assert "eroare" in get(server, "listaMesajeFactura", zile=1, cif=SELLER).json()
    refused = get(server, "listaMesajeFactura", zile=1, cif=SELLER).json()["eroare"]
    assert refused.startswith("S-au facut deja 2 de interogari de tip lista mesaje")
    assert f"CUI={SELLER} in cursul zilei" in refused
    # Another CUI has its own count; a CUI without rights is refused as ANAF does.
    other = get(server, "listaMesajeFactura", zile=1, cif="18547290").json()["eroare"]
    assert other.startswith("Nu exista mesaje")
    assert (
        "Nu aveti drept in SPV pentru CIF=8486152"
        in get(server, "listaMesajeFactura", zile=1, cif="8486152").json()["eroare"]
    )
    now_ms = server.clock.now() * 1000
    window = {"startTime": now_ms - 1000, "endTime": now_ms, "cif": SELLER, "pagina": 1}
    get(server, "listaMesajePaginatieFactura", **window)
    paged = get(server, "listaMesajePaginatieFactura", **window).json()["eroare"]
    assert paged.startswith("S-au facut deja 1 de interogari")


# -- descarcare -------------------------------------------------------------------------------


def test_download_errors_and_daily_limit_per_message(server: SandboxServer) -> None:
    mount(server)
    not_number = get(server, "descarcare", id="12a")
    assert not_number.headers["content-type"].startswith("text/plain")  # as ANAF labels them
    assert json.loads(not_number.content) == {
        "eroare": "Id descarcare introdus= 12a nu este un numar intreg",
        "titlu": "Descarcare mesaj",
    }
    assert json.loads(get(server, "descarcare", id="1").content)["titlu"] == "Descarcare mesaj"
    index = index_of(upload(server, invoice()))
    settle(server)
    download_id = status(server, index).get("id_descarcare")
    for _ in range(10):
        assert get(server, "descarcare", id=download_id).content.startswith(b"PK")
    refused = json.loads(get(server, "descarcare", id=download_id).content)["eroare"]
    assert refused == (
        f"S-au facut deja 10 descarcari la mesajul cu id_descarcare={download_id} in cursul zilei"
    )
    server.clock.set(server.clock.now() + 61 * 86400)
    expired = json.loads(get(server, "descarcare", id=download_id).content)["eroare"]
    assert "a trecut perioada de 60 de zile" in expired


# -- public services --------------------------------------------------------------------------


def test_validare_and_transformare_on_the_public_prod_path_only(server: SandboxServer) -> None:
    mount(server)
    xml = invoice()
    public = f"{server.url}/prod/FCTEL/rest/"
    valid = HTTP.post(public + "validare/FACT1", content=xml).json()  # no token needed
    assert valid["stare"] == "ok" and valid["trace_id"]
    wrong = HTTP.post(public + "validare/FCN", content=xml).json()
    assert wrong["stare"] == "nok" and "CreditNote" in wrong["Messages"][0]["message"]
    no_number = xml.replace(b"<cbc:ID>FCT-2025-000123</cbc:ID>", b"")
    assert "[BR-02]" in HTTP.post(public + "validare/FACT1", content=no_number).text
    assert HTTP.post(f"{server.url}{API}validare/FACT1", content=xml).status_code == 404

    pdf = HTTP.post(public + "transformare/FACT1", content=xml)
    assert pdf.headers["content-type"] == "application/pdf"
    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert "FCT-2025-000123" in text and "Exemplu Software SRL" in text
    refused = HTTP.post(public + "transformare/FACT1", content=no_number).json()
    assert refused["stare"] == "nok"
    # `/DA` skips validation, but the XML must still be readable.
    skipped = HTTP.post(public + "transformare/FACT1/DA", content=no_number)
    assert skipped.content.startswith(b"%PDF")
    assert HTTP.post(public + "transformare/FACT1/DA", content=b"<x").json()["stare"] == "nok"
    assert HTTP.post(f"{server.url}{API}transformare/FACT1", content=xml).status_code == 404


def test_relative_schema_location_gets_the_firewall_page(server: SandboxServer) -> None:
    mount(server)
    xml = invoice().replace(
        b'<Invoice xmlns="',
        b'<Invoice xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation='
        b'"urn:oasis:names:specification:ubl:schema:xsd:Invoice-2 UBL-Invoice-2.1.xsd" xmlns="',
    )
    response = HTTP.post(f"{server.url}/prod/FCTEL/rest/validare/FACT1", content=xml)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "The requested URL was rejected" in response.text
    assert "Your support ID is:" in response.text


# -- faults -----------------------------------------------------------------------------------


def test_fault_knobs_set_over_http(server: SandboxServer, fake: AnafEfacturaFake) -> None:
    control = f"{server.url}/_sandbox/anaf/faults"
    assert HTTP.post(control, json={"nope": 1}).status_code == 400
    HTTP.post(control, json={"http_500": 1, "http_429": 1, "waf": 1, "operation": "stareMesaj"})
    assert HTTP.get(control).json()["http_500"] == 1
    assert get(server, "listaMesajeFactura", zile=1, cif=SELLER).status_code == 200  # not faulted
    answers = [get(server, "stareMesaj", id_incarcare="1") for _ in range(4)]
    assert [a.status_code for a in answers] == [429, 500, 200, 200]
    assert "The requested URL was rejected" in answers[2].text
    assert answers[3].content.startswith(b"<?xml")


def test_timeout_after_accept_records_the_upload_once_and_answers_late(
    server: SandboxServer, fake: AnafEfacturaFake
) -> None:
    fake.faults.update({"timeout_after_accept": 1, "accept_delay_s": 2.0})
    xml = invoice()
    with pytest.raises(httpx.ReadTimeout):
        HTTP.post(
            f"{server.url}{API}upload",
            params={"standard": "UBL", "cif": SELLER},
            content=xml,
            headers=AUTH,
            timeout=0.2,
        )
    [entry] = fake.ledger_entries()
    assert entry["xml_sha256"] == hashlib.sha256(xml).hexdigest()
    settle(server)
    assert status(server, entry["index"]).get("stare") == "ok"
    fake.reset()  # releases the held answer
    assert fake.ledger_entries() == []
