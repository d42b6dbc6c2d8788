"""A fake of ANAF's public VAT registry, `POST /api/PlatitorTvaRest/v9/tva` (EFACTURA.md §3).

It answers like the real service: `{"found": [<v9 record>...], "notFound": [<cui int>...]}`
(no `cod`/`message` on a 200 with results, as observed live), every record with all seven groups
and ANAF's empty strings / `false` for absent values.

Which CUIs it knows:
- the companies among the Stripe customers held by the Stripe fake (if one is given): every CUI in
  a customer's `eu_vat` tax ids starting with RO, in `ro_tin` tax ids that are CUI-shaped (2-10
  digits; 13-digit CNPs are persons, who are not in this registry), and in `metadata.cui` /
  `metadata.cif`. Each CUI's fate is derived from the CUI alone (`outcome_for_cui`): about 10%
  not found, 10% inactive, 15% not VAT registered, the rest active VAT payers; a CUI with a bad
  check digit is never found. A customer's `metadata.sandbox_registry` (`active`,
  `not_vat_payer`, `inactive`, `not_found`) overrides that, for seeders that want every case
  (a bad check digit stays not found).
  Name, address and dates come from the customer and the CUI, so they are stable across runs.
- records given explicitly (`records=`, `load_fixture_file`, `sandbox serve --registry-fixtures`,
  or `POST /_sandbox/anaf-registry/records`): v9 `found` records, completed with empty values
  for missing fields. They win over derived records with the same CUI.

Limits it enforces, as ANAF publishes them:
- more than 100 CUIs in one request → HTTP 200 `{"cod": 400, "message": "Un request poate
  contine maxim 100 de CUI-uri."}`. The live wording is not documented: this is ANAF's own
  sentence from doc_WS_V9.txt in the `{cod, message}` wrapper the same document defines.
- more than one request per second (`min_interval_s`) → the F5 firewall page ANAF's host serves:
  HTTP 200 `text/html`, "The requested URL was rejected. Please consult with your administrator.
  Your support ID is: N". ANAF counts per client address; on loopback every caller is
  127.0.0.1, so the fake keeps one clock for all callers. Rejected requests count too.
- a body that is not a JSON list of `{"cui": <int>, "data": "YYYY-MM-DD"}` → HTTP 400 with the
  `{cod, message}` wrapper (a client bug: real ANAF's exact answer is not documented).

Every request is recorded (`calls`: server-side time, CUI count, outcome), for tests, and is
readable at `GET /_sandbox/anaf-registry/calls`; `GET /_sandbox/anaf-registry/records` lists
every record the fake knows.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from invoicesync_dagster.efactura.counties import COUNTY_NAMES
from invoicesync_dagster.efactura.identifiers import is_valid_cui, normalize_cui
from invoicesync_dagster.sandbox.server import Fake, Request, Response

REGISTRY_PATH = "/api/PlatitorTvaRest/v9/tva"
CONTROL_PREFIX = "/_sandbox/anaf-registry/"
MAX_CUIS = 100
TOO_MANY_CUIS_MESSAGE = "Un request poate contine maxim 100 de CUI-uri."
_JSON = "application/json;charset=UTF-8"
_STRIPE_KEY = "sk_test_anaf_registry_fake"  # the fake reads the Stripe fake in-process
_METADATA_KEYS = ("cui", "cif")
_OVERRIDE_KEY = "sandbox_registry"

_WAF_PAGE = (
    "<html><head><title>Request Rejected</title></head><body>The requested URL was rejected. "
    "Please consult with your administrator.<br><br>Your support ID is: {support_id}<br><br>"
    "<a href='javascript:history.back();'>[Go Back]</a></body></html>"
)

# ANAF's numeric county codes (`scod_Judet`): the counties in alphabetical order, 40 for
# Bucharest, 51 and 52 for the two counties created later. Keys are the plate codes.
ANAF_COUNTY_NUMBERS: dict[str, int] = {
    "AB": 1, "AR": 2, "AG": 3, "BC": 4, "BH": 5, "BN": 6, "BT": 7, "BV": 8, "BR": 9, "BZ": 10,
    "CS": 11, "CJ": 12, "CT": 13, "CV": 14, "DB": 15, "DJ": 16, "GL": 17, "GJ": 18, "HR": 19,
    "HD": 20, "IL": 21, "IS": 22, "IF": 23, "MM": 24, "MH": 25, "MS": 26, "NT": 27, "OT": 28,
    "PH": 29, "SM": 30, "SJ": 31, "SB": 32, "SV": 33, "TR": 34, "TM": 35, "TL": 36, "VS": 37,
    "VL": 38, "VN": 39, "B": 40, "CL": 51, "GR": 52,
}  # fmt: skip

# (locality as ANAF writes it, plate code, locality code, postal code) for derived addresses.
_LOCALITIES = (
    ("Sector 1 Mun. Bucureşti", "B", "1", "010011"),
    ("Sector 3 Mun. Bucureşti", "B", "3", "030167"),
    ("Sector 6 Mun. Bucureşti", "B", "6", "060787"),
    ("Mun. Cluj-Napoca", "CJ", "103", "400001"),
    ("Mun. Timişoara", "TM", "355", "300011"),
    ("Mun. Iaşi", "IS", "95", "700028"),
    ("Mun. Braşov", "BV", "51", "500030"),
    ("Mun. Constanţa", "CT", "92", "900178"),
    ("Oraş Voluntari", "IF", "139", "077190"),
    ("Mun. Sibiu", "SB", "126", "550024"),
)
_STREETS = (
    "Str. Mihai Eminescu",
    "Bd. Unirii",
    "Calea Victoriei",
    "Str. Republicii",
    "Şos. Pipera",
    "Str. Avram Iancu",
    "Bd. Revoluţiei",
    "Str. Horea",
)
_CAEN_CODES = ("6201", "6202", "6311", "7311", "4791", "7022", "5829", "8559")


class Outcome(StrEnum):
    ACTIVE = "active"  # VAT payer, active
    NOT_VAT_PAYER = "not_vat_payer"
    INACTIVE = "inactive"  # declared inactive, VAT registration cancelled
    NOT_FOUND = "not_found"


def outcome_for_cui(cui: str) -> Outcome:
    """The deterministic fate of a derived CUI (a customer's override aside)."""
    if not is_valid_cui(cui):
        return Outcome.NOT_FOUND
    bucket = _hash(cui) % 100
    if bucket < 10:
        return Outcome.NOT_FOUND
    if bucket < 20:
        return Outcome.INACTIVE
    if bucket < 35:
        return Outcome.NOT_VAT_PAYER
    return Outcome.ACTIVE


def customer_cuis(customer: dict[str, Any]) -> list[str]:
    """The CUIs a Stripe customer carries (RO VAT ids, CUI-shaped ro_tin, metadata cui/cif),
    normalised (digits, no RO, no leading zeros), in order, without duplicates."""
    found: list[str] = []
    tax_ids = customer.get("tax_ids")
    for tax_id in (tax_ids.get("data") if isinstance(tax_ids, dict) else None) or []:
        value = str(tax_id.get("value") or "").replace(" ", "").upper()
        kind = tax_id.get("type")
        if (kind == "eu_vat" and value.startswith("RO")) or kind == "ro_tin":
            found.append(value)
    metadata = customer.get("metadata") or {}
    found.extend(str(metadata[key]) for key in _METADATA_KEYS if metadata.get(key))
    cuis = []
    for raw in found:
        digits = normalize_cui(raw)
        if digits.isdigit() and 2 <= len(digits) <= 10 and int(digits) > 0:
            cuis.append(str(int(digits)))
    return list(dict.fromkeys(cuis))


def blank_record(cui: int, on: date) -> dict[str, Any]:
    """A v9 `found` record with every field ANAF sends, all absent (empty / false)."""
    return {
        "date_generale": {
            "cui": cui, "data": on.isoformat(), "denumire": "", "adresa": "", "nrRegCom": "",
            "telefon": "", "fax": "", "codPostal": "", "act": "", "stare_inregistrare": "",
            "data_inregistrare": "", "cod_CAEN": "", "iban": "", "statusRO_e_Factura": False,
            "data_inreg_Reg_RO_e_Factura": "", "organFiscalCompetent": "",
            "forma_de_proprietate": "", "forma_organizare": "", "forma_juridica": "",
        },
        "inregistrare_scop_Tva": {"scpTVA": False, "perioade_TVA": []},
        "inregistrare_RTVAI": {
            "dataInceputTvaInc": "", "dataSfarsitTvaInc": "", "dataActualizareTvaInc": "",
            "dataPublicareTvaInc": "", "tipActTvaInc": "", "statusTvaIncasare": False,
        },
        "stare_inactiv": {
            "dataInactivare": "", "dataReactivare": "", "dataPublicare": "", "dataRadiere": "",
            "statusInactivi": False,
        },
        "inregistrare_SplitTVA": {
            "dataInceputSplitTVA": "", "dataAnulareSplitTVA": "", "statusSplitTVA": False,
        },
        "adresa_sediu_social": _address("s"),
        "adresa_domiciliu_fiscal": _address("d"),
    }  # fmt: skip


def derive_record(
    cui: str, customer: dict[str, Any], on: date, outcome: Outcome | None = None
) -> dict[str, Any] | None:
    """The v9 record the fake answers for a customer's CUI on date `on` (None: not found)."""
    if not is_valid_cui(cui):
        return None  # no override makes ANAF know a CUI that cannot exist
    outcome = outcome or outcome_for_cui(cui)
    if outcome is Outcome.NOT_FOUND:
        return None
    rng = random.Random(_hash(cui))
    record = blank_record(int(cui), on)
    general = record["date_generale"]
    where = _derived_address(customer, rng)
    street, number, locality, plate = where.street, where.number, where.locality, where.plate
    county = _anaf_county_name(plate)
    registered = date(rng.randint(2005, 2021), rng.randint(1, 12), rng.randint(1, 28))
    county_number = ANAF_COUNTY_NUMBERS[plate]
    one_line = (
        _county_prefix(plate, county),
        locality.upper(),
        street.upper(),
        f"NR.{number}" if number else "",
        where.details.upper(),
    )
    registration = f"J{county_number:02d}/{rng.randint(100, 29999)}/{registered.year}"
    general.update(
        denumire=_legal_name(customer.get("name"), cui),
        adresa=", ".join(part for part in one_line if part),
        nrRegCom=str((customer.get("metadata") or {}).get("reg_com") or registration),
        telefon=f"07{rng.randint(20000000, 99999999)}" if rng.random() < 0.7 else "",
        codPostal=where.postal_code,
        stare_inregistrare=f"INREGISTRAT din data {registered:%d.%m.%Y}",
        data_inregistrare=registered.isoformat(),
        cod_CAEN=rng.choice(_CAEN_CODES),
        organFiscalCompetent=_tax_office(plate, locality),
        forma_de_proprietate="PROPR.PRIVATA-CAPITAL PRIVAT AUTOHTON",
        forma_organizare="PERSOANA JURIDICA",
        forma_juridica="SOCIETATE COMERCIALĂ CU RĂSPUNDERE LIMITATĂ",
    )
    if rng.random() < 0.75:
        general["statusRO_e_Factura"] = True
        # The RO e-Factura register opened in November 2021.
        opened = max(registered, date(2021, 11, 1))
        general["data_inreg_Reg_RO_e_Factura"] = _after(opened, rng, 2024).isoformat()
    address = {
        "denumire_Strada": street, "numar_Strada": number, "denumire_Localitate": locality,
        "cod_Localitate": where.locality_code, "denumire_Judet": county,
        "cod_Judet": str(county_number), "cod_JudetAuto": plate, "tara": "",
        "detalii_Adresa": where.details, "cod_Postal": where.postal_code,
    }  # fmt: skip
    record["adresa_sediu_social"] = {"s" + k: v for k, v in address.items()}
    record["adresa_domiciliu_fiscal"] = {"d" + k: v for k, v in address.items()}
    vat_start = _after(registered, rng, registered.year + 1)
    vat = record["inregistrare_scop_Tva"]
    if outcome is Outcome.ACTIVE:
        vat["scpTVA"] = True
        vat["perioade_TVA"] = [_vat_period(vat_start)]
        if rng.random() < 0.15:
            record["inregistrare_RTVAI"].update(
                dataInceputTvaInc=vat_start.isoformat(),
                dataActualizareTvaInc=vat_start.isoformat(),
                dataPublicareTvaInc=(vat_start + timedelta(days=1)).isoformat(),
                tipActTvaInc="Inregistrare",
                statusTvaIncasare=True,
            )
    elif outcome is Outcome.INACTIVE:
        inactive_since = _after(vat_start, rng, 2023)
        record["stare_inactiv"].update(
            dataInactivare=inactive_since.isoformat(),
            dataPublicare=(inactive_since - timedelta(days=3)).isoformat(),
            statusInactivi=True,
        )
        # ANAF cancels the VAT registration of a taxpayer it declares inactive.
        vat["perioade_TVA"] = [_vat_period(vat_start, end=inactive_since)]
    elif rng.random() < 0.5:  # not a VAT payer: some once were
        vat["perioade_TVA"] = [_vat_period(vat_start, end=_after(vat_start, rng, 2023))]
    return record


def complete_record(given: Any, where: str, on: date | None = None) -> dict[str, Any]:
    """An explicit v9 record with every missing field filled in as ANAF leaves it empty."""
    if not isinstance(given, dict) or not isinstance(given.get("date_generale"), dict):
        raise ValueError(
            f"{where}: a registry record is a v9 `found` object with a `date_generale` group, "
            f"got {json.dumps(given)[:120]}"
        )
    cui = given["date_generale"].get("cui")
    if isinstance(cui, str) and normalize_cui(cui).isdigit():
        cui = int(normalize_cui(cui))
    if isinstance(cui, bool) or not isinstance(cui, int) or cui <= 0:
        raise ValueError(f"{where}: date_generale.cui must be a positive integer, got {cui!r}")
    record = _deep_merge(blank_record(cui, on or date.today()), given)
    record["date_generale"]["cui"] = cui
    return record


def load_fixture_file(path: Path) -> list[dict[str, Any]]:
    """Records from a `--registry-fixtures` JSON file: a list of v9 `found` records (a
    `{"found": [...]}` answer is accepted too)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read registry fixtures {path}: {error}") from error
    if isinstance(data, dict) and isinstance(data.get("found"), list):
        data = data["found"]
    if not isinstance(data, list):
        raise ValueError(
            f"registry fixtures {path}: expected a JSON list of v9 `found` records, "
            f"got {type(data).__name__}"
        )
    return [complete_record(item, f"{path} record #{n}") for n, item in enumerate(data, 1)]


@dataclass(frozen=True)
class RegistryCall:
    received_at: float  # unix seconds, server side
    monotonic: float  # server-side time.monotonic(), for measuring spacing
    cui_count: int  # CUIs in the body (0 when it could not be read)
    outcome: str  # answered | blocked | too_many_cuis | bad_request
    found: int = 0
    not_found: int = 0


class AnafRegistryFake:
    """The registry fake, a `Fake` for `SandboxServer.mount`."""

    def __init__(
        self,
        stripe: Fake | None = None,
        records: Iterable[dict[str, Any]] = (),
        *,
        min_interval_s: float = 1.0,
        max_cuis: int = MAX_CUIS,
    ) -> None:
        self.stripe = stripe
        self.min_interval_s = min_interval_s
        self.max_cuis = max_cuis
        self._lock = threading.Lock()
        self._initial = [complete_record(r, f"record #{n}") for n, r in enumerate(records, 1)]
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._records = {r["date_generale"]["cui"]: r for r in self._initial}
            self._calls: list[RegistryCall] = []
            self._last_request: float | None = None
            self._support_ids = random.Random(0)

    @property
    def calls(self) -> list[RegistryCall]:
        with self._lock:
            return list(self._calls)

    def add_records(self, records: Iterable[dict[str, Any]]) -> int:
        completed = [complete_record(r, f"record #{n}") for n, r in enumerate(records, 1)]
        with self._lock:
            self._records.update((r["date_generale"]["cui"], r) for r in completed)
        return len(completed)

    def known_records(self, on: date) -> dict[int, dict[str, Any]]:
        """Every record the fake would answer on date `on`, by CUI."""
        customers = self._customers_by_cui()
        with self._lock:
            cuis = {int(cui) for cui in customers} | set(self._records)
        known = {cui: self.record_for(cui, on, customers) for cui in sorted(cuis)}
        return {cui: record for cui, record in known.items() if record is not None}

    def record_for(
        self, cui: int, on: date, customers: dict[str, dict[str, Any]] | None = None
    ) -> dict[str, Any] | None:
        """The record answered for `cui` on date `on`, or None (not found). `customers` is
        `_customers_by_cui()`, passed in to read the Stripe fake once per request."""
        with self._lock:
            explicit = self._records.get(cui)
        if explicit is not None:
            record = copy.deepcopy(explicit)
            record["date_generale"]["data"] = on.isoformat()
            return record
        customer = (self._customers_by_cui() if customers is None else customers).get(str(cui))
        if customer is None:
            return None
        override = (customer.get("metadata") or {}).get(_OVERRIDE_KEY)
        outcome = Outcome(override) if override in set(Outcome) else None
        return derive_record(str(cui), customer, on, outcome)

    # -- HTTP ------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response | None:
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        if request.path.rstrip("/") != REGISTRY_PATH:
            return None
        if request.method != "POST":
            return _error(405, f"{request.method} is not allowed here; POST a JSON list")
        received_at, now = time.time(), time.monotonic()
        with self._lock:
            too_soon = (
                self._last_request is not None and now - self._last_request < self.min_interval_s
            )
            self._last_request = now
            support_id = self._support_ids.randrange(10**18, 10**19)
        try:
            queries = _parse_queries(request.body)
        except ValueError as error:
            self._record(received_at, now, 0, "blocked" if too_soon else "bad_request")
            if too_soon:
                return _waf_page(support_id)
            return _error(400, str(error))
        if too_soon:
            self._record(received_at, now, len(queries), "blocked")
            return _waf_page(support_id)
        if len(queries) > self.max_cuis:
            self._record(received_at, now, len(queries), "too_many_cuis")
            return Response.json(200, {"cod": 400, "message": TOO_MANY_CUIS_MESSAGE})
        found, not_found = self._answer(queries)
        self._record(received_at, now, len(queries), "answered", len(found), len(not_found))
        response = Response.json(200, {"found": found, "notFound": not_found})
        response.content_type = _JSON
        return response

    def _answer(self, queries: list[tuple[int, date]]) -> tuple[list[dict[str, Any]], list[int]]:
        customers = self._customers_by_cui()
        found: list[dict[str, Any]] = []
        not_found: list[int] = []
        for cui, on in dict.fromkeys(queries):
            record = self.record_for(cui, on, customers)
            if record is None:
                not_found.append(cui)
            else:
                found.append(record)
        return found, not_found

    def _record(
        self, received_at: float, now: float, count: int, outcome: str, *counts: int
    ) -> None:
        with self._lock:
            self._calls.append(RegistryCall(received_at, now, count, outcome, *counts))

    def _control(self, request: Request) -> Response | None:
        name = request.path.removeprefix(CONTROL_PREFIX).rstrip("/")
        if (request.method, name) == ("GET", "calls"):
            return Response.json(200, {"calls": [asdict(call) for call in self.calls]})
        if (request.method, name) == ("GET", "records"):
            on = dict(request.query).get("date") or date.today().isoformat()
            try:
                records = self.known_records(date.fromisoformat(on))
            except ValueError:
                return _error(400, f"date must be YYYY-MM-DD, got {on!r}")
            return Response.json(200, {"found": list(records.values())})
        if (request.method, name) == ("POST", "records"):
            try:
                loaded = self.add_records(request.json())
            except (ValueError, TypeError) as error:
                return _error(400, f"cannot load registry records: {error}")
            return Response.json(200, {"loaded": loaded})
        return None

    def _customers_by_cui(self) -> dict[str, dict[str, Any]]:
        by_cui: dict[str, dict[str, Any]] = {}
        for customer in self._stripe_customers():
            for cui in customer_cuis(customer):
                by_cui.setdefault(cui, customer)
        return by_cui

    def _stripe_customers(self) -> Iterator[dict[str, Any]]:
        """Every customer of the Stripe fake, read through its own API (with tax ids)."""
        if self.stripe is None:
            return
        after: str | None = None
        while True:
            query = [("limit", "100"), ("expand[]", "data.tax_ids")]
            if after:
                query.append(("starting_after", after))
            response = self.stripe.handle(
                Request("GET", "/v1/customers", query, {"Authorization": f"Bearer {_STRIPE_KEY}"})
            )
            if response is None or response.status != 200:
                raise RuntimeError(f"the Stripe fake did not list customers: {response}")
            page = json.loads(response.body)
            yield from page["data"]
            if not page["has_more"] or not page["data"]:
                return
            after = page["data"][-1]["id"]


# -- helpers ----------------------------------------------------------------------------------


def _parse_queries(body: bytes) -> list[tuple[int, date]]:
    try:
        items = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"the body is not JSON ({error})") from None
    if not isinstance(items, list):
        raise ValueError('the body must be a JSON list of {"cui": <number>, "data": "YYYY-MM-DD"}')
    queries = []
    for n, item in enumerate(items, 1):
        cui = item.get("cui") if isinstance(item, dict) else None
        if isinstance(cui, bool) or not isinstance(cui, int) or cui <= 0:
            raise ValueError(f"item {n}: cui must be a positive number without RO, got {cui!r}")
        try:
            on = date.fromisoformat(str(item.get("data")))
        except ValueError:
            raise ValueError(
                f"item {n}: data must be YYYY-MM-DD, got {item.get('data')!r}"
            ) from None
        queries.append((cui, on))
    return queries


def _waf_page(support_id: int) -> Response:
    body = _WAF_PAGE.format(support_id=support_id).encode()
    return Response(
        200, body, {"Cache-Control": "no-cache"}, content_type="text/html; charset=utf-8"
    )


def _error(status: int, message: str) -> Response:
    response = Response.json(status, {"cod": status, "message": message})
    response.content_type = _JSON
    return response


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(f"anaf-registry:{text}".encode()).digest()[:8], "big")


def _address(prefix: str) -> dict[str, str]:
    fields = (
        "denumire_Strada", "numar_Strada", "denumire_Localitate", "cod_Localitate",
        "denumire_Judet", "cod_Judet", "cod_JudetAuto", "tara", "detalii_Adresa", "cod_Postal",
    )  # fmt: skip
    return {prefix + name: "" for name in fields}


def _deep_merge(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass(frozen=True)
class _Address:
    street: str
    number: str
    locality: str
    locality_code: str
    plate: str
    postal_code: str
    details: str = ""


_STREET_AND_NUMBER = re.compile(
    r"^(?P<street>.+?)\s+nr\.?\s*(?P<number>[\w/-]+)(?:\s*,\s*(?P<details>.*))?$", re.IGNORECASE
)


def _derived_address(customer: dict[str, Any], rng: random.Random) -> _Address:
    """The customer's own Romanian address, spelled as ANAF spells it (cedillas, `Mun.`), when
    its county can be told; else a stable pick."""
    address = customer.get("address") or {}
    plate = _plate_code(address.get("state")) if address.get("country") == "RO" else None
    city = str(address.get("city") or "").strip()
    if not plate or not city:
        locality, plate, locality_code, postal = rng.choice(_LOCALITIES)
        return _Address(rng.choice(_STREETS), str(rng.randint(1, 180)), locality, locality_code,
                        plate, postal)  # fmt: skip
    line1 = str(address.get("line1") or "").strip()
    match = _STREET_AND_NUMBER.match(line1)
    street, number, details = (
        (match["street"], match["number"], match["details"] or "") if match else (line1, "", "")
    )
    details = ", ".join(part for part in (details, str(address.get("line2") or "")) if part)
    if plate == "B" and city.upper().startswith("SECTOR"):
        sector = city.split()[-1]
        locality, locality_code = f"Sector {sector} Mun. Bucureşti", sector
    else:
        locality, locality_code = f"Mun. {city}", str(rng.randint(1, 400))
    return _Address(
        _cedillas(street), number, _cedillas(locality), locality_code, plate,
        str(address.get("postal_code") or ""), _cedillas(details),
    )  # fmt: skip


def _cedillas(text: str) -> str:
    """ANAF's records mostly spell ș ț with cedillas (ş ţ)."""
    return text.translate(str.maketrans("șțȘȚ", "şţŞŢ"))


def _plate_code(state: Any) -> str | None:
    """`CJ`, `RO-CJ` or `Cluj` → `CJ`; None when the text names no county."""
    text = str(state or "").strip().upper().removeprefix("RO-")
    if f"RO-{text}" in COUNTY_NAMES:
        return text
    for code, name in COUNTY_NAMES.items():
        if _fold(name) == _fold(text):
            return code.removeprefix("RO-")
    return None


def _fold(text: str) -> str:
    table = str.maketrans("ĂÂÎȘŞȚŢăâîșşțţ", "AAISSTTaaisstt")
    return text.translate(table).upper()


def _anaf_county_name(plate: str) -> str:
    if plate == "B":
        return "MUNICIPIUL BUCUREŞTI"
    # ANAF writes cedilla forms in upper case: TIMIŞ, CONSTANŢA.
    return COUNTY_NAMES[f"RO-{plate}"].upper().replace("Ș", "Ş").replace("Ț", "Ţ")


def _county_prefix(plate: str, county: str) -> str:
    return county if plate == "B" else f"JUD. {county}"


def _tax_office(plate: str, locality: str) -> str:
    if plate == "B":
        sector = locality.split()[1] if locality.startswith("Sector") else "1"
        return f"Administraţia Sector {sector} a Finanţelor Publice"
    return f"Administraţia Judeţeană a Finanţelor Publice {COUNTY_NAMES[f'RO-{plate}']}"


_LEGAL_FORM = re.compile(
    r"\b(S\.?R\.?L\.?(-D\.?)?|S\.?A\.?|P\.?F\.?A\.?|I\.?I\.?|I\.?F\.?|S\.?N\.?C\.?|S\.?C\.?S\.?)$"
)


def _legal_name(name: Any, cui: str) -> str:
    """ANAF's `denumire`: the name in capitals, with a legal form (SRL when none is given)."""
    text = " ".join(str(name or "").split()).upper() or f"FIRMA {cui}"
    return text if _LEGAL_FORM.search(text) else f"{text} SRL"


def _after(start: date, rng: random.Random, year_limit: int) -> date:
    """A stable date after `start`, at the latest the end of `year_limit` (or start + 1 year)."""
    latest = max(date(year_limit, 12, 31), start + timedelta(days=365))
    return start + timedelta(days=rng.randint(1, (latest - start).days))


def _vat_period(start: date, end: date | None = None) -> dict[str, str]:
    return {
        "data_inceput_ScpTVA": start.isoformat(),
        "data_sfarsit_ScpTVA": end.isoformat() if end else "",
        "data_anul_imp_ScpTVA": end.isoformat() if end else "",
        "mesaj_ScpTVA": "",
    }
