"""The UBL writer: golden files, determinism, and the CIUS-RO specifics of the XML.

Golden files (`golden/*.xml`, one per kind of document) are compared byte for byte. After an
intended change to the writer or the samples, regenerate them and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/pytest invoicesync_dagster_tests/efactura/test_ubl.py

The writer writes XML as text; `test_bytes_are_what_lxml_writes` holds it to what lxml writes
for the same tree (well-formed, same indentation, same escaping).
"""

from __future__ import annotations

import hashlib
import os
from datetime import date
from functools import cache
from pathlib import Path

import pytest
from lxml import etree

from invoicesync_dagster.efactura.model import (
    CUSTOMIZATION_ID,
    Document,
    DocumentKind,
    DocumentReference,
    PaymentMeans,
    PrecedingInvoice,
    build_document,
)
from invoicesync_dagster.efactura.ubl import (
    NS_CAC,
    NS_CBC,
    NS_CREDIT_NOTE,
    XML_DECLARATION,
    xml_bytes,
    xml_sha256,
)
from invoicesync_dagster.sandbox import seed
from invoicesync_dagster.sandbox.offline_documents import build_documents
from invoicesync_dagster_tests.efactura import samples

GOLDEN_DIR = Path(__file__).parent / "golden"
NS = {"cac": NS_CAC, "cbc": NS_CBC}
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, _SAFE_PARSER)


def texts(root: etree._Element, path: str) -> list[str]:
    return [element.text for element in root.xpath(path, namespaces=NS)]


@pytest.mark.parametrize(("filename", "situation"), sorted(samples.GOLDEN.items()))
def test_golden_files(filename: str, situation: str) -> None:
    data = xml_bytes(samples.SITUATIONS[situation]())
    golden = GOLDEN_DIR / filename
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(data)
    assert golden.is_file(), f"{golden} is missing: run with UPDATE_GOLDEN=1 to create it"
    assert data == golden.read_bytes(), (
        f"{filename} differs from the writer's output for {situation}; if the change is "
        "intended, regenerate with UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.mark.parametrize("situation", sorted(samples.SITUATIONS))
def test_same_document_same_bytes(situation: str) -> None:
    first = samples.SITUATIONS[situation]()
    second = samples.SITUATIONS[situation]()  # built again from scratch
    assert xml_bytes(first) == xml_bytes(second)
    assert xml_sha256(first) == hashlib.sha256(xml_bytes(second)).hexdigest()


def test_any_change_changes_the_hash() -> None:
    doc = samples.ron_b2b_21()
    assert xml_sha256(doc) != xml_sha256(doc.model_copy(update={"number": "FCT-2025-000124"}))


def test_invoice_header() -> None:
    data = xml_bytes(samples.ron_b2b_21())
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Invoice xmlns=')
    assert b"schemaLocation" not in data and b"xmlns:xsi" not in data
    root = parse(data)
    assert texts(root, "cbc:CustomizationID") == [CUSTOMIZATION_ID]
    assert texts(root, "cbc:InvoiceTypeCode") == ["380"]
    assert texts(root, "cbc:DueDate") == ["2025-09-04"]
    assert texts(root, "cac:OrderReference/cbc:ID") == ["in_1Pq2Rs3Tu4"]
    assert texts(root, "cbc:BuyerReference") == ["cus_Q1w2e3r4"]
    assert texts(root, "cac:AdditionalDocumentReference/cbc:ID") == ["ch_3Ab12Cd"]
    assert root.xpath("cbc:TaxCurrencyCode", namespaces=NS) == []
    assert len(root.xpath("cac:TaxTotal", namespaces=NS)) == 1


def test_foreign_currency_has_a_second_tax_total_in_ron() -> None:
    doc = samples.eur_invoice()
    root = parse(xml_bytes(doc))
    assert texts(root, "cbc:DocumentCurrencyCode") == ["EUR"]
    assert texts(root, "cbc:TaxCurrencyCode") == ["RON"]
    first, second = root.xpath("cac:TaxTotal", namespaces=NS)
    assert first.xpath("cbc:TaxAmount/@currencyID", namespaces=NS) == ["EUR"]
    assert len(first.xpath("cac:TaxSubtotal", namespaces=NS)) == 1
    assert second.xpath("cbc:TaxAmount/@currencyID", namespaces=NS) == ["RON"]
    assert texts(second, "cbc:TaxAmount") == [f"{doc.tax_currency_vat_total:.2f}"]
    assert second.xpath("cac:TaxSubtotal", namespaces=NS) == []


def test_credit_note_structure() -> None:
    doc = samples.credit_note()
    root = parse(xml_bytes(doc))
    assert etree.QName(root).namespace == NS_CREDIT_NOTE
    assert etree.QName(root).localname == "CreditNote"
    assert texts(root, "cbc:CreditNoteTypeCode") == ["381"]
    assert root.xpath("cbc:InvoiceTypeCode | cbc:DueDate | cac:InvoiceLine", namespaces=NS) == []
    assert texts(root, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID") == [
        "FCT-2025-000101"
    ]
    assert texts(root, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:IssueDate") == [
        "2025-07-15"
    ]
    assert texts(root, "cac:CreditNoteLine/cbc:CreditedQuantity") == ["1"]
    amounts = root.xpath("//*[@currencyID]", namespaces=NS)
    assert amounts and all(not element.text.startswith("-") for element in amounts)


def test_credit_note_due_date_goes_into_payment_means() -> None:
    doc = samples.credit_note().model_copy(update={"due_date": samples.AFTER_CHANGE})
    root = parse(xml_bytes(doc))
    assert texts(root, "cac:PaymentMeans/cbc:PaymentDueDate") == ["2025-08-05"]


def test_bucharest_addresses_use_sectors() -> None:
    root = parse(xml_bytes(samples.b2c_cnp()))
    seller = root.xpath("cac:AccountingSupplierParty//cac:PostalAddress", namespaces=NS)[0]
    buyer = root.xpath("cac:AccountingCustomerParty//cac:PostalAddress", namespaces=NS)[0]
    assert texts(seller, "cbc:CityName") == ["SECTOR1"]
    assert texts(buyer, "cbc:CityName") == ["SECTOR4"]
    assert texts(buyer, "cbc:CountrySubentity") == ["RO-B"]


def test_special_characters_are_escaped_and_survive_a_round_trip() -> None:
    doc = samples.special_characters()
    data = xml_bytes(doc)
    assert b'Tom &amp; Jerry\'s &lt;"\xc8\x98tefan"&gt;' in data  # Ș as UTF-8, not an entity
    root = parse(data)
    assert texts(root, "cac:AccountingCustomerParty//cbc:RegistrationName") == [doc.buyer.name]
    assert texts(root, "cac:InvoiceLine/cac:Item/cbc:Name") == [doc.lines[0].name]
    assert texts(root, "cbc:Note") == list(doc.notes)


def test_b2c_buyer_identified_by_placeholder() -> None:
    root = parse(xml_bytes(samples.b2c_placeholder()))
    buyer = root.xpath("cac:AccountingCustomerParty/cac:Party", namespaces=NS)[0]
    assert texts(buyer, "cac:PartyLegalEntity/cbc:CompanyID") == ["0000000000000"]
    assert buyer.xpath("cac:PartyTaxScheme", namespaces=NS) == []
    assert texts(root, "cac:LegalMonetaryTotal/cbc:PayableAmount") == ["0.00"]


def test_not_subject_has_no_rate_and_no_vat_ids() -> None:
    root = parse(xml_bytes(samples.not_subject()))
    assert root.xpath("//cac:ClassifiedTaxCategory/cbc:Percent", namespaces=NS) == []
    assert root.xpath("//cac:TaxSubtotal/cac:TaxCategory/cbc:Percent", namespaces=NS) == []
    schemes = texts(root, "cac:AccountingSupplierParty//cac:PartyTaxScheme/cac:TaxScheme/cbc:ID")
    assert schemes == ["TAX"]  # the CUI as BT-32, no VAT id (BR-O-02)
    assert texts(root, "//cbc:TaxExemptionReasonCode") == ["VATEX-EU-O"]


def test_long_item_name_is_split_into_name_and_description() -> None:
    root = parse(xml_bytes(samples.long_item_name()))
    (name,) = texts(root, "//cac:Item/cbc:Name")
    (description,) = texts(root, "//cac:Item/cbc:Description")
    assert len(name) <= 100 and len(description) <= 200
    assert f"{name} {description}" == samples.LONG_PRODUCT_NAME


def test_reconciled_rounding_is_written() -> None:
    root = parse(xml_bytes(samples.rounding_amount()))
    assert texts(root, "cac:LegalMonetaryTotal/cbc:PayableRoundingAmount") == ["0.01"]


# Every character libxml2 escapes, in texts and in an attribute (the payment means' name).
AWKWARD = "A & B <c> \"d\" 'e' Ștefan Țară\r\nline\ttab ]]> €😀"


def awkward_document() -> Document:
    """Escaping everywhere, plus the elements that can be left empty (written self-closed)."""
    return build_document(
        samples.draft(
            buyer=samples.RO_COMPANY.model_copy(update={"name": AWKWARD, "contact_name": AWKWARD}),
            lines=(samples.line(1, AWKWARD, "10.00", note=AWKWARD, seller_item_id="a<b"),),
            notes=(AWKWARD, "ASCII only"),
            payment_terms=AWKWARD,
            payment_means=(
                samples.TRANSFER,
                PaymentMeans(code="54", text=AWKWARD, payment_id="ref & <id>"),
                PaymentMeans(code=""),  # an empty cac:PaymentMeans
            ),
            additional_references=(DocumentReference(id="ch_1", description=AWKWARD),),
        )
    )


@cache
def seeded_documents() -> tuple[Document, ...]:
    objects = seed.generate(10, end_date=date(2025, 8, 10), invoices_per_day=8, charges_per_day=3)
    return tuple(o.document for o in build_documents(objects) if o.document is not None)


def documents_to_compare() -> list[tuple[str, Document]]:
    named = [(situation, build()) for situation, build in sorted(samples.SITUATIONS.items())]
    named.append(("awkward", awkward_document()))
    named.append(
        (
            "empty references",
            samples.credit_note().model_copy(
                update={
                    "preceding_invoices": (PrecedingInvoice(number=""),),
                    "additional_references": (DocumentReference(id=""),),
                }
            ),
        )
    )
    named.extend((document.number, document) for document in seeded_documents())
    return named


def test_bytes_are_what_lxml_writes() -> None:
    """The writer's bytes, parsed by lxml with the indentation dropped and pretty-printed again,
    come back unchanged: the XML is well-formed and laid out and escaped exactly as lxml did
    when it built the tree itself (the golden files were written that way)."""
    reindenting = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, remove_blank_text=True
    )
    compared = documents_to_compare()
    assert len(compared) > 60 and any(d.kind is DocumentKind.CREDIT_NOTE for _, d in compared)
    for name, document in compared:
        data = xml_bytes(document)
        root = etree.fromstring(data, reindenting)
        again = etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=True)
        assert data == XML_DECLARATION + again, f"{name}: differs from lxml's serialisation"


def test_awkward_texts_are_escaped_like_lxml_and_read_back() -> None:
    data = xml_bytes(awkward_document())
    escaped_text = "A &amp; B &lt;c&gt; \"d\" 'e' Ștefan Țară&#13;\nline\ttab ]]&gt; €😀"
    escaped_attribute = (
        "A &amp; B &lt;c&gt; &quot;d&quot; 'e' Ștefan Țară&#13;&#10;line&#9;tab ]]&gt; €😀"
    )
    assert f"<cbc:Name>{escaped_text}</cbc:Name>".encode() in data
    assert f'<cbc:PaymentMeansCode name="{escaped_attribute}">54<'.encode() in data
    assert b"\n  <cac:PaymentMeans/>\n" in data
    root = parse(data)
    assert texts(root, "cac:InvoiceLine/cac:Item/cbc:Name") == [AWKWARD]
    assert root.xpath("cac:PaymentMeans/cbc:PaymentMeansCode/@name", namespaces=NS) == [AWKWARD]
    assert texts(root, "cbc:Note") == [AWKWARD, "ASCII only"]


@pytest.mark.parametrize("character", ["\x00", "\x0b", "\x1f", "\ufffe", "\uffff", "\ud800"])
def test_a_character_xml_forbids_is_refused_naming_its_element(character: str) -> None:
    doc = samples.ron_b2b_21()
    # model_copy skips validation: the one way a lone surrogate gets into a document.
    bad_line = doc.lines[0].model_copy(update={"name": f"Abonament{character}lunar"})
    with pytest.raises(
        ValueError, match=rf"FCT-2025-000123: <cbc:Name> holds U\+{ord(character):04X}"
    ):
        xml_bytes(doc.model_copy(update={"lines": (bad_line,)}))


def test_a_forbidden_character_in_an_attribute_is_refused() -> None:
    card = PaymentMeans(code="54", text="Card\x0bStripe")
    doc = samples.ron_b2b_21().model_copy(update={"payment_means": (card,)})
    with pytest.raises(ValueError, match=r"<cbc:PaymentMeansCode> holds U\+000B"):
        xml_bytes(doc)
