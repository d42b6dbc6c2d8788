"""The ANAF registry client against the registry fake, over loopback."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from invoicesync_dagster.clients.anaf_registry import (
    REGISTRY_PATH,
    AnafRegistryClient,
    RegistryBlocked,
    RegistryError,
    RegistryRecord,
    RegistryUnavailable,
)
from invoicesync_dagster.efactura.identifiers import InvalidCui, cui_check_digit
from invoicesync_dagster.sandbox.anaf_registry_fake import (
    TOO_MANY_CUIS_MESSAGE,
    AnafRegistryFake,
    Outcome,
    customer_cuis,
    derive_record,
    load_fixture_file,
    outcome_for_cui,
)
from invoicesync_dagster.sandbox.server import Request, Response, SandboxServer

ON = date(2026, 7, 1)


def cui(body: int) -> str:
    text = str(body)
    return text + str(cui_check_digit(text))


def customer(n: int, tax_id: str | None = None, **metadata: str) -> dict[str, Any]:
    created = 1_780_000_000 + n
    tax_ids = [] if tax_id is None else [
        {"id": f"txi_{n}", "object": "tax_id", "created": created, "type": "eu_vat",
         "value": tax_id}
    ]  # fmt: skip
    return {
        "id": f"cus_{n:05d}",
        "object": "customer",
        "created": created,
        "name": f"Client {n}",
        "metadata": metadata,
        "tax_ids": {"object": "list", "data": tax_ids},
    }


def registry(server: SandboxServer, **options: Any) -> AnafRegistryFake:
    fake = AnafRegistryFake(stripe=server.stripe, **options)
    server.mount(fake)
    return fake


ACME = {
    "date_generale": {
        "cui": 14399840, "denumire": "ACME SOFTWARE SRL", "adresa": "JUD. CLUJ, MUN. CLUJ-NAPOCA",
        "nrRegCom": "J12/1/2013", "telefon": "0264000000", "codPostal": "400335",
        "statusRO_e_Factura": True, "data_inreg_Reg_RO_e_Factura": "2022-01-10",
    },
    "inregistrare_scop_Tva": {"scpTVA": True, "perioade_TVA": [
        {"data_inceput_ScpTVA": "2014-01-09", "data_sfarsit_ScpTVA": "",
         "data_anul_imp_ScpTVA": "", "mesaj_ScpTVA": ""},
        {"data_inceput_ScpTVA": "2010-03-01", "data_sfarsit_ScpTVA": "2012-05-01",
         "data_anul_imp_ScpTVA": "2012-05-01", "mesaj_ScpTVA": ""},
    ]},
    "adresa_sediu_social": {
        "sdenumire_Strada": "Str. Exemplu", "snumar_Strada": "7",
        "sdenumire_Localitate": "Mun. Cluj-Napoca", "sdenumire_Judet": "CLUJ",
        "scod_Judet": "12", "scod_JudetAuto": "CJ", "scod_Postal": "400335",
    },
}  # fmt: skip
DORMANT = {
    "date_generale": {"cui": 4221306, "denumire": "DORMANT SA"},
    "stare_inactiv": {"dataInactivare": "2024-02-01", "statusInactivi": True},
    "adresa_domiciliu_fiscal": {"ddenumire_Localitate": "Sector 3 Mun. Bucureşti",
                                "dcod_JudetAuto": "B"},
}  # fmt: skip


def test_250_cuis_take_three_calls_at_least_a_second_apart(sandbox: SandboxServer) -> None:
    fake = registry(sandbox)
    cuis = [cui(3_000_000 + n) for n in range(250)]
    # Half carry an RO VAT id, half a metadata CUI, as the seeder writes them.
    sandbox.stripe.load(
        customer(n, tax_id=f"RO{c}") if n % 2 else customer(n, cui=c) for n, c in enumerate(cuis)
    )
    with AnafRegistryClient(sandbox.url) as client:
        answer = client.lookup(["RO " + c for c in cuis], ON)

    calls = fake.calls
    assert [c.cui_count for c in calls] == [100, 100, 50]
    assert [c.outcome for c in calls] == ["answered"] * 3
    gaps = [b.monotonic - a.monotonic for a, b in pairwise(calls)]
    assert all(gap >= 1.0 for gap in gaps), gaps
    assert calls[-1].monotonic - calls[0].monotonic >= 2.0
    assert calls[-1].received_at - calls[0].received_at >= 2.0
    expected = Counter(outcome_for_cui(c) for c in cuis)
    assert set(answer.found) | answer.not_found == set(cuis)
    assert len(answer.not_found) == expected[Outcome.NOT_FOUND] > 0
    assert sum(r.inactive for r in answer.found.values()) == expected[Outcome.INACTIVE] > 0
    not_payers = sum(not r.vat_payer and not r.inactive for r in answer.found.values())
    assert not_payers == expected[Outcome.NOT_VAT_PAYER] > 0


def test_found_records_and_not_found_cuis_are_parsed(sandbox: SandboxServer) -> None:
    registry(sandbox, records=[ACME, DORMANT])
    unknown = cui(99_999)
    with AnafRegistryClient(sandbox.url) as client:
        answer = client.lookup(["RO14399840", "4221306", unknown, "RO 14399840"], ON)

    assert answer.not_found == {unknown}
    acme = answer.found["14399840"]
    assert (acme.name, acme.registration_number, acme.phone) == (
        "ACME SOFTWARE SRL", "J12/1/2013", "0264000000",
    )  # fmt: skip
    assert acme.queried_date == ON
    assert acme.vat_payer and not acme.inactive
    assert acme.vat_registered_on == date(2014, 1, 9)  # the open period, not the older one
    assert len(acme.vat_periods) == 2
    assert acme.efactura_registered and acme.efactura_registered_on == date(2022, 1, 10)
    assert (acme.county_code, acme.locality, acme.street, acme.street_number) == (
        "RO-CJ", "Mun. Cluj-Napoca", "Str. Exemplu", "7",
    )  # fmt: skip
    assert acme.raw["date_generale"]["denumire"] == "ACME SOFTWARE SRL"
    # every group is sent, with ANAF's empty values where the fixture said nothing
    assert acme.raw["inregistrare_SplitTVA"] == {
        "dataInceputSplitTVA": "", "dataAnulareSplitTVA": "", "statusSplitTVA": False,
    }  # fmt: skip
    dormant = answer.found["4221306"]
    assert dormant.inactive and dormant.inactive_since == date(2024, 2, 1)
    assert not dormant.vat_payer and dormant.vat_registered_on is None
    # no registered office given: the fiscal domicile gives the county
    assert dormant.county_code == "RO-B"
    assert RegistryRecord.from_v9(dormant.raw) == dormant


@pytest.mark.parametrize("outcome", list(Outcome))
def test_each_derived_outcome_reaches_the_client(sandbox: SandboxServer, outcome: Outcome) -> None:
    registry(sandbox)
    company = cui(7_654_321)
    sandbox.stripe.load([customer(1, tax_id=f"RO{company}", sandbox_registry=outcome.value)])
    with AnafRegistryClient(sandbox.url) as client:
        answer = client.lookup([company], ON)

    if outcome is Outcome.NOT_FOUND:
        assert answer.not_found == {company} and not answer.found
        return
    record = answer.found[company]
    assert record.name == "CLIENT 1 SRL"
    assert record.county_code is not None and record.registration_number.startswith("J")
    assert record.inactive == (outcome is Outcome.INACTIVE)
    assert record.vat_payer == (outcome is Outcome.ACTIVE)
    if outcome is Outcome.ACTIVE:
        assert record.vat_registered_on is not None
    if outcome is Outcome.INACTIVE:
        assert record.inactive_since is not None
        assert record.vat_periods[0].end == record.inactive_since


def test_a_bad_check_digit_is_never_found(sandbox: SandboxServer) -> None:
    registry(sandbox)
    wrong = "12345678"  # check digit should be 4
    sandbox.stripe.load([customer(1, cui=wrong, sandbox_registry="active")])
    with AnafRegistryClient(sandbox.url) as client:
        assert client.lookup([wrong], ON).not_found == {wrong}


def test_the_firewall_page_is_retried_then_succeeds(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake = registry(sandbox, records=[ACME])
    # Someone else on this address asks just before us: our first request is too soon.
    other = httpx.post(sandbox.url + REGISTRY_PATH, json=[{"cui": 1, "data": "2026-07-01"}])
    assert other.json() == {"found": [], "notFound": [1]}
    with caplog.at_level(logging.WARNING), AnafRegistryClient(sandbox.url) as client:
        answer = client.lookup(["14399840"], ON)

    assert answer.found["14399840"].name == "ACME SOFTWARE SRL"
    assert [c.outcome for c in fake.calls] == ["answered", "blocked", "answered"]
    assert "firewall rejected" in caplog.text and "retry 1/3" in caplog.text


def test_the_firewall_page_becomes_registry_blocked(sandbox: SandboxServer) -> None:
    fake = registry(sandbox)
    page = httpx.post(sandbox.url + REGISTRY_PATH, json=[])
    assert page.status_code == 200 and page.json() == {"found": [], "notFound": []}
    client = AnafRegistryClient(sandbox.url, max_retries=0)
    with client, pytest.raises(RegistryBlocked, match=r"support ID \d{19}") as raised:
        client.lookup(["14399840"], ON)
    assert raised.value.support_id is not None and len(raised.value.support_id) == 19
    assert [c.outcome for c in fake.calls] == ["answered", "blocked"]


def test_the_fake_serves_the_firewall_page_as_anaf_does(sandbox: SandboxServer) -> None:
    registry(sandbox)
    url = sandbox.url + REGISTRY_PATH
    httpx.post(url, json=[])
    page = httpx.post(url, json=[])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "The requested URL was rejected" in page.text
    assert "Your support ID is: " in page.text


def test_more_than_100_cuis_get_anafs_error_body(sandbox: SandboxServer) -> None:
    fake = registry(sandbox)
    body = [{"cui": int(cui(10_000 + n)), "data": "2026-07-01"} for n in range(101)]
    answer = httpx.post(sandbox.url + REGISTRY_PATH, json=body)
    assert answer.status_code == 200
    assert answer.json() == {"cod": 400, "message": TOO_MANY_CUIS_MESSAGE}
    assert [(c.cui_count, c.outcome) for c in fake.calls] == [(101, "too_many_cuis")]


def test_a_200_with_an_error_body_is_a_registry_error(sandbox: SandboxServer) -> None:
    fake = registry(sandbox, max_cuis=2)  # a registry stricter than the client's batches
    client = AnafRegistryClient(sandbox.url, batch_size=3)
    with client, pytest.raises(RegistryError, match="maxim 100 de CUI-uri") as raised:
        client.lookup([cui(1), cui(2), cui(3)], ON)
    assert not isinstance(raised.value, RegistryUnavailable | RegistryBlocked)
    assert len(fake.calls) == 1  # not retried: the same request would get the same answer


def test_server_errors_are_retried(sandbox: SandboxServer) -> None:
    fake = registry(sandbox, records=[ACME])
    sandbox.faults.configure({"rules": [{"path_prefix": REGISTRY_PATH, "status": 503, "times": 2}]})
    with AnafRegistryClient(sandbox.url, min_interval_s=0.05, backoff_s=0.05) as client:
        answer = client.lookup(["14399840"], ON)
    assert "14399840" in answer.found
    assert sandbox.requests.count("POST", REGISTRY_PATH) == 3
    assert len(fake.calls) == 1


def test_persistent_server_errors_become_registry_unavailable(sandbox: SandboxServer) -> None:
    registry(sandbox)
    sandbox.faults.configure({"rules": [{"path_prefix": REGISTRY_PATH, "status": 500}]})
    client = AnafRegistryClient(sandbox.url, min_interval_s=0.01, backoff_s=0.01, max_retries=2)
    with client, pytest.raises(RegistryUnavailable, match="HTTP 500"):
        client.lookup(["14399840"], ON)
    assert sandbox.requests.count("POST", REGISTRY_PATH) == 3


def test_connection_refused_is_registry_unavailable(sandbox_factory: Any) -> None:
    stopped = sandbox_factory()
    url = stopped.url
    stopped.stop()
    client = AnafRegistryClient(url, backoff_s=0.01, min_interval_s=0.01, max_retries=1)
    with client, pytest.raises(RegistryUnavailable, match=r"cannot connect.*ANAF_PUBLIC_API_BASE"):
        client.lookup(["14399840"], ON)


class _Canned:
    """A registry answering one canned response, for shapes the fake never sends."""

    def __init__(self, response: Response) -> None:
        self.response = response

    def handle(self, request: Request) -> Response | None:
        return self.response if request.path == "/canned" + REGISTRY_PATH else None

    def reset(self) -> None:
        pass


def test_not_found_objects_and_a_404_with_a_body_are_tolerated(sandbox: SandboxServer) -> None:
    sandbox.mount(
        _Canned(Response.json(404, {"found": [], "notFound": [{"cui": 14399840, "x": 1}]}))
    )
    with AnafRegistryClient(sandbox.url + "/canned") as client:
        assert client.lookup(["14399840"], ON).not_found == {"14399840"}


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (Response(200, b"Service Unavailable", content_type="text/plain"), "not JSON"),
        (Response.json(403, {"error": "forbidden"}), "HTTP 403.*retrying will not help"),
        (Response.json(200, {"cod": 500, "message": "Eroare"}), "error 500: 'Eroare'"),
        (Response.json(200, {"found": [{"date_generale": {}}]}), "without a numeric"),
    ],
)
def test_unusable_answers_are_registry_errors(
    sandbox: SandboxServer, response: Response, problem: str
) -> None:
    sandbox.mount(_Canned(response))
    client = AnafRegistryClient(sandbox.url + "/canned")
    with client, pytest.raises(RegistryError, match=problem) as raised:
        client.lookup(["14399840"], ON)
    assert type(raised.value) is RegistryError
    assert "14399840" in str(raised.value)


def test_a_cui_that_is_not_digits_fails_before_any_request(sandbox: SandboxServer) -> None:
    fake = registry(sandbox)
    with AnafRegistryClient(sandbox.url) as client, pytest.raises(InvalidCui, match="RO12A"):
        client.lookup(["RO12A"], ON)
    assert fake.calls == []


def test_the_fake_refuses_malformed_bodies(sandbox: SandboxServer) -> None:
    registry(sandbox, min_interval_s=0)
    url = sandbox.url + REGISTRY_PATH
    refused = httpx.post(url, json=[{"cui": "RO14399840", "data": "2026-07-01"}])
    assert refused.status_code == 400 and "cui must be a positive number" in refused.text
    refused = httpx.post(url, json=[{"cui": 14399840, "data": "01.07.2026"}])
    assert refused.status_code == 400 and "YYYY-MM-DD" in refused.text
    assert httpx.get(url).status_code == 405


def test_batch_size_cannot_exceed_anafs_limit() -> None:
    with pytest.raises(ValueError, match=r"1\.\.100"):
        AnafRegistryClient("http://127.0.0.1:9", batch_size=101)


def test_derived_records_follow_the_stripe_customer() -> None:
    company = cui(5_550_555)
    buyer = {
        "id": "cus_1", "object": "customer", "created": 1, "name": "Țesătoria Ardeleană S.A.",
        "address": {"line1": "Str. Ștefan cel Mare nr. 12, et. 2", "line2": "Corp B",
                    "city": "Sector 3", "state": "București", "postal_code": "030167",
                    "country": "RO"},
        "metadata": {"cif": f"RO{company}", "reg_com": "J40/1234/2010"},
    }  # fmt: skip
    record = derive_record(company, buyer, ON, Outcome.ACTIVE)
    assert record is not None
    parsed = RegistryRecord.from_v9(record)
    assert parsed.name == "ȚESĂTORIA ARDELEANĂ S.A."  # a legal form already there is kept
    assert parsed.registration_number == "J40/1234/2010"
    office = parsed.registered_office
    assert (office.street, office.number, office.details) == (
        "Str. Ştefan cel Mare", "12", "et. 2, Corp B",
    )  # fmt: skip
    assert (office.locality, office.county_auto, office.county_code) == (
        "Sector 3 Mun. Bucureşti", "B", "40",
    )  # fmt: skip
    assert parsed.county_code == "RO-B" and parsed.postal_code == "030167"
    assert derive_record(company, buyer, ON, Outcome.ACTIVE) == record  # stable across runs


def test_customer_cuis_reads_tax_ids_and_metadata() -> None:
    buyer = customer(1, tax_id="RO 4221306", cif="ro12345674", cui="0008486152")
    buyer["tax_ids"]["data"] += [
        {"type": "ro_tin", "value": "1800101123450"},  # a CNP: a person, not in the registry
        {"type": "ro_tin", "value": "14399840"},
        {"type": "eu_vat", "value": "DE123456789"},
    ]
    assert customer_cuis(buyer) == ["4221306", "14399840", "8486152", "12345674"]


def test_registry_fixture_files_are_completed_or_refused(tmp_path: Path) -> None:
    good = tmp_path / "registry.json"
    good.write_text(json.dumps({"found": [{"date_generale": {"cui": "RO14399840"}}]}))
    (record,) = load_fixture_file(good)
    assert record["date_generale"]["cui"] == 14399840
    assert record["stare_inactiv"]["statusInactivi"] is False
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"date_generale": {"cui": 1}}, {"denumire": "X"}]))
    with pytest.raises(ValueError, match=r"bad.json record #2: .*date_generale"):
        load_fixture_file(bad)


def test_control_endpoints_list_calls_and_load_records(sandbox: SandboxServer) -> None:
    fake = registry(sandbox)
    loaded = httpx.post(sandbox.url + "/_sandbox/anaf-registry/records", json=[ACME])
    assert loaded.json() == {"loaded": 1}
    with AnafRegistryClient(sandbox.url) as client:
        assert "14399840" in client.lookup(["14399840"], ON).found
    calls = httpx.get(sandbox.url + "/_sandbox/anaf-registry/calls").json()["calls"]
    assert [(c["cui_count"], c["outcome"], c["found"]) for c in calls] == [(1, "answered", 1)]
    records = httpx.get(sandbox.url + "/_sandbox/anaf-registry/records?date=2026-07-01").json()
    assert [r["date_generale"]["data"] for r in records["found"]] == ["2026-07-01"]
    sandbox.reset()  # back to the records given at start: none
    assert fake.calls == [] and fake.known_records(ON) == {}
