"""UBL 2.1 XML for a `Document`: an `Invoice` (type 380) or a `CreditNote` (type 381), CIUS-RO.

* CustomizationID is CIUS-RO 1.0.1 (BR-RO-001); no `xsi:schemaLocation`, no UBLVersionID.
* Elements follow the UBL 2.1 schema order; only what EN 16931 maps is written.
* A non-RON document gets TaxCurrencyCode RON and a second TaxTotal holding only the VAT total
  in RON (BT-111, BR-RO-030 / BR-53); the first keeps the breakdown in the document currency.
* A credit note has CreditedQuantity and positive amounts, its due date goes into each
  PaymentMeans (a CreditNote has no DueDate), and it references the invoice it corrects.
* Amounts are written with two decimals, prices and quantities as given (see `money`). The
  writer writes what the document holds and checks nothing: `rules.check` does that.
* Deterministic: the same document gives the same bytes (UTF-8, lxml escaping), hence the same
  `xml_sha256`.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

from lxml import etree

from invoicesync_dagster.efactura.model import (
    CUSTOMIZATION_ID,
    Address,
    Document,
    DocumentKind,
    InvoiceLine,
    Party,
)
from invoicesync_dagster.efactura.money import format_amount, format_decimal, format_price

NS_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
NS_CREDIT_NOTE = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
NS_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
NS_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
_CAC = f"{{{NS_CAC}}}"
_CBC = f"{{{NS_CBC}}}"
VAT_SCHEME = "VAT"
# BT-32 is a PartyTaxScheme whose scheme is anything but VAT (UBL-SR-13); PEPPOL writes TAX.
TAX_REGISTRATION_SCHEME = "TAX"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_SubElement = etree.SubElement


def _cac(parent: etree._Element, name: str) -> etree._Element:
    return _SubElement(parent, _CAC + name)


def _cbc(parent: etree._Element, name: str, text: str | None) -> etree._Element | None:
    """A basic element, skipped when there is no value."""
    if not text:
        return None
    element = _SubElement(parent, _CBC + name)
    element.text = text
    return element


class _Writer:
    def __init__(self, document: Document) -> None:
        self.doc = document
        self.credit_note = document.kind is DocumentKind.CREDIT_NOTE

    def amount(self, parent: etree._Element, name: str, value: Decimal, currency: str = "") -> None:
        element = _SubElement(parent, _CBC + name)
        element.text = format_amount(value)
        element.set("currencyID", currency or self.doc.currency)

    def build(self) -> etree._Element:
        doc = self.doc
        ns = NS_CREDIT_NOTE if self.credit_note else NS_INVOICE
        root = etree.Element(
            etree.QName(ns, "CreditNote" if self.credit_note else "Invoice"),
            nsmap={None: ns, "cac": NS_CAC, "cbc": NS_CBC},
        )
        _cbc(root, "CustomizationID", CUSTOMIZATION_ID)
        _cbc(root, "ID", doc.number)
        _cbc(root, "IssueDate", doc.issue_date.isoformat())
        if self.credit_note:
            _cbc(root, "CreditNoteTypeCode", doc.type_code)
        else:
            if doc.due_date:
                _cbc(root, "DueDate", doc.due_date.isoformat())
            _cbc(root, "InvoiceTypeCode", doc.type_code)
        for note in doc.notes:
            _cbc(root, "Note", note)
        _cbc(root, "DocumentCurrencyCode", doc.currency)
        _cbc(root, "TaxCurrencyCode", doc.tax_currency)
        _cbc(root, "BuyerReference", doc.buyer_reference)
        if doc.invoice_period and (doc.invoice_period.start or doc.invoice_period.end):
            period = _cac(root, "InvoicePeriod")
            if doc.invoice_period.start:
                _cbc(period, "StartDate", doc.invoice_period.start.isoformat())
            if doc.invoice_period.end:
                _cbc(period, "EndDate", doc.invoice_period.end.isoformat())
        if doc.order_reference:
            _cbc(_cac(root, "OrderReference"), "ID", doc.order_reference)
        for preceding in doc.preceding_invoices:
            reference = _cac(_cac(root, "BillingReference"), "InvoiceDocumentReference")
            _cbc(reference, "ID", preceding.number)
            if preceding.issue_date:
                _cbc(reference, "IssueDate", preceding.issue_date.isoformat())
        for additional in doc.additional_references:
            reference = _cac(root, "AdditionalDocumentReference")
            _cbc(reference, "ID", additional.id)
            _cbc(reference, "DocumentDescription", additional.description)
        self.party(_cac(root, "AccountingSupplierParty"), doc.seller, seller=True)
        self.party(_cac(root, "AccountingCustomerParty"), doc.buyer, seller=False)
        if doc.delivery and (doc.delivery.delivery_date or doc.delivery.address):
            delivery = _cac(root, "Delivery")
            if doc.delivery.delivery_date:
                _cbc(delivery, "ActualDeliveryDate", doc.delivery.delivery_date.isoformat())
            if doc.delivery.address:
                self.address(
                    _cac(_cac(delivery, "DeliveryLocation"), "Address"), doc.delivery.address
                )
        self.payment(root)
        for allowance in doc.allowances:
            charge = _cac(root, "AllowanceCharge")
            _cbc(charge, "ChargeIndicator", "false")
            _cbc(charge, "AllowanceChargeReasonCode", allowance.reason_code)
            _cbc(charge, "AllowanceChargeReason", allowance.reason)
            self.amount(charge, "Amount", allowance.amount)
            self.tax_category(
                _cac(charge, "TaxCategory"), str(allowance.vat_category), allowance.vat_rate
            )
        self.tax_totals(root)
        self.monetary_total(_cac(root, "LegalMonetaryTotal"))
        for line in doc.lines:
            self.line(root, line)
        return root

    def party(self, container: etree._Element, party: Party, *, seller: bool) -> None:
        element = _cac(container, "Party")
        if party.trading_name:
            _cbc(_cac(element, "PartyName"), "Name", party.trading_name)
        self.address(_cac(element, "PostalAddress"), party.address)
        if party.vat_id:
            scheme = _cac(element, "PartyTaxScheme")
            _cbc(scheme, "CompanyID", party.vat_id)
            _cbc(_cac(scheme, "TaxScheme"), "ID", VAT_SCHEME)
        if seller and party.tax_registration_id:
            scheme = _cac(element, "PartyTaxScheme")
            _cbc(scheme, "CompanyID", party.tax_registration_id)
            _cbc(_cac(scheme, "TaxScheme"), "ID", TAX_REGISTRATION_SCHEME)
        legal = _cac(element, "PartyLegalEntity")
        _cbc(legal, "RegistrationName", party.name)
        if seller:
            _cbc(legal, "CompanyID", party.trade_register_number)
        else:
            _cbc(legal, "CompanyID", party.tax_registration_id or party.trade_register_number)
        if party.contact_name or party.phone or party.email:
            contact = _cac(element, "Contact")
            _cbc(contact, "Name", party.contact_name)
            _cbc(contact, "Telephone", party.phone)
            _cbc(contact, "ElectronicMail", party.email)

    def address(self, element: etree._Element, address: Address) -> None:
        _cbc(element, "StreetName", address.street)
        _cbc(element, "AdditionalStreetName", address.additional_street)
        _cbc(element, "CityName", address.city)
        _cbc(element, "PostalZone", address.postal_code)
        _cbc(element, "CountrySubentity", address.county)
        _cbc(_cac(element, "Country"), "IdentificationCode", address.country)

    def payment(self, root: etree._Element) -> None:
        doc = self.doc
        for means in doc.payment_means:
            element = _cac(root, "PaymentMeans")
            code = _cbc(element, "PaymentMeansCode", means.code)
            if code is not None and means.text:
                code.set("name", means.text)
            if self.credit_note and doc.due_date:
                _cbc(element, "PaymentDueDate", doc.due_date.isoformat())
            _cbc(element, "PaymentID", means.payment_id)
            if means.iban:
                account = _cac(element, "PayeeFinancialAccount")
                _cbc(account, "ID", means.iban)
                _cbc(account, "Name", means.account_name)
        if doc.payment_terms:
            _cbc(_cac(root, "PaymentTerms"), "Note", doc.payment_terms)

    def tax_category(
        self,
        element: etree._Element,
        category: str,
        rate: Decimal | None,
        exemption_code: str | None = None,
        exemption_reason: str | None = None,
    ) -> None:
        _cbc(element, "ID", category)
        if rate is not None:
            _cbc(element, "Percent", format_decimal(rate))
        _cbc(element, "TaxExemptionReasonCode", exemption_code)
        _cbc(element, "TaxExemptionReason", exemption_reason)
        _cbc(_cac(element, "TaxScheme"), "ID", VAT_SCHEME)

    def tax_totals(self, root: etree._Element) -> None:
        doc = self.doc
        total = _cac(root, "TaxTotal")
        self.amount(total, "TaxAmount", doc.totals.vat_total)
        for sub in doc.tax_subtotals:
            subtotal = _cac(total, "TaxSubtotal")
            self.amount(subtotal, "TaxableAmount", sub.taxable_amount)
            self.amount(subtotal, "TaxAmount", sub.tax_amount)
            self.tax_category(
                _cac(subtotal, "TaxCategory"),
                str(sub.category),
                sub.rate,
                sub.exemption_code,
                sub.exemption_reason,
            )
        if doc.tax_currency and doc.tax_currency_vat_total is not None:
            # BR-53: the VAT total in the tax currency, alone in its own TaxTotal.
            in_ron = _cac(root, "TaxTotal")
            self.amount(in_ron, "TaxAmount", doc.tax_currency_vat_total, doc.tax_currency)

    def monetary_total(self, element: etree._Element) -> None:
        totals = self.doc.totals
        self.amount(element, "LineExtensionAmount", totals.line_total)
        self.amount(element, "TaxExclusiveAmount", totals.tax_exclusive_total)
        self.amount(element, "TaxInclusiveAmount", totals.tax_inclusive_total)
        if self.doc.allowances or totals.allowance_total:
            self.amount(element, "AllowanceTotalAmount", totals.allowance_total)
        if totals.paid_amount:
            self.amount(element, "PrepaidAmount", totals.paid_amount)
        if totals.rounding_amount:
            self.amount(element, "PayableRoundingAmount", totals.rounding_amount)
        self.amount(element, "PayableAmount", totals.payable_amount)

    def line(self, root: etree._Element, line: InvoiceLine) -> None:
        element = _cac(root, "CreditNoteLine" if self.credit_note else "InvoiceLine")
        _cbc(element, "ID", line.id)
        _cbc(element, "Note", line.note)
        quantity_name = "CreditedQuantity" if self.credit_note else "InvoicedQuantity"
        quantity = _SubElement(element, _CBC + quantity_name)
        quantity.text = format_decimal(line.quantity)
        quantity.set("unitCode", line.unit_code)
        self.amount(element, "LineExtensionAmount", line.net_amount)
        for allowance in line.allowances:
            charge = _cac(element, "AllowanceCharge")
            _cbc(charge, "ChargeIndicator", "false")
            _cbc(charge, "AllowanceChargeReasonCode", allowance.reason_code)
            _cbc(charge, "AllowanceChargeReason", allowance.reason)
            self.amount(charge, "Amount", allowance.amount)
        item = _cac(element, "Item")
        _cbc(item, "Description", line.description)
        _cbc(item, "Name", line.name)
        if line.seller_item_id:
            _cbc(_cac(item, "SellersItemIdentification"), "ID", line.seller_item_id)
        self.tax_category(
            _cac(item, "ClassifiedTaxCategory"), str(line.vat_category), line.vat_rate
        )
        price = _SubElement(_cac(element, "Price"), _CBC + "PriceAmount")
        price.text = format_price(line.unit_price)
        price.set("currencyID", self.doc.currency)


def xml_element(document: Document) -> etree._Element:
    """The document as an lxml element tree (root `Invoice` or `CreditNote`)."""
    return _Writer(document).build()


def xml_bytes(document: Document) -> bytes:
    """The document as UTF-8 XML bytes, with declaration, indented; deterministic."""
    body = etree.tostring(
        xml_element(document), encoding="UTF-8", xml_declaration=False, pretty_print=True
    )
    return XML_DECLARATION + body


def xml_sha256(document: Document) -> str:
    """Hex SHA-256 of `xml_bytes(document)`: the document's identity for idempotent filing."""
    return hashlib.sha256(xml_bytes(document)).hexdigest()
