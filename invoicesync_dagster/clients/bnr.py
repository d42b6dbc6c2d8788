"""Client for the National Bank of Romania's reference exchange rates (EFACTURA.md §4.4).

BNR publishes static XML files, no key, no auth, next to each other (`BNR_RATES_URL` is the
first; the others are found relative to it):

- `nbrfxrates.xml`: the latest banking day's rates;
- `nbrfxrates10days.xml`: the last ten banking days, newest first;
- `files/xml/years/nbrfxratesYYYY.xml`: one year, from 2005 (the current year's file is
  regenerated daily and can lag a day behind).

Each is `DataSet/Header/PublishingDate` and `DataSet/Body/Cube[@date]/Rate[@currency]
[@multiplier]`, in namespace `http://www.bnr.ro/xsd` (archives up to 2025) or
`https://www.bnr.ro/xsd` (current files, archives from 2026): both spellings are read. A
`Rate` is RON for `multiplier` units (absent = 1; HUF, JPY, KRW are quoted per 100), with 4
decimals; it is kept as a Decimal exactly as published.

`rates_between(start, end)` fetches the smallest documents that cover a range: the ten-day file
when the range reaches the last two weeks, the year archives for whatever it does not cover.

The XML is parsed with entity resolution, DTD loading and network access off: a document that
tries to pull in a file or a URL gets nothing from it (and is refused as having no rate value).
Connection errors, timeouts, 429 and 5xx are retried with backoff, then raise BnrUnavailable;
anything else that is not a rate document raises BnrResponseError at once. Both name the URL.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from types import TracebackType
from zoneinfo import ZoneInfo

import httpx
from lxml import etree

from invoicesync_dagster.efactura.fx import PublishedRate

DAILY_FILE = "nbrfxrates.xml"
TEN_DAYS_FILE = "nbrfxrates10days.xml"
YEAR_FILE = "files/xml/years/nbrfxrates{year}.xml"
FIRST_ARCHIVED_YEAR = 2005
NAMESPACES = ("http://www.bnr.ro/xsd", "https://www.bnr.ro/xsd")
# Ten banking days span at least twelve calendar days (two weekends), often more: a range that
# starts no earlier than this before today is tried on the ten-day file first.
TEN_DAYS_REACH = timedelta(days=12)
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # the year archives are ~250 KB
MAX_BACKOFF_SECONDS = 30.0
BUCHAREST = ZoneInfo("Europe/Bucharest")
_FIX = "check BNR_RATES_URL (the URL of nbrfxrates.xml, e.g. https://curs.bnr.ro/nbrfxrates.xml)"

log = logging.getLogger(__name__)


class BnrError(Exception):
    """BNR's rates could not be read; the message names the URL and what to do."""


class BnrUnavailable(BnrError):
    """BNR could not be reached or kept failing (connection, timeout, 429, 5xx)."""


class BnrResponseError(BnrError):
    """BNR answered something that is not a rate document (404, HTML, malformed XML...)."""


@dataclass(frozen=True)
class BnrDocument:
    """One parsed BNR file: its rate sets by the date BNR dated them with."""

    url: str
    publishing_date: date | None
    rates: dict[date, dict[str, PublishedRate]]

    @property
    def first_date(self) -> date:
        return min(self.rates)

    @property
    def last_date(self) -> date:
        return max(self.rates)


@dataclass
class FetchedRates:
    """The rate sets of a date range and the document each came from."""

    rates: dict[date, dict[str, PublishedRate]] = field(default_factory=dict)
    sources: dict[date, str] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)  # every document fetched, in order

    def add(self, document: BnrDocument, start: date, end: date) -> None:
        """Take the document's sets within start..end that are not there yet."""
        self.urls.append(document.url)
        for day, by_currency in document.rates.items():
            if start <= day <= end and day not in self.rates:
                self.rates[day] = by_currency
                self.sources[day] = document.url


def base_url(rates_url: str) -> str:
    """The folder BNR's files sit in: `https://curs.bnr.ro/nbrfxrates.xml` →
    `https://curs.bnr.ro/`; a URL ending in `/` is already a folder."""
    if not rates_url.startswith(("http://", "https://")):
        raise ValueError(f"BNR_RATES_URL must be an http(s) URL, got {rates_url!r}; {_FIX}")
    return rates_url[: rates_url.rindex("/") + 1]


def bucharest_today() -> date:
    return datetime.now(BUCHAREST).date()


class BnrClient:
    """Reads BNR's rate files from the folder of `rates_url`."""

    def __init__(
        self,
        rates_url: str,
        *,
        max_retries: int = 2,
        backoff_s: float = 1.0,
        timeout_s: float = 30.0,
    ) -> None:
        if max_retries < 0 or backoff_s < 0:
            raise ValueError("max_retries and backoff_s must be >= 0")
        self.base = base_url(rates_url)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._http = httpx.Client(
            timeout=timeout_s,
            follow_redirects=True,
            headers={"Accept": "application/xml, text/xml", "User-Agent": "invoicesync"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BnrClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the three documents ------------------------------------------------------------------

    def latest(self) -> BnrDocument:
        return self._document(DAILY_FILE)

    def last_10_days(self) -> BnrDocument:
        return self._document(TEN_DAYS_FILE)

    def year(self, year: int) -> BnrDocument:
        if year < FIRST_ARCHIVED_YEAR:
            raise ValueError(f"BNR's XML archive starts in {FIRST_ARCHIVED_YEAR}, not {year}")
        return self._document(YEAR_FILE.format(year=year))

    # -- a range --------------------------------------------------------------------------------

    def rates_between(self, start: date, end: date, *, today: date | None = None) -> FetchedRates:
        """Every rate set BNR dated within start..end (inclusive). `today` (Bucharest's by
        default) decides whether the ten-day file can serve the recent part of the range."""
        if start > end:
            raise ValueError(f"start {start} is after end {end}")
        if start.year < FIRST_ARCHIVED_YEAR:
            raise ValueError(f"BNR's XML archive starts in {FIRST_ARCHIVED_YEAR}; got {start}")
        today = today or bucharest_today()
        fetched = FetchedRates()
        uncovered_end = end
        if end >= today - TEN_DAYS_REACH:
            recent = self.last_10_days()
            fetched.add(recent, start, end)
            uncovered_end = min(end, recent.first_date - timedelta(days=1))
        if uncovered_end >= start:
            for year in range(start.year, uncovered_end.year + 1):
                fetched.add(self.year(year), start, uncovered_end)
        return fetched

    # -- HTTP -----------------------------------------------------------------------------------

    def _document(self, name: str) -> BnrDocument:
        url = self.base + name
        attempt = 0
        while True:
            try:
                return parse_rates_document(self._get(url), url)
            except BnrUnavailable as error:
                if attempt >= self.max_retries:
                    raise
                delay = min(self.backoff_s * 2**attempt, MAX_BACKOFF_SECONDS)
                attempt += 1
                log.warning("%s; retry %d/%d in %.1f s", error, attempt, self.max_retries, delay)
                time.sleep(delay)

    def _get(self, url: str) -> bytes:
        try:
            response = self._http.get(url)
        except httpx.TimeoutException as error:
            raise BnrUnavailable(f"GET {url}: timed out ({error})") from error
        except httpx.TransportError as error:
            raise BnrUnavailable(
                f"GET {url}: cannot connect ({error}); {_FIX}, and the network"
            ) from error
        status = response.status_code
        if status == 429 or status >= 500:
            raise BnrUnavailable(f"GET {url}: HTTP {status} {_snippet(response.text)}")
        if status == 404:
            raise BnrResponseError(
                f"GET {url}: HTTP 404, BNR has no such file (year archives exist from "
                f"{FIRST_ARCHIVED_YEAR} to the current year); {_FIX}"
            )
        if status != 200:
            raise BnrResponseError(f"GET {url}: HTTP {status} {_snippet(response.text)}; {_FIX}")
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise BnrResponseError(
                f"GET {url}: {len(response.content)} bytes is not a BNR rate file (the largest "
                f"is well under 1 MB); {_FIX}"
            )
        return response.content


# -- parsing ------------------------------------------------------------------------------------


def _parser() -> etree.XMLParser:
    # One per document: lxml parsers must not be shared between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_rates_document(body: bytes, url: str) -> BnrDocument:
    """A BNR rate file (daily, ten days or year) → BnrDocument; BnrResponseError naming `url`
    and the element at fault if it is not one."""
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as error:
        raise BnrResponseError(
            f"GET {url}: not XML ({error}): {_snippet(body.decode('utf-8', 'replace'))}; {_FIX}"
        ) from None
    namespace = etree.QName(root).namespace
    if etree.QName(root).localname != "DataSet" or namespace not in NAMESPACES:
        raise BnrResponseError(
            f"GET {url}: the root element is {root.tag!r}, not a BNR DataSet in one of "
            f"{NAMESPACES}; {_FIX}"
        )

    def tag(name: str) -> str:
        return f"{{{namespace}}}{name}"

    published = root.findtext(f"{tag('Header')}/{tag('PublishingDate')}")
    orig = root.findtext(f"{tag('Body')}/{tag('OrigCurrency')}")
    if orig is not None and orig.strip() != "RON":
        raise BnrResponseError(f"GET {url}: rates are against {orig!r}, not RON")
    rates: dict[date, dict[str, PublishedRate]] = {}
    for cube in root.iterfind(f"{tag('Body')}/{tag('Cube')}"):
        day = _date(cube.get("date"), url, "Cube/@date")
        by_currency: dict[str, PublishedRate] = {}
        for rate in cube.iterfind(tag("Rate")):
            currency = (rate.get("currency") or "").strip().upper()
            where = f"Cube[@date={day}]/Rate[@currency={currency or '?'}]"
            if len(currency) != 3 or not currency.isalpha():
                raise BnrResponseError(f"GET {url}: {where} has no 3-letter currency code")
            by_currency[currency] = _published_rate(rate, url, where)
        if by_currency:
            rates[day] = by_currency
    if not rates:
        raise BnrResponseError(f"GET {url}: the document holds no rates; {_FIX}")
    return BnrDocument(
        url=url,
        publishing_date=_date(published, url, "Header/PublishingDate") if published else None,
        rates=rates,
    )


def _published_rate(rate: etree._Element, url: str, where: str) -> PublishedRate:
    # An unresolved entity leaves the element without text: it has no value, so it is refused.
    text = (rate.text or "").strip()
    try:
        value = Decimal(text)
        multiplier = int(rate.get("multiplier") or 1)
        return PublishedRate(value, multiplier)
    except (InvalidOperation, ValueError):
        raise BnrResponseError(
            f"GET {url}: {where} is not a positive rate with a positive integer multiplier "
            f"(value {text!r}, multiplier {rate.get('multiplier')!r})"
        ) from None


def _date(text: str | None, url: str, where: str) -> date:
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        raise BnrResponseError(f"GET {url}: {where} {text!r} is not a YYYY-MM-DD date") from None


def _snippet(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "…")
