"""One document per situation the product must file: built with the real builder, used by the
validator tests, the rules tests and the golden files. Identifiers are valid (CUI 12345674,
8486152, CNP 1800101123450 pass their check digits) but invented."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from invoicesync_dagster.efactura.model import (
    Address,
    Delivery,
    Document,
    DocumentAllowance,
    DocumentDraft,
    DocumentKind,
    DocumentReference,
    ExpectedTotals,
    InvoiceLine,
    InvoicePeriod,
    LineAllowance,
    Party,
    PaymentMeans,
    PrecedingInvoice,
    build_document,
    split_item_name,
)
from invoicesync_dagster.efactura.vat import VatCategory, standard_rate

BEFORE_CHANGE = date(2025, 7, 15)
AFTER_CHANGE = date(2025, 8, 5)

SELLER = Party(
    name="Exemplu Software SRL",
    vat_id="RO12345674",
    trade_register_number="J40/1234/2020",
    address=Address(
        street="Str. Exemplului nr. 10",
        city="Sector 1",  # written as SECTOR1
        postal_code="010101",
        county="RO-B",
        country="RO",
    ),
    email="facturare@exemplu.ro",
)
SELLER_NOT_VAT_PAYER = SELLER.model_copy(update={"vat_id": None, "tax_registration_id": "12345674"})
RO_COMPANY = Party(
    name="Client Exemplu SA",
    vat_id="RO8486152",
    tax_registration_id="8486152",
    address=Address(
        street="Bd. Testului nr. 5",
        city="Cluj-Napoca",
        postal_code="400001",
        county="RO-CJ",
        country="RO",
    ),
)
PRIVATE_PERSON = Party(
    name="Ion Popescu",
    tax_registration_id="0000000000000",  # B2C placeholder: no CNP given
    address=Address(street="Str. Lăpușneanu 12", city="Iași", county="RO-IS", country="RO"),
    email="ion.popescu@example.com",
)
PERSON_WITH_CNP = Party(
    name="Maria Ionescu",
    tax_registration_id="1800101123450",
    address=Address(
        street="Calea Văcărești 200", city="București, Sector 4", county="RO-B", country="RO"
    ),
)
EU_COMPANY = Party(
    name="Beispiel GmbH",
    vat_id="DE123456789",
    address=Address(street="Musterstraße 1", city="Berlin", postal_code="10115", country="DE"),
)
US_COMPANY = Party(
    name="Example Inc.",
    tax_registration_id="12-3456789",  # EIN: BR-RO-120 wants a legal registration id
    address=Address(
        street="1 Market St", city="San Francisco", postal_code="94105", county="CA", country="US"
    ),
)
UK_PERSON = Party(
    name="Jane Doe",
    address=Address(
        street="10 Downing Street", city="London", postal_code="SW1A 2AA", country="GB"
    ),
)
TRANSFER = PaymentMeans(code="30", iban="RO49 AAAA 1B31 0075 9384 0000", account_name="Exemplu")
CARD = PaymentMeans(code="54", text="Card (Stripe)")


def line(
    number: int,
    name: str,
    price: str,
    *,
    quantity: str = "1",
    rate: Decimal | str | None = "21",
    category: VatCategory = VatCategory.STANDARD,
    **extra: Any,
) -> InvoiceLine:
    return InvoiceLine(
        id=str(number),
        name=name,
        quantity=Decimal(quantity),
        unit_price=Decimal(price),
        vat_category=category,
        vat_rate=None if rate is None else Decimal(rate),
        **extra,
    )


def draft(**fields: Any) -> DocumentDraft:
    base: dict[str, Any] = {
        "number": "FCT-2025-000123",
        "issue_date": AFTER_CHANGE,
        "due_date": date(2025, 9, 4),
        "seller": SELLER,
        "buyer": RO_COMPANY,
        "payment_means": (TRANSFER,),
        "lines": (line(1, "Abonament lunar", "100.00"),),
    }
    base.update(fields)
    return DocumentDraft(**base)


def ron_b2b_19() -> Document:
    rate = standard_rate(BEFORE_CHANGE)
    return build_document(
        draft(
            number="FCT-2025-000101",
            issue_date=BEFORE_CHANGE,
            due_date=date(2025, 8, 14),
            lines=(
                line(1, "Licență software anuală", "1200.00", rate=rate, unit_code="C62"),
                line(
                    2,
                    "Servicii mentenanță IT",
                    "150.00",
                    quantity="3.5",
                    rate=rate,
                    unit_code="HUR",
                ),
            ),
            invoice_period=InvoicePeriod(start=date(2025, 7, 1), end=date(2025, 7, 31)),
        )
    )


def ron_b2b_21() -> Document:
    return build_document(
        draft(
            lines=(line(1, "Abonament lunar Pro", "249.90", rate=standard_rate(AFTER_CHANGE)),),
            buyer_reference="cus_Q1w2e3r4",
            order_reference="in_1Pq2Rs3Tu4",
            additional_references=(
                DocumentReference(id="ch_3Ab12Cd", description="Stripe charge"),
            ),
            notes=("Factură emisă automat din Stripe.",),
        )
    )


def multi_rate() -> Document:
    return build_document(
        draft(
            lines=(
                line(1, "Consultanță", "500.00", rate="21"),
                line(2, "Carte tipărită", "59.99", quantity="3", rate="11", unit_code="H87"),
                line(3, "Abonament revistă", "19.99", quantity="2", rate="11", unit_code="H87"),
            ),
        )
    )


def with_discounts() -> Document:
    return build_document(
        draft(
            lines=(
                line(
                    1,
                    "Plan Business",
                    "300.00",
                    allowances=(
                        LineAllowance(
                            amount=Decimal("30.00"), reason="Reducere fidelitate", reason_code="95"
                        ),
                    ),
                ),
                line(2, "Utilizatori suplimentari", "12.50", quantity="4", rate="21"),
            ),
            allowances=(
                DocumentAllowance(
                    amount=Decimal("25.00"),
                    reason="Cupon WELCOME25",
                    reason_code="95",
                    vat_category=VatCategory.STANDARD,
                    vat_rate=Decimal("21"),
                ),
            ),
        )
    )


def eur_invoice() -> Document:
    return build_document(
        draft(
            number="FCTX-2025-000007",
            currency="EUR",
            tax_exchange_rate=Decimal("5.0843"),
            lines=(line(1, "Annual plan", "990.00"), line(2, "Setup fee", "49.99")),
            notes=("Curs BNR 5,0843 RON/EUR din 2025-08-04.",),
        )
    )


def usd_invoice() -> Document:
    return build_document(
        draft(
            number="FCTX-2025-000008",
            currency="usd",
            tax_exchange_rate=Decimal("4.4012"),
            lines=(line(1, "Monthly plan", "29.00", quantity="3"),),
        )
    )


def b2c_placeholder() -> Document:
    # Paid by card through Stripe (8.26 + 21 % = 9.99): nothing is due, so no due date.
    return build_document(
        draft(
            number="FCTB-2025-000042",
            buyer=PRIVATE_PERSON,
            due_date=None,
            payment_means=(CARD,),
            lines=(line(1, "Abonament Basic", "8.26"),),
            paid_amount=Decimal("9.99"),
        )
    )


def b2c_cnp() -> Document:
    return build_document(
        draft(
            number="FCTB-2025-000043",
            buyer=PERSON_WITH_CNP,
            payment_means=(CARD,),
            lines=(line(1, "Curs online „Contabilitate”", "199.00", rate="21"),),
        )
    )


def reverse_charge() -> Document:
    return build_document(
        draft(
            number="FCTX-2025-000010",
            currency="EUR",
            tax_exchange_rate=Decimal("5.0843"),
            buyer=EU_COMPANY,
            lines=(
                line(
                    1,
                    "SaaS subscription",
                    "400.00",
                    rate="0",
                    category=VatCategory.REVERSE_CHARGE,
                    exemption_code="VATEX-EU-AE",
                ),
            ),
            notes=("Taxare inversă (reverse charge) - art. 196 Directiva 2006/112/CE.",),
        )
    )


def export_outside_eu() -> Document:
    return build_document(
        draft(
            number="FCTX-2025-000011",
            currency="USD",
            tax_exchange_rate=Decimal("4.4012"),
            buyer=US_COMPANY,
            lines=(
                line(
                    1,
                    "Hardware token",
                    "80.00",
                    quantity="2",
                    rate="0",
                    unit_code="H87",
                    category=VatCategory.EXPORT,
                ),
            ),
        )
    )


def not_subject() -> Document:
    return build_document(
        draft(
            number="FCTX-2025-000012",
            currency="GBP",
            tax_exchange_rate=Decimal("5.8710"),
            seller=SELLER_NOT_VAT_PAYER,
            buyer=UK_PERSON,
            payment_means=(CARD,),
            lines=(
                line(1, "E-book download", "9.99", rate=None, category=VatCategory.NOT_SUBJECT),
            ),
        )
    )


def exempt() -> Document:
    return build_document(
        draft(
            lines=(
                line(
                    1,
                    "Curs de formare profesională",
                    "1500.00",
                    rate="0",
                    category=VatCategory.EXEMPT,
                    exemption_code="VATEX-EU-132-1I",
                ),
            ),
        )
    )


def intra_community_supply() -> Document:
    return build_document(
        draft(
            number="FCTX-2025-000013",
            currency="EUR",
            tax_exchange_rate=Decimal("5.0843"),
            buyer=EU_COMPANY,
            lines=(
                line(
                    1,
                    "Cititor carduri NFC",
                    "35.00",
                    quantity="10",
                    rate="0",
                    unit_code="H87",
                    category=VatCategory.INTRA_COMMUNITY,
                ),
            ),
            delivery=Delivery(
                delivery_date=date(2025, 8, 4),
                address=EU_COMPANY.address.model_copy(update={"county": "Berlin"}),
            ),
        )
    )


def credit_note() -> Document:
    # A partial refund, issued after the rate change, of a July invoice: July's 19 % applies.
    return build_document(
        draft(
            kind=DocumentKind.CREDIT_NOTE,
            number="CN-2025-000004",
            issue_date=AFTER_CHANGE,
            due_date=None,
            lines=(line(1, "Licență software anuală", "1200.00", rate="19"),),
            preceding_invoices=(
                PrecedingInvoice(number="FCT-2025-000101", issue_date=BEFORE_CHANGE),
            ),
            notes=("Stornare parțială a facturii FCT-2025-000101 (rambursare Stripe re_3Xy).",),
        )
    )


def special_characters() -> Document:
    tricky = 'Tom & Jerry\'s <"Ștefan"> Țară Ăla Îmi Âme SRL'
    return build_document(
        draft(
            buyer=RO_COMPANY.model_copy(update={"name": tricky}),
            lines=(line(1, "Servicii <consultanță> & „training” pentru „ș ț ă î â”", "10.00"),),
            notes=("Mulțumim! Întrebări? Scrieți la <suport@exemplu.ro> & vă răspundem.",),
        )
    )


LONG_PRODUCT_NAME = (
    "Pachet anual Enterprise cu suport prioritar 24/7, integrare SSO, audit de securitate "
    "trimestrial și instruire dedicată pentru echipa de implementare"
)


def long_item_name() -> Document:
    name, description = split_item_name(LONG_PRODUCT_NAME)
    return build_document(
        draft(
            lines=(line(1, name, "12000.00", description=description),),
        )
    )


def reconciled_to_stripe() -> Document:
    # Stripe rounded each line's tax: 3 × round(0.333 × 21 %) … its VAT total is a cent higher
    # than ours; its total follows. The cent goes into the breakdown, nothing is dropped.
    base = draft(lines=tuple(line(n, f"Credit {n}", "0.33") for n in (1, 2, 3)))
    ours = build_document(base)
    return build_document(
        base,
        ExpectedTotals(
            total=ours.totals.tax_inclusive_total + Decimal("0.01"),
            vat_total=ours.totals.vat_total + Decimal("0.01"),
        ),
    )


def rounding_amount() -> Document:
    # Stripe's total is a cent above lines + VAT (e.g. a discount rounded the other way): the
    # difference is the payable rounding amount BT-114.
    base = draft(lines=(line(1, "Abonament", "10.00"),))
    ours = build_document(base)
    return build_document(
        base, ExpectedTotals(total=ours.totals.tax_inclusive_total + Decimal("0.01"))
    )


SITUATIONS: dict[str, Callable[[], Document]] = {
    "ron_b2b_19": ron_b2b_19,
    "ron_b2b_21": ron_b2b_21,
    "multi_rate": multi_rate,
    "with_discounts": with_discounts,
    "eur_invoice": eur_invoice,
    "usd_invoice": usd_invoice,
    "b2c_placeholder": b2c_placeholder,
    "b2c_cnp": b2c_cnp,
    "reverse_charge": reverse_charge,
    "export_outside_eu": export_outside_eu,
    "not_subject": not_subject,
    "exempt": exempt,
    "intra_community_supply": intra_community_supply,
    "credit_note": credit_note,
    "special_characters": special_characters,
    "long_item_name": long_item_name,
    "reconciled_to_stripe": reconciled_to_stripe,
    "rounding_amount": rounding_amount,
}

# One golden file per kind of document (file name → situation).
GOLDEN = {
    "invoice-b2b-ron.xml": "with_discounts",
    "invoice-eur.xml": "eur_invoice",
    "invoice-b2c.xml": "b2c_cnp",
    "invoice-reverse-charge.xml": "reverse_charge",
    "credit-note.xml": "credit_note",
}
