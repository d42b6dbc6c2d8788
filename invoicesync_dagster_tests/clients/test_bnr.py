"""The BNR client against the BNR fake (and hand-written BNR documents), over loopback."""

from __future__ import annotations

import socket
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from lxml import etree

from invoicesync_dagster.clients.bnr import (
    BnrClient,
    BnrResponseError,
    BnrUnavailable,
    base_url,
    bucharest_today,
)
from invoicesync_dagster.efactura.fx import PublishedRate
from invoicesync_dagster.sandbox.bnr_fake import (
    BUCHAREST,
    CURRENCIES,
    banking_days,
    is_banking_day,
    orthodox_easter,
    public_holidays,
    rates_on,
)
from invoicesync_dagster.sandbox.server import Request, Response, SandboxServer

# Wednesday 11 March 2026 in Bucharest, before and after BNR publishes (~13:00).
MORNING = int(datetime(2026, 3, 11, 10, 0, tzinfo=BUCHAREST).timestamp())
AFTERNOON = int(datetime(2026, 3, 11, 14, 0, tzinfo=BUCHAREST).timestamp())

# A BNR daily file as BNR lays it out (values made up), legacy namespace.
BNR_DAILY = b"""<?xml version="1.0" encoding="utf-8"?>
<DataSet xmlns="http://www.bnr.ro/xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xsi:schemaLocation="http://www.bnr.ro/xsd nbrfxrates.xsd">
\t<Header>
\t\t<Publisher>National Bank of Romania</Publisher>
\t\t<PublishingDate>2025-06-03</PublishingDate>
\t\t<MessageType>DR</MessageType>
\t</Header>
\t<Body>
\t\t<Subject>Reference rates</Subject>
\t\t<OrigCurrency>RON</OrigCurrency>
\t\t<Cube date="2025-06-03">
\t\t\t<Rate currency="EUR">5.0321</Rate>
\t\t\t<Rate currency="HUF" multiplier="100">1.2512</Rate>
\t\t\t<Rate currency="USD">4.4407</Rate>
\t\t\t<Rate currency="XAU">473.5110</Rate>
\t\t</Cube>
\t</Body>
</DataSet>
"""


class Canned:
    """A fake answering one path under /bnr/ with fixed bytes, mounted over the BNR fake."""

    def __init__(self, name: str, body: bytes, status: int = 200, content_type: str = "text/xml"):
        self.path = f"/bnr/{name}"
        self.response = Response(status, body, content_type=content_type)

    def handle(self, request: Request) -> Response | None:
        return self.response if request.path == self.path else None

    def reset(self) -> None:
        pass


def client(server: SandboxServer, **options: object) -> BnrClient:
    return BnrClient(f"{server.url}/bnr/nbrfxrates.xml", backoff_s=0, **options)  # type: ignore[arg-type]


def test_base_url_is_the_folder_of_the_daily_file() -> None:
    assert base_url("https://curs.bnr.ro/nbrfxrates.xml") == "https://curs.bnr.ro/"
    assert base_url("http://127.0.0.1:9/bnr/nbrfxrates.xml") == "http://127.0.0.1:9/bnr/"
    assert base_url("http://127.0.0.1:9/bnr/") == "http://127.0.0.1:9/bnr/"
    with pytest.raises(ValueError, match="BNR_RATES_URL"):
        base_url("curs.bnr.ro/nbrfxrates.xml")


def test_parses_bnr_layout_with_multiplier_and_legacy_namespace(sandbox: SandboxServer) -> None:
    sandbox.mount(Canned("nbrfxrates.xml", BNR_DAILY))
    with client(sandbox) as bnr:
        document = bnr.latest()
    assert document.url == f"{sandbox.url}/bnr/nbrfxrates.xml"
    assert document.publishing_date == date(2025, 6, 3)
    assert document.rates == {
        date(2025, 6, 3): {
            "EUR": PublishedRate(Decimal("5.0321")),
            "HUF": PublishedRate(Decimal("1.2512"), 100),
            "USD": PublishedRate(Decimal("4.4407")),
            "XAU": PublishedRate(Decimal("473.5110")),
        }
    }
    # Kept as published: 4 decimals, no float on the way.
    assert str(document.rates[date(2025, 6, 3)]["XAU"].rate) == "473.5110"


def test_daily_file_follows_the_publishing_hour(sandbox: SandboxServer) -> None:
    with client(sandbox) as bnr:
        sandbox.clock.set(MORNING)
        assert bnr.latest().publishing_date == date(2026, 3, 10)
        sandbox.clock.set(AFTERNOON)
        document = bnr.latest()
    day = date(2026, 3, 11)
    assert document.publishing_date == day
    assert list(document.rates) == [day]
    assert document.rates[day] == rates_on(day)
    assert document.rates[day]["HUF"].multiplier == 100
    assert document.rates[day]["JPY"].multiplier == 100
    assert document.rates[day]["EUR"].multiplier == 1
    assert len(document.rates[day]) == len(CURRENCIES)


def test_ten_days_file_is_the_last_ten_banking_days_newest_first(sandbox: SandboxServer) -> None:
    sandbox.clock.set(AFTERNOON)
    raw = httpx.get(f"{sandbox.url}/bnr/nbrfxrates10days.xml")
    assert raw.headers["content-type"].startswith("text/xml")
    root = etree.fromstring(raw.content)
    wire_dates = [cube.get("date") for cube in root.iter("{https://www.bnr.ro/xsd}Cube")]
    expected = banking_days(date(2026, 2, 20), date(2026, 3, 11))[-10:]
    assert wire_dates == [d.isoformat() for d in reversed(expected)]
    with client(sandbox) as bnr:
        document = bnr.last_10_days()
    assert sorted(document.rates) == expected
    assert document.publishing_date == date(2026, 3, 11)


def test_recent_range_reads_only_the_ten_days_file(sandbox: SandboxServer) -> None:
    sandbox.clock.set(AFTERNOON)
    with client(sandbox) as bnr:
        fetched = bnr.rates_between(date(2026, 3, 1), date(2026, 3, 11), today=date(2026, 3, 11))
    assert sorted(fetched.rates) == banking_days(date(2026, 3, 1), date(2026, 3, 11))
    assert set(fetched.sources.values()) == {f"{sandbox.url}/bnr/nbrfxrates10days.xml"}
    assert sandbox.requests.count("GET", "/bnr/nbrfxrates10days.xml") == 1
    assert sandbox.requests.snapshot()["total"] == 1


def test_old_range_across_new_year_reads_both_archives(sandbox: SandboxServer) -> None:
    sandbox.clock.set(AFTERNOON)
    with client(sandbox) as bnr:
        fetched = bnr.rates_between(date(2024, 12, 20), date(2025, 1, 10), today=date(2026, 3, 11))
    days = sorted(fetched.rates)
    assert days == banking_days(date(2024, 12, 20), date(2025, 1, 10))
    # Christmas, New Year and (from 2024) Epiphany and St John's day have no rates.
    for holiday in (date(2024, 12, 25), date(2024, 12, 26), date(2025, 1, 1), date(2025, 1, 2)):
        assert holiday not in fetched.rates
    assert date(2025, 1, 6) not in fetched.rates and date(2025, 1, 7) not in fetched.rates
    assert date(2024, 12, 31) in fetched.rates and date(2025, 1, 3) in fetched.rates
    assert fetched.sources[date(2024, 12, 31)].endswith("/bnr/files/xml/years/nbrfxrates2024.xml")
    assert fetched.sources[date(2025, 1, 3)].endswith("/bnr/files/xml/years/nbrfxrates2025.xml")
    assert fetched.rates[date(2025, 1, 3)] == rates_on(date(2025, 1, 3))
    assert sandbox.requests.count("GET", "/bnr/nbrfxrates10days.xml") == 0


def test_range_reaching_past_the_ten_days_file_completes_from_the_archive(
    sandbox: SandboxServer,
) -> None:
    sandbox.clock.set(AFTERNOON)
    with client(sandbox) as bnr:
        fetched = bnr.rates_between(date(2026, 2, 16), date(2026, 3, 11), today=date(2026, 3, 11))
    assert sorted(fetched.rates) == banking_days(date(2026, 2, 16), date(2026, 3, 11))
    ten_days = f"{sandbox.url}/bnr/nbrfxrates10days.xml"
    assert fetched.sources[date(2026, 3, 11)] == ten_days  # today: not in the archive yet
    assert fetched.sources[date(2026, 2, 16)].endswith("nbrfxrates2026.xml")
    assert fetched.urls[0] == ten_days


def test_year_archive_covers_every_banking_day_and_both_path_spellings(
    sandbox: SandboxServer,
) -> None:
    sandbox.clock.set(AFTERNOON)
    with client(sandbox) as bnr:
        year = bnr.year(2025)
    assert sorted(year.rates) == banking_days(date(2025, 1, 1), date(2025, 12, 31))
    assert len(year.rates) == 248  # 261 weekdays - 13 holidays on weekdays
    official = httpx.get(f"{sandbox.url}/bnr/files/xml/years/nbrfxrates2025.xml").content
    contract = httpx.get(f"{sandbox.url}/bnr/files/xml/years/nbrfx2025.xml").content
    assert official == contract
    assert b'xmlns="http://www.bnr.ro/xsd"' in official
    # The current year's archive ends the day before today (regenerated once a day).
    current = httpx.get(f"{sandbox.url}/bnr/files/xml/years/nbrfxrates2026.xml").text
    assert '<Cube date="2026-03-10">' in current and "2026-03-11" not in current


def test_fake_rates_are_deterministic_and_realistic(sandbox: SandboxServer) -> None:
    sandbox.clock.set(AFTERNOON)
    body = httpx.get(f"{sandbox.url}/bnr/files/xml/years/nbrfxrates2025.xml").content
    again = httpx.get(f"{sandbox.url}/bnr/files/xml/years/nbrfxrates2025.xml").content
    assert body == again
    with client(sandbox) as bnr:
        year = bnr.year(2025)
    bands = {code: (Decimal(low), Decimal(high)) for code, _, low, high in CURRENCIES}
    for by_currency in year.rates.values():
        for code, published in by_currency.items():
            low, high = bands[code]
            assert low <= published.rate <= high, (code, published)
            assert published.rate.as_tuple().exponent == -4
    eur = [by_currency["EUR"].rate for _, by_currency in sorted(year.rates.items())]
    assert len(set(eur)) > 100  # it moves...
    assert max(abs(a - b) for a, b in pairwise(eur)) < Decimal("0.02")  # slowly


def test_orthodox_easter_and_movable_holidays() -> None:
    assert orthodox_easter(2024) == date(2024, 5, 5)
    assert orthodox_easter(2025) == date(2025, 4, 20)
    assert orthodox_easter(2026) == date(2026, 4, 12)
    holidays = public_holidays(2025)
    for day in (date(2025, 4, 18), date(2025, 4, 21), date(2025, 6, 9), date(2025, 1, 24)):
        assert day in holidays and not is_banking_day(day)  # Good Friday, Easter/Pentecost Mon
    assert date(2023, 1, 6) not in public_holidays(2023)  # Epiphany is a holiday from 2024
    assert is_banking_day(date(2025, 4, 17))
    assert not is_banking_day(date(2025, 4, 19))  # Saturday


def test_unknown_year_is_a_404_naming_url_and_setting(sandbox: SandboxServer) -> None:
    with client(sandbox) as bnr, pytest.raises(BnrResponseError) as error:
        bnr.year(2099)
    message = str(error.value)
    assert f"{sandbox.url}/bnr/files/xml/years/nbrfxrates2099.xml" in message
    assert "HTTP 404" in message and "BNR_RATES_URL" in message


def test_html_instead_of_xml_is_refused(sandbox: SandboxServer) -> None:
    sandbox.mount(Canned("nbrfxrates.xml", b"<html><body>Maintenance</body></html>"))
    with client(sandbox) as bnr, pytest.raises(BnrResponseError, match="not a BNR DataSet"):
        bnr.latest()
    sandbox.mount(Canned("nbrfxrates.xml", b"Service temporarily down", content_type="text/plain"))
    with client(sandbox) as bnr, pytest.raises(BnrResponseError, match="not XML"):
        bnr.latest()


def test_a_rate_that_is_not_a_number_names_the_element(sandbox: SandboxServer) -> None:
    sandbox.mount(Canned("nbrfxrates.xml", BNR_DAILY.replace(b">4.4407<", b">n/a<")))
    with client(sandbox) as bnr, pytest.raises(BnrResponseError) as error:
        bnr.latest()
    assert "Cube[@date=2025-06-03]/Rate[@currency=USD]" in str(error.value)
    assert "'n/a'" in str(error.value)


def test_server_errors_are_retried_then_reported(sandbox: SandboxServer) -> None:
    sandbox.faults.configure({"rules": [{"path_prefix": "/bnr/", "status": 503, "times": 2}]})
    with client(sandbox, max_retries=2) as bnr:
        assert bnr.latest().rates
    assert sandbox.requests.count("GET", "/bnr/nbrfxrates.xml") == 3

    sandbox.faults.configure({"rules": [{"path_prefix": "/bnr/", "status": 503}]})
    with client(sandbox, max_retries=1) as bnr, pytest.raises(BnrUnavailable) as error:
        bnr.latest()
    assert f"GET {sandbox.url}/bnr/nbrfxrates.xml: HTTP 503" in str(error.value)


def test_unreachable_host_is_unavailable_and_names_the_setting() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bnr = BnrClient(f"http://127.0.0.1:{port}/nbrfxrates.xml", max_retries=0)
    with bnr, pytest.raises(BnrUnavailable, match=r"cannot connect .*BNR_RATES_URL"):
        bnr.latest()


def _xxe_document(system_id: str, rate_text: str = "&xxe;") -> bytes:
    return (
        b'<?xml version="1.0" encoding="utf-8"?>\n'
        + f'<!DOCTYPE DataSet [<!ENTITY xxe SYSTEM "{system_id}">]>\n'.encode()
        + BNR_DAILY.split(b"?>\n", 1)[1].replace(b">4.4407<", f">{rate_text}<".encode())
    )


def test_external_entity_in_a_served_document_is_not_resolved(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    # If the parser read the file, USD would parse as 4.9999 and the document would be accepted.
    secret = tmp_path / "secret.txt"
    secret.write_text("4.9999")
    sandbox.mount(Canned("nbrfxrates.xml", _xxe_document(secret.as_uri())))
    with client(sandbox) as bnr, pytest.raises(BnrResponseError) as error:
        bnr.latest()
    assert "Rate[@currency=USD]" in str(error.value)
    assert "4.9999" not in str(error.value)


def test_external_entity_never_reaches_the_network(sandbox: SandboxServer) -> None:
    leak = f"{sandbox.url}/bnr/leak"
    sandbox.mount(Canned("nbrfxrates.xml", _xxe_document(leak)))
    with client(sandbox) as bnr, pytest.raises(BnrResponseError):
        bnr.latest()
    assert sandbox.requests.count("GET", "/bnr/leak") == 0
    assert sandbox.requests.count("GET", "/bnr/nbrfxrates.xml") == 1


def test_default_today_is_bucharest() -> None:
    today = bucharest_today()
    assert abs(today - date.today()) <= timedelta(days=1)
