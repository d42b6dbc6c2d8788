"""`billable_events` and `efactura_documents` end to end: Stripe, ANAF registry and BNR fakes over
loopback, a real DuckDB file, every asset of a day materialized in order, the XML run through the
official validator."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from lxml import etree

from invoicesync_dagster.defs.customers.assets import customer_tax_profiles
from invoicesync_dagster.defs.efactura.documents import billable_events, efactura_documents
from invoicesync_dagster.defs.efactura.fx import fx_rates
from invoicesync_dagster.defs.resources import CompanyResource
from invoicesync_dagster.defs.stripe.assets import (
    stripe_charges,
    stripe_credit_notes,
    stripe_customers,
    stripe_invoices,
    stripe_refunds,
)
from invoicesync_dagster.sandbox import stripe_objects as so
from invoicesync_dagster.sandbox.bnr_fake import previous_banking_day, rates_on
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster.warehouse.database import connect
from invoicesync_dagster.warehouse.numbering import gaps
from invoicesync_dagster_tests.defs.buyers import DAY, Buyers, cui
from invoicesync_dagster_tests.defs.test_stripe_assets import at
from invoicesync_dagster_tests.efactura.conftest import _load_validator_module

Materialize = Callable[..., dg.ExecuteInProcessResult]
STRIPE = [stripe_invoices, stripe_charges, stripe_customers, stripe_refunds, stripe_credit_notes]
DAY_ASSETS = [customer_tax_profiles, fx_rates, billable_events, efactura_documents]
PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


@pytest.fixture(scope="module")
def validator() -> Any:
    return _load_validator_module().Validator()


class Day(Buyers):
    """A day of sales: invoices of several buyers, lone charges and their refunds."""

    def invoice_for(
        self, customer: dict[str, Any], hour: int, *, currency: str = "ron", rate: int = 21
    ) -> dict[str, Any]:
        invoice_id = self.ids("in")
        amount = 12_345
        taxes = [so.line_tax(amount=(amount * rate + 50) // 100, taxable_amount=amount,
                             tax_rate="txr_ro")] if rate else []  # fmt: skip
        line = so.line_item(
            id=self.ids("il"),
            invoice=invoice_id,
            currency=currency,
            description="Abonament lunar „Pro” & suport <24h>",
            unit_amount=amount,
            quantity=1,
            price=self.ids("price"),
            product=self.ids("prod"),
            period_start=at(DAY, hour),
            period_end=at(DAY, hour),
            taxes=taxes,
        )
        invoice = so.invoice(
            id=invoice_id,
            created=at(DAY, hour),
            customer=customer,
            currency=currency,
            lines=[line],
            status="paid",
            number=f"ABC-{invoice_id[-4:]}",
            finalized_at=at(DAY, hour),
            paid_at=at(DAY, hour, 5),
        )
        self.load(invoice)
        return invoice

    def company(self, name: str, email: str, body: int, **metadata: str) -> dict[str, Any]:
        created = at(DAY - timedelta(days=30), 9)
        customer = so.customer(
            id=self.ids("cus"),
            created=created,
            name=name,
            email=email,
            address=so.address(line1="Str. Lungă 1", city="Cluj-Napoca", state="CJ",
                               country="RO"),
            metadata={"cui": cui(body), "sandbox_registry": "active", **metadata}
            if body
            else metadata,
        )  # fmt: skip
        self.load(customer)
        return customer

    def lone_charge(self, hour: int, amount: int, refund: int = 0) -> dict[str, Any]:
        charge = so.charge(
            id=self.ids("ch"),
            created=at(DAY, hour),
            amount=amount,
            currency="ron",
            payment_intent=self.ids("pi"),
            description="Consultanță 1h",
            billing=so.billing_details(
                name="Ioana Pop",
                email="ioana@gmail.com",
                address=so.address(line1="Bd. Unirii 1", city="Sector 3", state="B", country="RO"),
            ),
            amount_refunded=refund,
        )
        self.load(charge)
        if refund:
            self.load(
                so.refund(
                    id=self.ids("re"),
                    created=at(DAY, hour + 2),
                    amount=refund,
                    charge=charge["id"],
                    currency="ron",
                    payment_intent=charge["payment_intent"],
                )
            )
        return charge


def documents(database: Path) -> dict[str, dict[str, Any]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        cursor = connection.execute("SELECT * FROM efactura_documents ORDER BY document_id")
        columns = [d[0] for d in cursor.description]
        return {row[0]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def build(materialize: Materialize, **kwargs: Any) -> dg.ExecuteInProcessResult:
    assert materialize(STRIPE, **kwargs).success
    result = materialize(DAY_ASSETS, **kwargs)
    assert result.success
    return result


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "w.duckdb"


@pytest.fixture
def day(sandbox: SandboxServer) -> Iterator[Day]:
    yield Day(sandbox)


def test_a_day_becomes_numbered_documents_that_pass_the_official_validator(
    materialize: Materialize, day: Day, database: Path, validator: Any, tmp_path: Path
) -> None:
    alfa = day.company("Alfa Soft S.R.L.", "office@alfa.ro", 1_234_561)
    person = day.buyer("Ștefan Țurcanu", "stefan@gmail.com")
    german = day.buyer("Müller GmbH", "billing@mueller.de", country="DE",
                       tax_ids=(("eu_vat", "DE123456789"),))  # fmt: skip
    day.invoice_for(alfa, 9)
    day.invoice_for(german, 10, currency="eur", rate=0)
    charge = day.lone_charge(13, 25_000, refund=10_000)

    result = build(materialize)

    rows = documents(database)
    assert {r["status"] for r in rows.values()} == {"ready"}
    # Buyers.buyer bills person and german once each; + alfa, german in EUR, the charge, its refund
    assert len(rows) == 6
    numbers = sorted(r["number"] for r in rows.values())
    assert numbers == [1, 2, 3, 4, 5, 6]
    year = DAY.year
    assert {r["invoice_number"] for r in rows.values()} == {f"INV-{year}-{n:06d}" for n in numbers}
    for row in rows.values():
        path = tmp_path / f"{row['invoice_number']}.xml"
        path.write_text(row["xml"], encoding="utf-8")
        fatal = [f for f in validator.validate(str(path)) if f["level"] == "FATAL"]
        assert fatal == [], (row["document_id"], fatal)

    refund = next(r for r in rows.values() if r["source_type"] == "stripe_refund")
    charge_doc = rows[f"stripe_charge:{charge['id']}"]
    assert refund["kind"] == "credit_note" and refund["total"] == Decimal("100.00")
    assert refund["corrects"] == charge_doc["document_id"]
    root = etree.fromstring(refund["xml"].encode(), PARSER)
    assert root.tag.endswith("CreditNote")
    assert charge_doc["invoice_number"] in refund["xml"]
    # The charge's VAT is extracted from what was paid: 250.00 = 206.61 + 43.39.
    assert charge_doc["total"] == Decimal("250.00") and charge_doc["tax_total"] == Decimal("43.39")
    assert ">SECTOR3<" in charge_doc["xml"]

    eur = next(r for r in rows.values() if r["currency"] == "EUR")
    assert eur["buyer_tax_id"] == "DE123456789" and "VATEX-EU-AE" in eur["xml"]
    rate = rates_on(previous_banking_day(DAY))["EUR"].rate
    assert eur["fx_rate"] == rate and eur["fx_rate_date"] == previous_banking_day(DAY)
    assert eur["tax_total_ron"] == Decimal("0.00")

    alfa_doc = next(r for r in rows.values() if r["customer_id"] == alfa["id"])
    assert alfa_doc["buyer_cui"] == cui(1_234_561) and alfa_doc["tax_total"] == Decimal("25.92")
    assert person["id"] in {r["customer_id"] for r in rows.values()}

    evaluations = checks(result)
    assert evaluations["documents_pass_local_rules"].passed
    assert evaluations["documents_tie_to_stripe"].passed
    with duckdb.connect(str(database), read_only=True) as connection:
        skipped = connection.execute(
            "SELECT count(*) FROM billable_events WHERE decision = 'skip'"
        ).fetchone()
    assert skipped == (0,)


def test_a_rerun_returns_the_same_numbers_and_bytes(
    materialize: Materialize, day: Day, database: Path
) -> None:
    alfa = day.company("Alfa Soft S.R.L.", "office@alfa.ro", 1_234_561)
    for hour in (9, 10, 11):
        day.invoice_for(alfa, hour)
    build(materialize)
    first = documents(database)

    assert materialize(DAY_ASSETS).success
    second = documents(database)

    def identity(rows: dict[str, dict[str, Any]]) -> dict[str, tuple[object, ...]]:
        return {k: (r["invoice_number"], r["xml_sha256"]) for k, r in rows.items()}

    assert identity(second) == identity(first)
    with connect(database, read_only=True) as connection:
        (allocated,) = connection.execute(  # type: ignore[misc]
            "SELECT count(*) FROM invoice_number_allocations"
        ).fetchone()
    assert allocated == 3


def test_a_held_document_leaves_no_gap_and_is_numbered_once_fixed(
    materialize: Materialize, day: Day, database: Path, sandbox: SandboxServer, tmp_path: Path
) -> None:
    alfa = day.company("Alfa Soft S.R.L.", "office@alfa.ro", 1_234_561)
    no_cui = day.company("Fermele Bărăganului S.R.L.", "office@ferme.ro", 0)
    bad = day.company("Ionescu & Asociații S.R.L.", "office@ionescu.ro", 0, cui="12345678")
    first = day.invoice_for(alfa, 9)
    held = day.invoice_for(no_cui, 10)
    blocked = day.invoice_for(bad, 11)
    last = day.invoice_for(alfa, 12)

    result = build(materialize)

    rows = documents(database)
    number = {r["source_id"]: r["invoice_number"] for r in rows.values()}
    year = DAY.year
    assert number[first["id"]] == f"INV-{year}-000001"
    assert number[last["id"]] == f"INV-{year}-000002"
    assert number[held["id"]] is None and number[blocked["id"]] is None
    held_row = rows[f"stripe_invoice:{held['id']}"]
    assert held_row["status"] == "held" and held_row["xml"] is None
    assert "mappings CSV" in json.loads(held_row["errors"])[0]
    assert rows[f"stripe_invoice:{blocked['id']}"]["status"] == "blocked"
    with connect(database, read_only=True) as connection:
        assert gaps(connection, "INV", year) == []

    evaluations = checks(result)
    local = evaluations["documents_pass_local_rules"]
    assert not local.passed and local.severity is dg.AssetCheckSeverity.ERROR
    assert held["id"].replace("_", "\\_") in str(local.metadata["held_documents"].value)
    tie = evaluations["documents_tie_to_stripe"]
    assert not tie.passed and tie.severity is dg.AssetCheckSeverity.WARN
    assert f"stripe_invoice:{held['id']}" in tie.metadata["sources_without_document"].value

    # The accountant adds the CUI; the day is rebuilt: the held invoice gets the next number.
    fixed = cui(7_654_321)
    (tmp_path / "customers.csv").write_text(f"email,cui\noffice@ferme.ro,{fixed}\n")
    sandbox.registry.add_records(
        [{"date_generale": {"cui": int(fixed), "denumire": "FERMELE BARAGANULUI SRL"},
          "inregistrare_scop_Tva": {"scpTVA": True},
          "adresa_sediu_social": {"sdenumire_Strada": "Str. Câmpului", "snumar_Strada": "2",
                                  "sdenumire_Localitate": "Slobozia", "scod_JudetAuto": "IL"}}]
    )  # fmt: skip
    result = materialize(DAY_ASSETS)
    assert result.success

    rows = documents(database)
    number = {r["source_id"]: r["invoice_number"] for r in rows.values()}
    assert number[first["id"]] == f"INV-{year}-000001"
    assert number[last["id"]] == f"INV-{year}-000002"
    assert number[held["id"]] == f"INV-{year}-000003"
    assert number[blocked["id"]] is None
    assert checks(result)["documents_pass_local_rules"].passed


def test_documents_already_with_a_provider_are_never_rebuilt(
    materialize: Materialize, day: Day, database: Path
) -> None:
    alfa = day.company("Alfa Soft S.R.L.", "office@alfa.ro", 1_234_561)
    filed = day.invoice_for(alfa, 9)
    day.invoice_for(alfa, 10)
    build(materialize)
    key = f"stripe_invoice:{filed['id']}"
    with connect(database) as connection:
        connection.execute(
            "UPDATE efactura_documents SET status = 'submitted' WHERE document_id = ?", [key]
        )
    before = documents(database)

    # The series changes for the rebuild: the other document keeps its number, the filed one
    # keeps everything.
    assert materialize(DAY_ASSETS, company=CompanyResource(series="NEW")).success

    after = documents(database)
    assert after[key] == before[key]
    assert len(after) == 2


def test_finalized_invoices_are_documented_when_invoice_on_is_finalized(
    materialize: Materialize, day: Day, database: Path
) -> None:
    alfa = day.company("Alfa Soft S.R.L.", "office@alfa.ro", 1_234_561)
    open_invoice = so.invoice(
        id=day.ids("in"),
        created=at(DAY, 9),
        customer=alfa,
        currency="ron",
        lines=[so.line_item(id=day.ids("il"), invoice="in_x", currency="ron",
                            description="Plan", unit_amount=10_000, quantity=1,
                            price="price_x", product="prod_x", period_start=at(DAY, 9),
                            period_end=at(DAY, 9),
                            taxes=[so.line_tax(amount=2_100, taxable_amount=10_000,
                                               tax_rate="txr")])],
        status="open",
        number="ABC-0001",
        finalized_at=at(DAY, 9, 30),
        due_date=at(DAY + timedelta(days=14), 9),
    )  # fmt: skip
    day.load(open_invoice)
    company = CompanyResource(invoice_on="finalized")
    build(materialize, company=company)

    rows = documents(database)
    row = rows[f"stripe_invoice:{open_invoice['id']}"]
    assert row["status"] == "ready" and row["total"] == Decimal("121.00")
    # Not paid: the document asks for payment by transfer to the company's account.
    assert "RO49AAAA1B31007593840000" in row["xml"]
    assert ">" + (DAY + timedelta(days=14)).isoformat() + "<" in row["xml"]


def test_vat_in_ron_follows_the_bnr_rate_of_the_previous_banking_day(
    materialize: Materialize, day: Day, database: Path
) -> None:
    alfa = day.company("Alfa Soft S.R.L.", "office@alfa.ro", 1_234_561)
    day.invoice_for(alfa, 9, currency="eur")
    build(materialize)

    (row,) = documents(database).values()
    rate = rates_on(previous_banking_day(DAY))["EUR"].rate
    expected = (row["tax_total"] * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert row["tax_total_ron"] == expected
    assert f'<cbc:TaxAmount currencyID="RON">{expected}</cbc:TaxAmount>' in row["xml"]
