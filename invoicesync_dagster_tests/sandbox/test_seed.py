"""The seeder: deterministic, realistic, consistent, and in the state "as of the range end"."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe

from invoicesync_dagster.efactura.counties import COUNTY_NAMES
from invoicesync_dagster.efactura.identifiers import is_valid_cnp, is_valid_cui, is_valid_eu_vat
from invoicesync_dagster.sandbox import seed
from invoicesync_dagster.sandbox.server import SandboxServer

Obj = dict[str, Any]
END = date(2025, 8, 7)  # a 14-day seed ending here spans the VAT change of 2025-08-01
DELIBERATELY_INVALID_CUI = {"Ionescu & Asociații S.R.L.", "Grădina cu Meri S.R.L."}
WITHOUT_CUI = "Fermele Bărăganului S.R.L."
RO_VAT_21_FROM = date(2025, 8, 1)  # Romanian standard VAT: 19 % until 31 July 2025, then 21 %


@pytest.fixture(scope="module")
def fortnight() -> list[Obj]:
    return list(seed.generate(14, end_date=END))


def by_type(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["object"] == kind]


def events(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["object"] == "event" and o["type"] == kind]


def bucharest_day(timestamp: int) -> date:
    return datetime.fromtimestamp(timestamp, seed.BUCHAREST).date()


def customer_cui(customer: Obj) -> str | None:
    for tax_id in customer["tax_ids"]["data"]:
        if tax_id["type"] == "eu_vat" and tax_id["value"].startswith("RO"):
            return tax_id["value"]
    return customer["metadata"].get("cui") or customer["metadata"].get("cif")


def cnp_is_valid(cnp: str) -> bool:
    """Checked here independently of the seeder (EFACTURA.md §5)."""
    if len(cnp) != 13 or not cnp.isdigit() or cnp[0] == "0":
        return False
    check = sum(int(d) * int(k) for d, k in zip(cnp, "279146358279", strict=False)) % 11
    return int(cnp[12]) == (1 if check == 10 else check)


# --- determinism and range --------------------------------------------------------------------


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    counts = seed.write_jsonl(first, seed.generate(3, seed=11, end_date=END))
    assert seed.write_jsonl(second, seed.generate(3, seed=11, end_date=END)) == counts
    assert first.read_bytes() == second.read_bytes()
    seed.write_jsonl(other, seed.generate(3, seed=12, end_date=END))
    assert other.read_bytes() != first.read_bytes()


def test_jsonl_is_one_utf8_object_per_line_with_counts(tmp_path: Path) -> None:
    path = tmp_path / "stripe.jsonl"
    counts = seed.write_jsonl(path, seed.generate(2, end_date=END))
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert Counter(json.loads(line)["object"] for line in lines) == counts
    assert "ă" in text and "\\u" not in text  # diacritics written as UTF-8, not escaped
    assert sum(counts.values()) == len(lines)
    assert not list(tmp_path.glob("*.partial"))


def test_default_range_ends_yesterday_in_bucharest() -> None:
    before = seed.yesterday_in_bucharest()
    objects = list(seed.generate(2, invoices_per_day=5, charges_per_day=2))
    after = seed.yesterday_in_bucharest()
    days = {bucharest_day(o["created"]) for o in by_type(objects, "invoice")}
    # The clock may pass midnight during the test: accept either reading of "yesterday".
    assert days in ({before - timedelta(days=1), before}, {after - timedelta(days=1), after})


def test_nothing_is_created_after_the_range_end(fortnight: list[Obj]) -> None:
    end = seed.day_start(END + timedelta(days=1))
    assert max(o.get("created", 0) for o in fortnight) < end
    assert max(o["created"] for o in by_type(fortnight, "event")) < end
    for invoice in by_type(fortnight, "invoice"):
        assert all(t is None or t < end for t in invoice["status_transitions"].values())


def test_range_covers_the_days_and_objects_come_in_creation_order(fortnight: list[Obj]) -> None:
    dated = [o for o in fortnight if o["object"] not in ("tax_rate", "coupon", "discount")]
    created = [o["created"] for o in dated]
    assert created == sorted(created)
    days = {bucharest_day(o["created"]) for o in by_type(fortnight, "invoice")}
    assert days == {END - timedelta(days=n) for n in range(14)}


def test_a_later_end_keeps_earlier_objects_and_shows_their_later_state() -> None:
    short = {o["id"]: o for o in seed.generate(1, end_date=END)}
    longer = {o["id"]: o for o in seed.generate(4, end_date=END + timedelta(days=3))}
    invoices = [o for o in short.values() if o["object"] == "invoice"]
    assert invoices and all(o["id"] in longer for o in invoices)
    paid_later = [
        o for o in invoices if o["status"] == "open" and longer[o["id"]]["status"] == "paid"
    ]
    assert paid_later, "an invoice open on day D should be paid by D+3"
    for invoice in paid_later:
        paid_events = [
            e for e in events(list(short.values()), "invoice.paid")
            if e["data"]["object"]["id"] == invoice["id"]
        ]  # fmt: skip
        assert paid_events == [] and invoice["amount_paid"] == 0
        assert invoice["payments"]["data"] == []
        assert longer[invoice["id"]]["amount_paid"] == invoice["total"]


# --- consistency ------------------------------------------------------------------------------


def test_cuis_are_valid_except_the_deliberately_invalid_ones(fortnight: list[Obj]) -> None:
    assert is_valid_cui("RO4221306") and not is_valid_cui("12345678")
    invalid, without, romanian_companies = set(), set(), 0
    for customer in by_type(fortnight, "customer"):
        cui = customer_cui(customer)
        if cui is not None and not is_valid_cui(cui):
            invalid.add(customer["name"])
        if customer["address"]["country"] == "RO" and "cnp" not in customer["metadata"]:
            is_company = any(form in customer["name"] for form in ("S.R.L", "SRL", "S.A."))
            romanian_companies += is_company
            if is_company and cui is None:
                without.add(customer["name"])
    assert invalid == DELIBERATELY_INVALID_CUI
    bad_vat = {
        c["name"] for c in by_type(fortnight, "customer") for t in c["tax_ids"]["data"]
        if t["type"] == "eu_vat" and not is_valid_eu_vat(t["value"])
    }  # fmt: skip
    assert bad_vat < DELIBERATELY_INVALID_CUI and bad_vat
    assert without == {WITHOUT_CUI}
    assert romanian_companies >= 10


def test_cnps_are_valid(fortnight: list[Obj]) -> None:
    cnps = [c["metadata"]["cnp"] for c in by_type(fortnight, "customer") if "cnp" in c["metadata"]]
    assert len(cnps) >= 2
    assert all(cnp_is_valid(cnp) and is_valid_cnp(cnp) for cnp in cnps), cnps
    assert not cnp_is_valid("1800101123456") and cnp_is_valid("1800101123450")


def test_romanian_addresses_give_an_iso_county(fortnight: list[Obj]) -> None:
    by_name = {name: code for code, name in COUNTY_NAMES.items()}
    states = Counter()
    for customer in by_type(fortnight, "customer"):
        address = customer["address"]
        if address["country"] != "RO":
            continue
        state = address["state"]
        code = by_name.get(state) or f"RO-{state}"
        assert code in COUNTY_NAMES, state
        states["name" if state in by_name else "code"] += 1
        if code == "RO-B":
            assert address["city"] in {f"Sector {n}" for n in range(1, 7)}
        assert len(address["postal_code"]) == 6 and address["postal_code"].isdigit()
    assert states["name"] and states["code"]


def test_invoice_totals_tie(fortnight: list[Obj]) -> None:
    for inv in by_type(fortnight, "invoice"):
        lines = inv["lines"]["data"]
        assert not inv["lines"]["has_more"] and 1 <= len(lines) <= 6
        line_discounts = sum(d["amount"] for line in lines for d in line["discount_amounts"])
        line_taxes = sum(t["amount"] for line in lines for t in line["taxes"])
        for line in lines:
            unit = int(line["pricing"]["unit_amount_decimal"])
            assert line["amount"] == unit * line["quantity"] == line["subtotal"]
            assert line["currency"] == inv["currency"]
            for tax in line["taxes"]:
                discounts = sum(d["amount"] for d in line["discount_amounts"])
                assert tax["taxable_amount"] == line["amount"] - discounts
        assert inv["subtotal"] == sum(line["amount"] for line in lines)
        assert inv["subtotal_excluding_tax"] == inv["subtotal"]
        assert sum(d["amount"] for d in inv["total_discount_amounts"]) == line_discounts
        assert sum(t["amount"] for t in inv["total_taxes"]) == line_taxes
        assert inv["total_excluding_tax"] == inv["subtotal"] - line_discounts
        assert inv["total"] == inv["subtotal"] - line_discounts + line_taxes
        assert inv["amount_due"] == inv["total"]
        assert inv["amount_paid"] == (inv["total"] if inv["status"] == "paid" else 0)
        assert inv["amount_remaining"] == inv["amount_due"] - inv["amount_paid"]
        assert (inv["number"] is None) == (inv["status"] == "draft")
        assert set(inv["discounts"]) == {d["discount"] for d in inv["total_discount_amounts"]}


def test_vat_rates_follow_the_date_and_the_customer(fortnight: list[Obj]) -> None:
    rates = {r["id"]: r for r in by_type(fortnight, "tax_rate")}
    for inv in by_type(fortnight, "invoice"):
        taxes = [t for line in inv["lines"]["data"] for t in line["taxes"]]
        country = inv["customer_address"]["country"]
        if country == "RO":
            if not inv["automatic_tax"]["enabled"]:
                assert taxes == []
                continue
            expected = 21 if bucharest_day(inv["created"]) >= RO_VAT_21_FROM else 19
            for tax in taxes:
                rate = rates[tax["tax_rate_details"]["tax_rate"]]
                assert (rate["percentage"], tax["taxability_reason"]) == (
                    expected,
                    "standard_rated",
                )
                assert tax["amount"] == (tax["taxable_amount"] * expected + 50) // 100
        else:
            reason = (
                "reverse_charge" if inv["customer_tax_exempt"] == "reverse" else "customer_exempt"
            )
            assert taxes and all(
                t["amount"] == 0 and t["taxability_reason"] == reason for t in taxes
            )


def test_paid_invoices_have_their_payment_intent_and_charge(fortnight: list[Obj]) -> None:
    intents = {o["id"]: o for o in by_type(fortnight, "payment_intent")}
    charges = {o["payment_intent"]: o for o in by_type(fortnight, "charge")}
    for inv in by_type(fortnight, "invoice"):
        payments = inv["payments"]["data"]
        if inv["status"] != "paid":
            assert all(p["status"] != "paid" for p in payments)
            continue
        (payment,) = payments
        assert payment["status"] == "paid" and payment["invoice"] == inv["id"]
        assert payment["amount_paid"] == inv["amount_paid"] == inv["total"]
        intent = intents[payment["payment"]["payment_intent"]]
        charge = charges[intent["id"]]
        assert intent["status"] == "succeeded" and intent["amount_received"] == inv["total"]
        assert intent["latest_charge"] == charge["id"]
        assert (charge["status"], charge["paid"], charge["amount"]) == (
            "succeeded",
            True,
            inv["total"],
        )
        assert charge["customer"] == inv["customer"] and charge["currency"] == inv["currency"]
        assert charge["created"] == inv["status_transitions"]["paid_at"]


def test_refunds_never_exceed_their_charge(fortnight: list[Obj]) -> None:
    refunded: dict[str, int] = defaultdict(int)
    for refund in by_type(fortnight, "refund"):
        refunded[refund["charge"]] += refund["amount"]
        assert refund["amount"] > 0 and refund["status"] == "succeeded"
    for charge in by_type(fortnight, "charge"):
        total = refunded.get(charge["id"], 0)
        assert total <= charge["amount"]
        assert charge["amount_refunded"] == total
        assert charge["refunded"] == (total == charge["amount"])
    assert refunded, "the seed has refunds"


def test_events_match_the_final_state(fortnight: list[Obj]) -> None:
    final = {o["id"]: o for o in fortnight if o["object"] != "event"}
    changes: dict[str, list[Obj]] = defaultdict(list)
    for event in by_type(fortnight, "event"):
        snapshot = event["data"]["object"]
        assert snapshot["id"] in final, event["type"]
        assert event["api_version"] == stripe.api_version
        changes[snapshot["id"]].append(event)
    for inv in by_type(fortnight, "invoice"):
        kinds = [e["type"] for e in changes[inv["id"]]]
        assert ("invoice.finalized" in kinds) == (inv["status"] != "draft")
        assert ("invoice.paid" in kinds) == (inv["status"] == "paid")
        assert ("invoice.voided" in kinds) == (inv["status"] == "void")
        assert ("invoice.marked_uncollectible" in kinds) == (inv["status"] == "uncollectible")
        if kinds:
            latest = changes[inv["id"]][-1]["data"]["object"]
            assert (latest["status"], latest["amount_paid"]) == (inv["status"], inv["amount_paid"])
    for charge in by_type(fortnight, "charge"):
        history = changes[charge["id"]]
        assert history[0]["type"] == "charge.succeeded"
        assert history[0]["data"]["object"]["amount_refunded"] == 0
        assert history[-1]["data"]["object"] == charge
    for note in by_type(fortnight, "credit_note"):
        (created,) = changes[note["id"]]
        assert created["type"] == "credit_note.created" and created["data"]["object"] == note


def test_credit_notes_credit_paid_invoices(fortnight: list[Obj]) -> None:
    invoices = {o["id"]: o for o in by_type(fortnight, "invoice")}
    refunds = {o["id"]: o for o in by_type(fortnight, "refund")}
    notes = by_type(fortnight, "credit_note")
    assert notes
    for note in notes:
        inv = invoices[note["invoice"]]
        assert inv["status"] == "paid" and note["type"] == "post_payment"
        assert note["number"].startswith(inv["number"] + "-CN-")
        assert (
            note["total"]
            == note["amount"]
            == (
                note["subtotal"]
                - note["discount_amount"]
                + sum(t["amount"] for t in note["total_taxes"])
            )
        )
        assert 0 < note["total"] <= inv["total"]
        assert inv["post_payment_credit_notes_amount"] >= note["total"]
        if note["refunds"]:
            assert refunds[note["refunds"][0]["refund"]]["amount"] == note["total"]
        else:
            assert note["out_of_band_amount"] == note["total"]


# --- coverage ---------------------------------------------------------------------------------


def situations(objects: list[Obj]) -> set[str]:
    """Every situation the seed promises, found in the data."""
    found: set[str] = set()
    add = found.add
    customers = by_type(objects, "customer")
    for c in customers:
        country, meta = c["address"]["country"], c["metadata"]
        types = {t["type"] for t in c["tax_ids"]["data"]}
        if country == "RO":
            if any(t["value"].startswith("RO") for t in c["tax_ids"]["data"]):
                add("ro_company_eu_vat")
            for key in ("cui", "cif", "cnp"):
                if key in meta:
                    add(f"ro_metadata_{key}")
            if c["address"]["city"].startswith("Sector "):
                add("bucharest_sector")
            if c["name"] == WITHOUT_CUI:
                add("ro_company_without_cui")
            if not meta.get("cnp") and not any(f in c["name"] for f in ("S.R.L", "SRL", "S.A.")):
                add("ro_person_without_cnp")
        elif "eu_vat" in types and c["tax_exempt"] == "reverse":
            add(f"eu_business_{country}")
        elif c["tax_exempt"] == "exempt":
            add(f"non_eu_{country}")
        for text in (c["name"], c["address"]["line1"]):
            if any(ch in text for ch in "șțăîâȘȚĂÎÂ"):
                add("diacritics")
            for ch, label in (("&", "amp"), ("<", "lt"), ('"', "quot"), ("'", "apos")):
                if ch in text:
                    add(f"xml_{label}")
        if c["name"] in DELIBERATELY_INVALID_CUI:
            add("invalid_cui")
    rates = {r["id"]: r["percentage"] for r in by_type(objects, "tax_rate")}
    coupons = {c["id"]: c for c in by_type(objects, "coupon")}
    discounts = {d["id"]: coupons[d["source"]["coupon"]] for d in by_type(objects, "discount")}
    for inv in by_type(objects, "invoice"):
        add(f"currency_{inv['currency']}")
        add(f"status_{inv['status']}")
        lines = inv["lines"]["data"]
        add("multi_line" if len(lines) > 1 else "single_line")
        if len(lines) == 6:
            add("six_lines")
        if any(len(line["description"]) > 100 for line in lines):
            add("long_product_name")
        if not inv["automatic_tax"]["enabled"]:
            add("no_stripe_tax")
        for line in lines:
            for tax in line["taxes"]:
                rate = rates[tax["tax_rate_details"]["tax_rate"]]
                add(f"vat_{tax['taxability_reason']}_{rate:g}")
        for d in inv["discounts"]:
            add("discount_percent" if discounts[d]["percent_off"] else "discount_amount")
        paid_at = inv["status_transitions"]["paid_at"]
        if paid_at:
            lag = (bucharest_day(paid_at) - bucharest_day(inv["created"])).days
            add("paid_same_day" if lag == 0 else f"paid_{min(lag, 5)}_days_later")
    paid_intents = {
        p["payment"]["payment_intent"] for inv in by_type(objects, "invoice")
        for p in inv["payments"]["data"]
    }  # fmt: skip
    for charge in by_type(objects, "charge"):
        if charge["payment_intent"] not in paid_intents:
            add("one_off_charge")
            add(
                "one_off_charge_without_customer"
                if charge["customer"] is None
                else "one_off_charge_of_customer"
            )
        if charge["refunded"]:
            add("full_refund")
        elif charge["amount_refunded"]:
            add("partial_refund")
    notes = by_type(objects, "credit_note")
    if any(n["refunds"] for n in notes):
        add("credit_note_refunded")
    if any(n["out_of_band_amount"] for n in notes):
        add("credit_note_out_of_band")
    for kind in seed_event_types(objects):
        add(kind)
    return found


def seed_event_types(objects: list[Obj]) -> set[str]:
    return {e["type"] for e in by_type(objects, "event")}


EXPECTED_SITUATIONS = {
    "ro_company_eu_vat", "ro_metadata_cui", "ro_metadata_cif", "ro_metadata_cnp",
    "ro_person_without_cnp", "ro_company_without_cui", "invalid_cui", "bucharest_sector",
    "eu_business_DE", "eu_business_FR", "eu_business_IT", "eu_business_NL",
    "non_eu_US", "non_eu_GB", "non_eu_CH",
    "diacritics", "xml_amp", "xml_lt", "xml_quot", "xml_apos",
    "currency_ron", "currency_eur", "currency_usd",
    "status_draft", "status_open", "status_paid", "status_void", "status_uncollectible",
    "single_line", "multi_line", "long_product_name",
    "vat_standard_rated_19", "vat_standard_rated_21", "vat_reverse_charge_0",
    "vat_customer_exempt_0", "no_stripe_tax", "discount_percent", "discount_amount",
    "paid_same_day", "paid_1_days_later", "paid_2_days_later", "paid_3_days_later",
    "one_off_charge", "one_off_charge_without_customer", "one_off_charge_of_customer",
    "partial_refund", "full_refund", "credit_note_refunded", "credit_note_out_of_band",
    "invoice.finalized", "invoice.paid", "invoice.voided", "invoice.marked_uncollectible",
    "charge.succeeded", "charge.refunded", "credit_note.created",
}  # fmt: skip


def test_every_situation_appears_in_a_fortnight(fortnight: list[Obj]) -> None:
    assert EXPECTED_SITUATIONS - situations(fortnight) == set()


@pytest.mark.parametrize("seed_value", [1, 2024])
def test_every_situation_appears_whatever_the_seed(seed_value: int) -> None:
    objects = list(seed.generate(14, seed=seed_value, end_date=END))
    assert EXPECTED_SITUATIONS - situations(objects) == set()


# --- against the sandbox ----------------------------------------------------------------------


def test_the_sandbox_serves_the_seed_as_written(
    tmp_path: Path, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    fixtures = tmp_path / "stripe.jsonl"
    seed.write_jsonl(fixtures, seed.generate(2, invoices_per_day=15, charges_per_day=5))
    written = [json.loads(line) for line in fixtures.read_text(encoding="utf-8").splitlines()]
    server = sandbox_factory(stripe_fixtures=fixtures)
    client = stripe.StripeClient("sk_test_sandbox", base_addresses={"api": server.url})

    invoices = [
        i.to_dict(for_json=True)
        for i in client.v1.invoices.list(params={"limit": 100}).auto_paging_iter()
    ]
    assert invoices == sorted(by_type(written, "invoice"), key=lambda o: -o["created"])
    charges = [
        c.to_dict(for_json=True)
        for c in client.v1.charges.list(params={"limit": 100}).auto_paging_iter()
    ]
    assert {c["id"]: c for c in charges} == {c["id"]: c for c in by_type(written, "charge")}
    customer = next(c for c in by_type(written, "customer") if c["tax_ids"]["data"])
    fetched = client.v1.customers.retrieve(customer["id"], params={"expand": ["tax_ids"]})
    assert fetched.to_dict() == customer
