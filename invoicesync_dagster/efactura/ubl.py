"""UBL 2.1 XML for a `Document`: an `Invoice` (type 380) or a `CreditNote` (type 381), CIUS-RO.

* CustomizationID is CIUS-RO 1.0.1 (BR-RO-001); no `xsi:schemaLocation`, no UBLVersionID.
* Elements follow the UBL 2.1 schema order; only what EN 16931 maps is written.
* A non-RON document gets TaxCurrencyCode RON and a second TaxTotal holding only the VAT total
  in RON (BT-111, BR-RO-030 / BR-53); the first keeps the breakdown in the document currency.
* A credit note has CreditedQuantity and positive amounts, its due date goes into each
  PaymentMeans (a CreditNote has no DueDate), and it references the invoice it corrects.
* Amounts are written with two decimals, prices and quantities as given (see `money`). The
  writer writes what the document holds and checks nothing: `rules.check` does that.
* Deterministic: the same document gives the same bytes, hence the same `xml_sha256`.
* Written as text, not through an lxml tree (building one cost more than everything else):
  the bytes are exactly what lxml's `tostring(pretty_print=True)` wrote before, which the
  tests prove by re-serialising through lxml. UTF-8, two-space indentation, libxml2's
  escaping; a character XML 1.0 forbids is a ValueError naming its element, never bad XML.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal

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
VAT_SCHEME = "VAT"
# BT-32 is a PartyTaxScheme whose scheme is anything but VAT (UBL-SR-13); PEPPOL writes TAX.
TAX_REGISTRATION_SCHEME = "TAX"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_INDENT = "  "
_DECLARATION_TEXT = XML_DECLARATION.decode()
# Characters XML 1.0 forbids: C0 controls other than tab, LF and CR, lone surrogates, U+FFFE
# and U+FFFF. The check runs once on the encoded bytes (a regex over the text is ten times
# slower); the regex only finds the culprit for the error message.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_FORBIDDEN_CONTROLS = bytes(c for c in range(0x20) if c not in b"\t\n\r")


def _escape_text(text: str) -> str:
    """Element content escaped as libxml2 writes it in UTF-8 (quotes stay, CR is a reference)."""
    if "&" in text or "<" in text or ">" in text or "\r" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        text = text.replace("\r", "&#13;")
    return text


def _escape_attribute(value: str) -> str:
    """An attribute value escaped as libxml2 writes it (whitespace other than space as
    references, so that attribute-value normalisation cannot change it)."""
    value = _escape_text(value)
    if '"' in value or "\n" in value or "\t" in value:
        value = value.replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")
    return value


class _Aggregate:
    """An element holding only elements: the root or a `cac:` element. Its basic (`cbc:`)
    children are rendered, indented, as they are added; UBL has no mixed content."""

    __slots__ = ("children", "indent", "inner", "namespaces", "tag")

    def __init__(self, tag: str, indent: str, namespaces: str = "") -> None:
        self.tag = tag
        self.indent = indent
        self.inner = indent + _INDENT  # the children's indentation
        self.namespaces = namespaces  # the root's xmlns declarations
        self.children: list[_Aggregate | str] = []

    def render(self, out: list[str]) -> None:
        """Append the element as pretty-printed XML, the way lxml's `pretty_print` lays it out:
        two spaces per level, one element per line, an empty element self-closed."""
        indent, tag = self.indent, self.tag
        if not self.children:
            out.append(f"{indent}<{tag}{self.namespaces}/>\n")
            return
        out.append(f"{indent}<{tag}{self.namespaces}>\n")
        for child in self.children:
            if type(child) is str:
                out.append(child)
            else:
                child.render(out)
        out.append(f"{indent}</{tag}>\n")


def _cac(parent: _Aggregate, name: str) -> _Aggregate:
    element = _Aggregate("cac:" + name, parent.inner)
    parent.children.append(element)
    return element


def _cbc(parent: _Aggregate, name: str, text: str | None) -> None:
    """A basic element, skipped when there is no value."""
    if text:
        parent.children.append(f"{parent.inner}<cbc:{name}>{_escape_text(text)}</cbc:{name}>\n")


def _cbc_attributed(parent: _Aggregate, name: str, text: str, attribute: str, value: str) -> None:
    """A basic element with one attribute (a currency, a unit), always written."""
    parent.children.append(
        f'{parent.inner}<cbc:{name} {attribute}="{_escape_attribute(value)}">'
        f"{_escape_text(text)}</cbc:{name}>\n"
    )


class _Writer:
    def __init__(self, document: Document) -> None:
        self.doc = document
        self.credit_note = document.kind is DocumentKind.CREDIT_NOTE

    def amount(self, parent: _Aggregate, name: str, value: Decimal, currency: str = "") -> None:
        _cbc_attributed(
            parent, name, format_amount(value), "currencyID", currency or self.doc.currency
        )

    def build(self) -> _Aggregate:
        doc = self.doc
        ns = NS_CREDIT_NOTE if self.credit_note else NS_INVOICE
        root = _Aggregate(
            "CreditNote" if self.credit_note else "Invoice",
            "",
            f' xmlns="{ns}" xmlns:cac="{NS_CAC}" xmlns:cbc="{NS_CBC}"',
        )
        _cbc(root, "CustomizationID", CUSTOMIZATION_ID)
        _cbc(root, "ID", doc.number)
        _cbc(root, "IssueDate", doc.issue_date.isoformat())
        tax_point = doc.tax_point_date.isoformat() if doc.tax_point_date else None
        if self.credit_note:
            _cbc(root, "TaxPointDate", tax_point)  # UBL puts it before the type in a CreditNote
            _cbc(root, "CreditNoteTypeCode", doc.type_code)
        else:
            if doc.due_date:
                _cbc(root, "DueDate", doc.due_date.isoformat())
            _cbc(root, "InvoiceTypeCode", doc.type_code)
        for note in doc.notes:
            _cbc(root, "Note", note)
        if not self.credit_note:
            _cbc(root, "TaxPointDate", tax_point)
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

    def party(self, container: _Aggregate, party: Party, *, seller: bool) -> None:
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

    def address(self, element: _Aggregate, address: Address) -> None:
        _cbc(element, "StreetName", address.street)
        _cbc(element, "AdditionalStreetName", address.additional_street)
        _cbc(element, "CityName", address.city)
        _cbc(element, "PostalZone", address.postal_code)
        _cbc(element, "CountrySubentity", address.county)
        _cbc(_cac(element, "Country"), "IdentificationCode", address.country)

    def payment(self, root: _Aggregate) -> None:
        doc = self.doc
        for means in doc.payment_means:
            element = _cac(root, "PaymentMeans")
            if means.code and means.text:
                _cbc_attributed(element, "PaymentMeansCode", means.code, "name", means.text)
            else:
                _cbc(element, "PaymentMeansCode", means.code)
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
        element: _Aggregate,
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

    def tax_totals(self, root: _Aggregate) -> None:
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

    def monetary_total(self, element: _Aggregate) -> None:
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

    def line(self, root: _Aggregate, line: InvoiceLine) -> None:
        element = _cac(root, "CreditNoteLine" if self.credit_note else "InvoiceLine")
        _cbc(element, "ID", line.id)
        _cbc(element, "Note", line.note)
        quantity_name = "CreditedQuantity" if self.credit_note else "InvoicedQuantity"
        _cbc_attributed(
            element, quantity_name, format_decimal(line.quantity), "unitCode", line.unit_code
        )
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
        _cbc_attributed(
            _cac(element, "Price"),
            "PriceAmount",
            format_price(line.unit_price),
            "currencyID",
            self.doc.currency,
        )


def xml_bytes(document: Document) -> bytes:
    """The document as UTF-8 XML bytes, with declaration, indented; deterministic.

    Byte for byte what lxml's `tostring(pretty_print=True)` wrote for the same tree. Raises a
    ValueError naming the element when a text holds a character XML 1.0 forbids."""
    out = [_DECLARATION_TEXT]
    _Writer(document).build().render(out)
    text = "".join(out)
    try:
        data = text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        raise _forbidden_character(document, text) from None
    if (
        len(data.translate(None, _FORBIDDEN_CONTROLS)) != len(data)
        or b"\xef\xbf\xbe" in data  # U+FFFE
        or b"\xef\xbf\xbf" in data  # U+FFFF
    ):
        raise _forbidden_character(document, text)
    return data


def _forbidden_character(document: Document, text: str) -> ValueError:
    """The error for the first forbidden character in the rendered XML, naming its element."""
    found = _FORBIDDEN.search(text)
    position = found.start() if found else 0
    # Texts and attribute values are escaped, so the last "<" before it opens its element.
    start = text.rfind("<", 0, position)
    element = text[start + 1 : position].split(">", 1)[0].split(" ", 1)[0]
    end = text.find(">", text.find("</", position)) + 1
    return ValueError(
        f"document {document.number}: <{element}> holds U+{ord(text[position]):04X}, a "
        f"character XML 1.0 does not allow, in {text[start:end]!r}; remove it from the source "
        "record"
    )


def xml_sha256(document: Document) -> str:
    """Hex SHA-256 of `xml_bytes(document)`: the document's identity for idempotent filing."""
    return hashlib.sha256(xml_bytes(document)).hexdigest()
