"""The UBL writer: golden files, determinism, and the CIUS-RO specifics of the XML.

Golden files (`golden/*.xml`, one per kind of document) are compared byte for byte. After an
intended change to the writer or the samples, regenerate them and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/pytest invoicesync_dagster_tests/efactura/test_ubl.py
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from lxml import etree

from invoicesync_dagster.efactura.model import CUSTOMIZATION_ID
from invoicesync_dagster.efactura.ubl import NS_CAC, NS_CBC, NS_CREDIT_NOTE, xml_bytes, xml_sha256
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
