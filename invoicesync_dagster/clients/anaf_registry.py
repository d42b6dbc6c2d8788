"""Client for ANAF's public VAT/taxpayer registry, `PlatitorTvaRest` v9 (EFACTURA.md §3, §8.9).

`POST {base}/api/PlatitorTvaRest/v9/tva` with `[{"cui": <int>, "data": "YYYY-MM-DD"}, ...]`
answers `{"found": [...], "notFound": [...]}`. ANAF's published rules are at most 100 CUIs per
request and at most one request per second per client; "any attempt to overload the server will
be punished". So this client batches by 100 and spaces requests by `min_interval_s` measured from
the *end* of the previous exchange to the start of the next: the server then sees the requests at
least that far apart whatever the network latency. Retries wait for the same limiter.

What comes back, and what it becomes:
- `found` records → `RegistryRecord` (typed fields + the raw v9 record), `notFound` → CUIs
  (a list of ints, or of objects with a `cui`, both seen in the wild);
- HTTP 200 with `{"cod": ..., "message": ...}` and no `found` (ANAF's error wrapper) →
  RegistryError;
- HTTP 200 `text/html` "The requested URL was rejected ... support ID is: N" (the F5 firewall in
  front of webservicesp.anaf.ro) → retried, then RegistryBlocked with the support id;
- connection errors, timeouts, 429 and 5xx → retried with exponential backoff, then
  RegistryUnavailable;
- other 4xx, non-JSON 200s → RegistryError at once (retrying would not change the answer).

Keep-alive is off: the host resets idle pooled connections, and at one request per second a new
connection costs nothing.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from invoicesync_dagster.efactura.counties import COUNTY_NAMES
from invoicesync_dagster.efactura.identifiers import InvalidCui, normalize_cui

REGISTRY_PATH = "/api/PlatitorTvaRest/v9/tva"
MAX_BATCH = 100  # ANAF doc_WS_V9: "Un request poate contine maxim 100 de CUI-uri"
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 60.0
_WAF_MARKER = "The requested URL was rejected"
_SUPPORT_ID = re.compile(r"support ID is:\s*(\d+)", re.IGNORECASE)
_CUI_DIGITS = re.compile(r"^\d{1,10}$")

log = logging.getLogger(__name__)


# -- errors -----------------------------------------------------------------------------------


class RegistryError(Exception):
    """The registry answered something that is not a result; the message says what and why."""


class RegistryBlocked(RegistryError):
    """ANAF's web application firewall rejected the request (HTTP 200, an HTML page)."""

    def __init__(self, message: str, support_id: str | None) -> None:
        super().__init__(message)
        self.support_id = support_id


class RegistryUnavailable(RegistryError):
    """The registry could not be reached or kept failing (connection, timeout, 429, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# -- the answer -------------------------------------------------------------------------------


class RegistryAddress(BaseModel):
    """One of the two v9 address groups (`adresa_sediu_social` with an `s` prefix on every
    field, `adresa_domiciliu_fiscal` with `d`), without the prefixes."""

    model_config = ConfigDict(frozen=True)

    street: str = ""
    number: str = ""
    locality: str = ""
    locality_code: str = ""
    county: str = ""
    county_code: str = ""  # ANAF's numeric county code (40 = Bucharest)
    county_auto: str = ""  # the vehicle-plate code (B, CJ, TM)
    country: str = ""
    details: str = ""
    postal_code: str = ""

    @classmethod
    def from_v9(cls, group: Any, prefix: str) -> RegistryAddress:
        group = group if isinstance(group, dict) else {}

        def text(name: str) -> str:
            return _text(group.get(prefix + name))

        return cls(
            street=text("denumire_Strada"),
            number=text("numar_Strada"),
            locality=text("denumire_Localitate"),
            locality_code=text("cod_Localitate"),
            county=text("denumire_Judet"),
            county_code=text("cod_Judet"),
            county_auto=text("cod_JudetAuto"),
            country=text("tara"),
            details=text("detalii_Adresa"),
            postal_code=text("cod_Postal"),
        )

    @property
    def county_iso(self) -> str | None:
        """`RO-CJ` from plate code `CJ`: the ISO 3166-2:RO code CIUS-RO asks for."""
        code = f"RO-{self.county_auto.upper()}"
        return code if code in COUNTY_NAMES else None

    @property
    def is_empty(self) -> bool:
        return not (self.street or self.locality or self.county_auto)


class VatPeriod(BaseModel):
    """One entry of `inregistrare_scop_Tva.perioade_TVA`."""

    model_config = ConfigDict(frozen=True)

    start: date | None = None  # data_inceput_ScpTVA
    end: date | None = None  # data_sfarsit_ScpTVA
    cancelled_on: date | None = None  # data_anul_imp_ScpTVA
    message: str = ""  # mesaj_ScpTVA


class RegistryRecord(BaseModel):
    """A taxpayer as the registry knows it on the queried date; `raw` is the v9 record."""

    model_config = ConfigDict(frozen=True)

    cui: str
    queried_date: date | None = None  # date_generale.data: the date the answer is valid for
    name: str = ""  # denumire
    address: str = ""  # adresa (one line, fiscal domicile)
    registration_number: str = ""  # nrRegCom (J40/123/2020 or the new J2020000123408)
    phone: str = ""
    fax: str = ""
    postal_code: str = ""  # codPostal
    registration_status: str = ""  # stare_inregistrare, e.g. "INREGISTRAT din data 02.02.1996"
    registered_on: date | None = None  # data_inregistrare
    caen_code: str = ""
    iban: str = ""
    legal_form: str = ""  # forma_juridica
    tax_office: str = ""  # organFiscalCompetent
    vat_payer: bool = False  # inregistrare_scop_Tva.scpTVA on the queried date
    vat_registered_on: date | None = None  # start of the current (or latest) VAT period
    vat_periods: tuple[VatPeriod, ...] = ()
    vat_on_collection: bool = False  # inregistrare_RTVAI.statusTvaIncasare
    split_vat: bool = False  # inregistrare_SplitTVA.statusSplitTVA
    efactura_registered: bool = False  # date_generale.statusRO_e_Factura
    efactura_registered_on: date | None = None  # date_generale.data_inreg_Reg_RO_e_Factura
    inactive: bool = False  # stare_inactiv.statusInactivi
    inactive_since: date | None = None  # stare_inactiv.dataInactivare
    deregistered_on: date | None = None  # stare_inactiv.dataRadiere
    registered_office: RegistryAddress = RegistryAddress()  # adresa_sediu_social
    fiscal_domicile: RegistryAddress = RegistryAddress()  # adresa_domiciliu_fiscal
    raw: dict[str, Any]

    @classmethod
    def from_v9(cls, raw: dict[str, Any]) -> RegistryRecord:
        """Parse one `found` record; RegistryError if it has no usable `date_generale.cui`."""
        if not isinstance(raw, dict):
            raise RegistryError(f"ANAF registry record is not a JSON object: {raw!r:.200}")
        general = _group(raw, "date_generale")
        cui = _cui_text(general.get("cui"))
        if cui is None:
            raise RegistryError(
                f"ANAF registry record without a numeric date_generale.cui: {raw!r:.200}"
            )
        vat = _group(raw, "inregistrare_scop_Tva")
        periods = tuple(
            VatPeriod(
                start=_date(period.get("data_inceput_ScpTVA")),
                end=_date(period.get("data_sfarsit_ScpTVA")),
                cancelled_on=_date(period.get("data_anul_imp_ScpTVA")),
                message=_text(period.get("mesaj_ScpTVA")),
            )
            for period in vat.get("perioade_TVA") or []
            if isinstance(period, dict)
        )
        inactive = _group(raw, "stare_inactiv")
        return cls(
            cui=cui,
            queried_date=_date(general.get("data")),
            name=_text(general.get("denumire")),
            address=_text(general.get("adresa")),
            registration_number=_text(general.get("nrRegCom")),
            phone=_text(general.get("telefon")),
            fax=_text(general.get("fax")),
            postal_code=_text(general.get("codPostal")),
            registration_status=_text(general.get("stare_inregistrare")),
            registered_on=_date(general.get("data_inregistrare")),
            caen_code=_text(general.get("cod_CAEN")),
            iban=_text(general.get("iban")),
            legal_form=_text(general.get("forma_juridica")),
            tax_office=_text(general.get("organFiscalCompetent")),
            vat_payer=vat.get("scpTVA") is True,
            vat_registered_on=_current_vat_start(periods),
            vat_periods=periods,
            vat_on_collection=_group(raw, "inregistrare_RTVAI").get("statusTvaIncasare") is True,
            split_vat=_group(raw, "inregistrare_SplitTVA").get("statusSplitTVA") is True,
            efactura_registered=general.get("statusRO_e_Factura") is True,
            efactura_registered_on=_date(general.get("data_inreg_Reg_RO_e_Factura")),
            inactive=inactive.get("statusInactivi") is True,
            inactive_since=_date(inactive.get("dataInactivare")),
            deregistered_on=_date(inactive.get("dataRadiere")),
            registered_office=RegistryAddress.from_v9(raw.get("adresa_sediu_social"), "s"),
            fiscal_domicile=RegistryAddress.from_v9(raw.get("adresa_domiciliu_fiscal"), "d"),
            raw=raw,
        )

    @property
    def legal_address(self) -> RegistryAddress:
        """The registered office; the fiscal domicile when ANAF gives no registered office."""
        if self.registered_office.is_empty:
            return self.fiscal_domicile
        return self.registered_office

    @property
    def county_code(self) -> str | None:
        """ISO 3166-2:RO (`RO-B`, `RO-CJ`) from `scod_JudetAuto`, as CIUS-RO requires."""
        return self.legal_address.county_iso

    @property
    def locality(self) -> str:
        return self.legal_address.locality

    @property
    def street(self) -> str:
        return self.legal_address.street

    @property
    def street_number(self) -> str:
        return self.legal_address.number


@dataclass
class RegistryAnswer:
    """Records by CUI (digits only, no RO) and the CUIs the registry does not know."""

    found: dict[str, RegistryRecord] = field(default_factory=dict)
    not_found: set[str] = field(default_factory=set)


# -- the client -------------------------------------------------------------------------------


class AnafRegistryClient:
    """Looks CUIs up in batches, one request at a time, at most one per `min_interval_s`.

    One instance is safe to share between threads: its lock serialises the exchanges, so the
    spacing holds for all of them together."""

    def __init__(
        self,
        base_url: str,
        *,
        min_interval_s: float = 1.0,
        batch_size: int = MAX_BATCH,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        timeout_s: float = 30.0,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(
                f"batch_size must be 1..{MAX_BATCH} (ANAF's limit per request), got {batch_size}"
            )
        if min_interval_s < 0 or max_retries < 0 or backoff_s < 0:
            raise ValueError("min_interval_s, max_retries and backoff_s must be >= 0")
        self.url = base_url.rstrip("/") + REGISTRY_PATH
        self.min_interval_s = min_interval_s
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._lock = threading.Lock()
        self._last_finished: float | None = None
        self._http = httpx.Client(
            timeout=timeout_s,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"Accept": "application/json", "User-Agent": "invoicesync"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AnafRegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def lookup(self, cuis: Iterable[str], on: date) -> RegistryAnswer:
        """What the registry says about each CUI on date `on`. CUIs may carry `RO`, spaces or
        leading zeros; duplicates are asked once. A CUI that is not 1-10 digits raises
        InvalidCui before any request (its check digit is not judged here: the registry is)."""
        wanted = list(dict.fromkeys(registry_cui(cui) for cui in cuis))
        answer = RegistryAnswer()
        for start in range(0, len(wanted), self.batch_size):
            batch = wanted[start : start + self.batch_size]
            what = f"POST {self.url} ({len(batch)} CUIs from {batch[0]})"
            payload = self._post(batch, on, what)
            try:
                self._merge(batch, payload, answer)
            except RegistryError as error:
                raise RegistryError(f"{what}: {error}") from None
        return answer

    # -- one batch ------------------------------------------------------------------------

    def _post(self, batch: list[str], on: date, what: str) -> dict[str, Any]:
        body = [{"cui": int(cui), "data": on.isoformat()} for cui in batch]
        attempt = 0
        while True:
            try:
                return self._exchange(body, what)
            except (RegistryBlocked, RegistryUnavailable) as error:
                if attempt >= self.max_retries:
                    raise
                delay = min(self.backoff_s * 2**attempt, MAX_BACKOFF_SECONDS)
                if isinstance(error, RegistryUnavailable) and error.retry_after is not None:
                    delay = max(delay, error.retry_after)
                attempt += 1
                log.warning("%s; retry %d/%d in %.1f s", error, attempt, self.max_retries, delay)
                time.sleep(delay)

    def _exchange(self, body: list[dict[str, Any]], what: str) -> dict[str, Any]:
        with self._lock:
            if self._last_finished is not None:
                wait = self._last_finished + self.min_interval_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            try:
                response = self._http.post(self.url, json=body)
            except httpx.TimeoutException as error:
                raise RegistryUnavailable(f"{what}: timed out ({error})") from error
            except httpx.TransportError as error:
                raise RegistryUnavailable(
                    f"{what}: cannot connect ({error}); check ANAF_PUBLIC_API_BASE and the network"
                ) from error
            finally:
                self._last_finished = time.monotonic()
        return _parse(response, what)

    def _merge(self, batch: list[str], payload: dict[str, Any], answer: RegistryAnswer) -> None:
        for raw in payload.get("found") or []:
            record = RegistryRecord.from_v9(raw)
            answer.found[record.cui] = record
        for item in payload.get("notFound") or []:
            cui = _cui_text(item.get("cui") if isinstance(item, dict) else item)
            if cui is None:
                raise RegistryError(f"ANAF registry notFound entry without a CUI: {item!r:.200}")
            answer.not_found.add(cui)
        unanswered = [
            cui for cui in batch if cui not in answer.found and cui not in answer.not_found
        ]
        if unanswered:
            # Not silently dropped: a CUI the registry says nothing about counts as not found.
            log.warning("ANAF registry said nothing about %s; counted as not found", unanswered)
            answer.not_found.update(unanswered)


def _parse(response: httpx.Response, what: str) -> dict[str, Any]:
    status = response.status_code
    text = response.text
    content_type = response.headers.get("content-type", "")
    if _WAF_MARKER in text:
        match = _SUPPORT_ID.search(text)
        support_id = match.group(1) if match else None
        raise RegistryBlocked(
            f"{what}: ANAF's firewall rejected the request (HTTP {status}, support ID "
            f"{support_id or 'not given'}). It blocks clients that exceed 1 request/second or "
            "send unusual payloads: wait a minute and retry; if it persists, contact ANAF with "
            "the support ID",
            support_id,
        )
    if status == 429 or status >= 500:
        raise RegistryUnavailable(f"{what}: HTTP {status} {_snippet(text)}", _retry_after(response))
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        raise RegistryError(
            f"{what}: HTTP {status} with a body that is not JSON ({content_type or 'no type'}): "
            f"{_snippet(text)}; check that ANAF_PUBLIC_API_BASE points at the registry"
        ) from None
    is_result = isinstance(payload, dict) and ("found" in payload or "notFound" in payload)
    if is_result and status in (200, 404):
        # 404 with a normal body has been seen when nothing was found.
        return payload
    if status >= 400:
        raise RegistryError(
            f"{what}: HTTP {status} {_snippet(text)}; the request was refused, retrying will not "
            "help: check the CUIs and ANAF_PUBLIC_API_BASE"
        )
    if isinstance(payload, dict) and ("cod" in payload or "message" in payload):
        raise RegistryError(
            f"{what}: ANAF answered error {payload.get('cod')}: {payload.get('message')!r}"
        )
    raise RegistryError(f"{what}: unexpected answer {_snippet(text)}")


# -- helpers ----------------------------------------------------------------------------------


def registry_cui(raw: str) -> str:
    """The CUI as the registry keys it: digits only, no RO, no leading zeros (`RO 0123` →
    `123`). InvalidCui if it is not 1-10 digits; the check digit is not judged here."""
    text = normalize_cui(str(raw))
    if not _CUI_DIGITS.match(text) or int(text) == 0:
        raise InvalidCui(
            f"CUI {raw!r} cannot be looked up: it must be digits, optionally prefixed by RO"
        )
    return str(int(text))


def _cui_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return str(int(value.strip()))
    return None


def _group(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _date(value: Any) -> date | None:
    """ANAF dates are `YYYY-MM-DD`, absent ones empty strings; `DD.MM.YYYY` is tolerated."""
    text = _text(value)
    for pattern in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None


def _current_vat_start(periods: tuple[VatPeriod, ...]) -> date | None:
    """The start of the open VAT period, else of the latest one."""
    starts = [p.start for p in periods if p.start is not None and p.end is None]
    starts = starts or [p.start for p in periods if p.start is not None]
    return max(starts) if starts else None


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _snippet(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "…")
