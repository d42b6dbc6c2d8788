"""A fake of BNR's exchange-rate files, in BNR's own XML format, mounted under `/bnr/`.

Paths (relative to the mount, as on `https://curs.bnr.ro/`):

- `nbrfxrates.xml`: the latest published banking day;
- `nbrfxrates10days.xml`: the last ten published banking days, newest first;
- `files/xml/years/nbrfxratesYYYY.xml` (BNR's name) and `files/xml/years/nbrfxYYYY.xml` (the
  name ARCHITECTURE.md §3 gives): every banking day of year YYYY, oldest first, from 2005 to the
  current year; the current year's file stops the day before today, as BNR's (regenerated once a
  day) does. Other years, and paths the fake does not know, answer BNR-style HTML 404s.

Rates exist for every banking day of any year: Monday to Friday except Romanian public holidays
(Codul muncii art. 139), with the years they became holidays: 1-2 Jan, 6-7 Jan (from 2024),
24 Jan (from 2017), Orthodox Good Friday (from 2018), Easter Sunday and Monday, 1 May, 1 Jun
(from 2017), Orthodox Pentecost Sunday and Monday, 15 Aug, 30 Nov (from 2012), 1 Dec, 25-26 Dec.
Orthodox Easter comes from Meeus's Julian algorithm (valid 1900-2099). One-off holidays decreed
for a single year and bridge days are not covered.

BNR publishes day D's rates at ~13:00 Bucharest time on D; the fake does so at exactly 13:00 by
the sandbox clock (`POST /_sandbox/clock` pins it). A rate is a deterministic function of
currency and day: a slow drift between weekly-ish anchor points drawn from a hash, plus a small
daily wobble, kept within a realistic band (EUR 4.97-5.10, USD 4.30-4.90, ...), 4 decimals.

The namespace is `http://www.bnr.ro/xsd` in the year archives up to 2025 and
`https://www.bnr.ro/xsd` in the current files and later archives, as public clients report
BNR serving them.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from invoicesync_dagster.efactura.fx import PublishedRate
from invoicesync_dagster.sandbox.http import Clock, Request, Response

PREFIX = "/bnr/"
BUCHAREST = ZoneInfo("Europe/Bucharest")
PUBLISHING_HOUR = 13
FIRST_YEAR = 2005
LEGACY_NAMESPACE_UNTIL = 2025  # year archives up to this year declare the http:// namespace
_YEAR_PATH = re.compile(r"files/xml/years/nbrfx(?:rates)?(\d{4})\.xml")
_XML = "text/xml"

# (currency, multiplier, low, high): RON per `multiplier` units, realistic for 2024-2026.
CURRENCIES: tuple[tuple[str, int, str, str], ...] = (
    ("AED", 1, "1.1700", "1.3300"),
    ("AUD", 1, "2.8500", "3.1000"),
    ("BGN", 1, "2.5400", "2.6100"),
    ("BRL", 1, "0.7500", "0.9000"),
    ("CAD", 1, "3.1000", "3.4000"),
    ("CHF", 1, "5.0000", "5.6000"),
    ("CNY", 1, "0.6000", "0.6700"),
    ("CZK", 1, "0.1950", "0.2060"),
    ("DKK", 1, "0.6650", "0.6840"),
    ("EGP", 1, "0.0850", "0.1000"),
    ("EUR", 1, "4.9700", "5.1000"),
    ("GBP", 1, "5.7000", "6.0500"),
    ("HUF", 100, "1.2000", "1.3500"),
    ("INR", 1, "0.0500", "0.0560"),
    ("JPY", 100, "2.8000", "3.2000"),
    ("KRW", 100, "0.3100", "0.3500"),
    ("MDL", 1, "0.2500", "0.2700"),
    ("MXN", 1, "0.2200", "0.2600"),
    ("NOK", 1, "0.4000", "0.4500"),
    ("NZD", 1, "2.5500", "2.8000"),
    ("PLN", 1, "1.1300", "1.2000"),
    ("RSD", 1, "0.0424", "0.0436"),
    ("SEK", 1, "0.4200", "0.4700"),
    ("THB", 1, "0.1250", "0.1350"),
    ("TRY", 1, "0.1000", "0.1500"),
    ("UAH", 1, "0.1000", "0.1200"),
    ("USD", 1, "4.3000", "4.9000"),
    ("XAU", 1, "380.0000", "560.0000"),  # RON per gram of gold
    ("XDR", 1, "5.9000", "6.3000"),
    ("ZAR", 1, "0.2300", "0.2600"),
)
_ANCHOR_DAYS = 30  # a new drift anchor every this many days
_FOUR_PLACES = Decimal("0.0001")


# -- the calendar ---------------------------------------------------------------------------------


def orthodox_easter(year: int) -> date:
    """Orthodox Easter Sunday (Gregorian date), Meeus's Julian algorithm; 1900-2099."""
    a, b, c = year % 4, year % 7, year % 19
    d = (19 * c + 15) % 30
    e = (2 * a + 4 * b - d + 34) % 7
    month, day = divmod(d + e + 114, 31)
    return date(year, month, day + 1) + timedelta(days=13)  # Julian → Gregorian


@lru_cache(maxsize=256)
def public_holidays(year: int) -> frozenset[date]:
    """Romania's legal public holidays of `year` (see the module docstring for what is covered)."""
    easter = orthodox_easter(year)
    pentecost = easter + timedelta(days=49)
    days = {
        date(year, 1, 1),
        date(year, 1, 2),
        easter,
        easter + timedelta(days=1),
        date(year, 5, 1),
        pentecost,
        pentecost + timedelta(days=1),
        date(year, 8, 15),
        date(year, 12, 1),
        date(year, 12, 25),
        date(year, 12, 26),
    }
    since = {
        date(year, 1, 6): 2024,
        date(year, 1, 7): 2024,
        date(year, 1, 24): 2017,
        easter - timedelta(days=2): 2018,
        date(year, 6, 1): 2017,
        date(year, 11, 30): 2012,
    }
    days.update(day for day, first in since.items() if year >= first)
    return frozenset(days)


def is_banking_day(day: date) -> bool:
    return day.weekday() < 5 and day not in public_holidays(day.year)


def banking_days(start: date, end: date) -> list[date]:
    """The banking days within start..end, oldest first."""
    return [
        start + timedelta(days=n)
        for n in range((end - start).days + 1)
        if is_banking_day(start + timedelta(days=n))
    ]


def previous_banking_day(day: date) -> date:
    day -= timedelta(days=1)
    while not is_banking_day(day):
        day -= timedelta(days=1)
    return day


def latest_published(now: datetime) -> date:
    """The last banking day whose rates BNR had published at `now` (13:00 Bucharest)."""
    local = now.astimezone(BUCHAREST)
    today = local.date()
    if is_banking_day(today) and local.hour >= PUBLISHING_HOUR:
        return today
    return previous_banking_day(today)


# -- the rates ------------------------------------------------------------------------------------


def _fraction(*parts: object) -> Decimal:
    """A deterministic number in [0, 1) from `parts`."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return Decimal(int.from_bytes(digest, "big")) / Decimal(2**64)


def _anchor(currency: str, index: int) -> Decimal:
    return Decimal("0.1") + Decimal("0.8") * _fraction(currency, "anchor", index)


def sandbox_rate(currency: str, low: Decimal, high: Decimal, day: date) -> Decimal:
    """The fake's rate of `currency` on `day`: within low..high, 4 decimals."""
    index, offset = divmod(day.toordinal(), _ANCHOR_DAYS)
    start, end = _anchor(currency, index), _anchor(currency, index + 1)
    drift = start + (end - start) * Decimal(offset) / _ANCHOR_DAYS  # 0.1..0.9
    wobble = (_fraction(currency, day.isoformat()) - Decimal("0.5")) / 25  # ±0.02
    value = low + (high - low) * (drift + wobble)
    return value.quantize(_FOUR_PLACES, rounding=ROUND_HALF_UP)


def rates_on(day: date) -> dict[str, PublishedRate]:
    """Every rate the fake publishes for a banking day (the caller checks it is one)."""
    return {
        code: PublishedRate(sandbox_rate(code, Decimal(low), Decimal(high), day), multiplier)
        for code, multiplier, low, high in CURRENCIES
    }


# -- the documents --------------------------------------------------------------------------------


def render(days: list[date], publishing_date: date, namespace: str) -> bytes:
    """A BNR DataSet with one Cube per day, in the order given."""
    schema = (
        "http://www.bnr.ro/xsd nbrfxrates.xsd"
        if namespace.startswith("http:")
        else f"{namespace} https://curs.bnr.ro/xsd/nbrfxrates.xsd"
    )
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<DataSet xmlns="{namespace}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{schema}">',
        "\t<Header>",
        "\t\t<Publisher>National Bank of Romania</Publisher>",
        f"\t\t<PublishingDate>{publishing_date.isoformat()}</PublishingDate>",
        "\t\t<MessageType>DR</MessageType>",
        "\t</Header>",
        "\t<Body>",
        "\t\t<Subject>Reference rates</Subject>",
        "\t\t<OrigCurrency>RON</OrigCurrency>",
    ]
    lines += [_cube(day) for day in days]
    lines += ["\t</Body>", "</DataSet>", ""]
    return "\n".join(lines).encode()


@lru_cache(maxsize=1024)
def _cube(day: date) -> str:
    """One day's `Cube` element (cached: a year archive is ~250 of them)."""
    lines = [f'\t\t<Cube date="{day.isoformat()}">']
    for code, published in rates_on(day).items():
        multiplier = f' multiplier="{published.multiplier}"' if published.multiplier != 1 else ""
        lines.append(f'\t\t\t<Rate currency="{code}"{multiplier}>{published.rate}</Rate>')
    lines.append("\t\t</Cube>")
    return "\n".join(lines)


def namespace_for(year: int | None) -> str:
    """The namespace of a year archive (`year`), or of the current files (None)."""
    if year is not None and year <= LEGACY_NAMESPACE_UNTIL:
        return "http://www.bnr.ro/xsd"
    return "https://www.bnr.ro/xsd"


class BnrFake:
    """Serves BNR's rate files under `prefix`, as of the sandbox clock."""

    def __init__(self, clock: Clock | None = None, prefix: str = PREFIX) -> None:
        self.clock = clock or Clock()
        self.prefix = prefix

    def reset(self) -> None:
        """Stateless: nothing to reset."""

    def handle(self, request: Request) -> Response | None:
        if not request.path.startswith(self.prefix):
            return None
        if request.method != "GET":
            return _html(405, "Method Not Allowed")
        name = request.path[len(self.prefix) :]
        latest = latest_published(datetime.fromtimestamp(self.clock.now(), BUCHAREST))
        if name == "nbrfxrates.xml":
            return Response(200, render([latest], latest, namespace_for(None)), content_type=_XML)
        if name == "nbrfxrates10days.xml":
            days = [latest]
            while len(days) < 10:
                days.append(previous_banking_day(days[-1]))
            return Response(200, render(days, latest, namespace_for(None)), content_type=_XML)
        match = _YEAR_PATH.fullmatch(name)
        if match:
            return self._year(int(match.group(1)), latest)
        return _html(404, "Not Found")

    def _year(self, year: int, latest: date) -> Response:
        today = datetime.fromtimestamp(self.clock.now(), BUCHAREST).date()
        # Regenerated once a day, in the morning: the current year's file ends before today.
        last = min(date(year, 12, 31), latest, today - timedelta(days=1))
        if year < FIRST_YEAR or last.year < year:
            return _html(404, "Not Found")
        days = banking_days(date(year, 1, 1), last)
        if not days:
            return _html(404, "Not Found")
        return Response(200, render(days, days[-1], namespace_for(year)), content_type=_XML)


def _html(status: int, title: str) -> Response:
    body = f"<html><head><title>{status} {title}</title></head><body><h1>{title}</h1></body></html>"
    return Response(status, body.encode(), content_type="text/html")
