"""A fake of ANAF's e-Factura REST API (EFACTURA.md §1, §8), for the sandbox server.

Paths, as on ANAF's hosts (the sandbox serves both hosts on one port):

- OAuth-protected, under `/test/FCTEL/rest/` and `/prod/FCTEL/rest/` (two separate environments:
  an index uploaded to `test` does not exist in `prod`): `POST upload`, `POST uploadb2c`,
  `GET stareMesaj`, `GET listaMesajeFactura`, `GET listaMesajePaginatieFactura`, `GET descarcare`.
  A missing or refused `Authorization: Bearer` token answers HTTP 401 JSON; `token_check(token)`
  decides (default: any non-empty token).
- Public, no auth, only under `/prod/FCTEL/rest/`: `POST validare/{FACT1|FCN}` and
  `POST transformare/{FACT1|FCN}[/DA]`. The `/test/` path answers 404 as ANAF's does. A relative
  `xsi:schemaLocation` or `;CP ` in the body gets the F5 firewall page, as on
  webservicesp.anaf.ro (§1.3).

What an upload goes through:
- bad parameters: HTTP 400 `{timestamp, status, error, message}` when one is missing; the XML
  `header` with `ExecutionStatus="1"` and `Errors` for a bad `standard`, a non-numeric `cif` or an
  optional other than `DA`; HTTP 403 for a `cif` written with `RO` (the classic mistake);
- otherwise an index (10 digits starting 50) and `ExecutionStatus="0"`. XML that is malformed or
  whose root does not match `standard` is at once `XML cu erori nepreluat de sistem` (no
  download). The rest is `in prelucrare` for `processing_seconds` of the sandbox clock, then
  `ok`, or `nok` when it breaks a rule the fake checks:
  * the seller's CUI in the XML differs from the `cif` parameter (the fake's wording), or is not
    among `known_sellers` when that set is given (ANAF's R6.1 wording);
  * a Romanian company buyer whose CUI the registry fake does not know (`registry.record_for`)
    or `buyer_known(cui)` refuses; the wording copies R6.1 for the buyer (R6.2 is the fake's);
  * the same invoice number, seller CUI and issue date were already accepted (`ok`) in that
    environment: "Factura a mai fost transmisa anterior cu index=N si data incarcare=YYYY-MM-DD".
  Messages settle in order of readiness, so of two identical uploads the first one wins.
- `descarcare` answers a zip with `<index>.xml` (the XML exactly as uploaded, or for `nok` the
  error header in `mesajEroriFactuta`) and `semnatura_<index>.xml`: the same document with an
  enveloped XML-DSig `Signature` as ANAF's test environment sends. Its DigestValue is the real
  SHA-256 of the exclusive C14N of the document, but the SignatureValue and certificate are
  made-up bytes: the signature is NOT cryptographically valid and says so in its subject name.

Limits, counted per Bucharest day of the sandbox clock, answered with ANAF's "S-au facut deja"
messages: `stareMesaj` 100 per message (XML `Errors`), `descarcare` 10 per message, lists 1500
(simple) and 100000 (paged) per CUI (JSON `eroare`). Lists keep 60 days; the paged list refuses an
`endTime` after the fake's clock, quoting that clock; pages hold 500 messages (`page_size`).
Messages appear in the lists `list_lag_seconds` after they settle (ANAF: seconds to ~15 min).

Fault knobs (`faults`, or `POST /_sandbox/anaf/faults` with the same fields; `GET` shows them):
`timeout_after_accept` (the next N uploads are recorded and indexed, then answered only after
`accept_delay_s`, beyond a client's timeout), `http_500`, `http_429`, `waf` (the next N calls,
optionally only to `operation`, e.g. "stareMesaj"). `GET /_sandbox/anaf/ledger` lists every
indexed upload (`ledger_entries()`), for "exactly once" checks.

Wordings not seen in a real ANAF answer are the fake's own (noted where they are built); clients
should key on the documented prefixes ("S-au facut deja", "Nu exista mesaje", ...).
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import threading
import unicodedata
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from lxml import etree

from invoicesync_dagster.sandbox.http import Clock, Request, Response

BUCHAREST = ZoneInfo("Europe/Bucharest")
ENVIRONMENTS = {"/test/FCTEL/rest/": "test", "/prod/FCTEL/rest/": "prod"}
CONTROL_PREFIX = "/_sandbox/anaf/"

NS_UPLOAD = "mfp:anaf:dgti:spv:respUploadFisier:v1"
NS_STATUS = "mfp:anaf:dgti:efactura:stareMesajFactura:v1"
NS_ERRORS = "mfp:anaf:dgti:efactura:mesajEroriFactuta:v1"  # sic, ANAF's spelling
NS_RASP = "mfp:anaf:dgti:spv:reqMesaj:v1"
NS_DSIG = "http://www.w3.org/2000/09/xmldsig#"
NS_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
NS_CREDIT_NOTE = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
NS_CII = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
NS_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
NS_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"

# The root element each upload `standard` (and each public-service kind) must carry.
UPLOAD_ROOTS = {
    "UBL": (NS_INVOICE, "Invoice"),
    "CN": (NS_CREDIT_NOTE, "CreditNote"),
    "CII": (NS_CII, "CrossIndustryInvoice"),
    "RASP": (NS_RASP, "header"),
}
PUBLIC_ROOTS = {"FACT1": UPLOAD_ROOTS["UBL"], "FCN": UPLOAD_ROOTS["CN"]}
OPTIONAL_FLAGS = ("extern", "autofactura", "executare")

FIRST_INDEX = 5_000_000_001
FIRST_DOWNLOAD_ID = 3_000_000_001
STATUS_LIMIT = 100
DOWNLOAD_LIMIT = 10
LIST_LIMIT = 1500
PAGED_LIST_LIMIT = 100_000
PAGE_SIZE = 500
RETENTION_DAYS = 60
MAX_XML_BYTES = 10 * 1024 * 1024

# ANAF's own strings (EFACTURA.md §1.5, OCA fixtures; CN added to the older standard list).
STANDARD_ERROR = "Valorile acceptate pentru parametrul standard sunt UBL, CN, CII sau RASP"
XML_ERRORS = "XML cu erori nepreluat de sistem"
NO_MESSAGES_DAYS = "Nu exista mesaje in ultimele {days} zile"
NO_MESSAGES_INTERVAL = "Nu exista mesaje in intervalul selectat"
LIST_TITLE = "Lista Mesaje"
DOWNLOAD_TITLE = "Descarcare mesaj"

_XML = "application/xml"
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_WAF_PAGE = (
    "<html><head><title>Request Rejected</title></head><body>The requested URL was rejected. "
    "Please consult with your administrator.<br><br>Your support ID is: {support_id}<br><br>"
    "<a href='javascript:history.back();'>[Go Back]</a></body></html>"
)
_SCHEMA_LOCATION = re.compile(rb"schemaLocation\s*=\s*[\"']([^\"']*)[\"']")


class State(StrEnum):
    IN_PROGRESS = "in prelucrare"
    OK = "ok"
    NOK = "nok"
    XML_ERRORS = XML_ERRORS


class Registry(Protocol):
    """What the fake asks the registry fake (`AnafRegistryFake.record_for`)."""

    def record_for(self, cui: int, on: date) -> dict[str, Any] | None: ...


# -- faults ------------------------------------------------------------------------------------


@dataclass
class AnafFaults:
    """Counters of faults still to inject; each fires on the next matching calls."""

    timeout_after_accept: int = 0  # uploads: recorded and indexed, then answered late
    accept_delay_s: float = 5.0  # how late; more than the client's timeout
    http_500: int = 0
    http_429: int = 0
    waf: int = 0
    operation: str | None = None  # http_500/http_429/waf only for this operation, e.g. "upload"

    def update(self, changes: Any) -> None:
        if not isinstance(changes, dict):
            raise ValueError('faults must be a JSON object, e.g. {"http_500": 2}')
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown fault field(s) {unknown}; allowed: {sorted(known)}")
        for name, value in changes.items():
            if name == "operation":
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"operation must be a string or null, got {value!r}")
            elif name == "accept_delay_s":
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError(f"accept_delay_s must be a number >= 0, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
            setattr(self, name, value)


# -- what the fake keeps ----------------------------------------------------------------------


@dataclass
class _Document:
    """What the fake reads from an uploaded XML."""

    number: str = ""
    issue_date: str = ""
    seller_cui: str = ""
    buyer_cui: str = ""  # a Romanian company's CUI, digits only; "" for persons and foreigners
    buyer_id: str = ""  # whatever identifies the buyer, for the list's `detalii`


@dataclass
class _Upload:
    index: int
    environment: str
    cif: str
    standard: str
    b2c: bool
    flags: tuple[str, ...]
    xml: bytes
    received_at: int
    ready_at: int
    document: _Document
    problems: list[str]  # rule breaches found at upload; the duplicate check comes at settling
    state: State = State.IN_PROGRESS
    errors: list[str] = field(default_factory=list)
    download_id: int | None = None
    settled_at: int | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.xml).hexdigest()

    @property
    def duplicate_key(self) -> tuple[str, str, str, str] | None:
        doc = self.document
        if self.standard not in ("UBL", "CN") or not doc.number:
            return None
        return (self.environment, doc.seller_cui, doc.number, doc.issue_date)


# -- the fake ---------------------------------------------------------------------------------


class AnafEfacturaFake:
    """ANAF e-Factura, a `Fake` for `SandboxServer.mount`."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        registry: Registry | None = None,
        buyer_known: Callable[[str], bool] | None = None,
        token_check: Callable[[str], bool] | None = None,
        known_sellers: Iterable[str] | None = None,
        processing_seconds: int = 60,
        list_lag_seconds: int = 0,
        page_size: int = PAGE_SIZE,
        status_limit: int = STATUS_LIMIT,
        download_limit: int = DOWNLOAD_LIMIT,
        list_limit: int = LIST_LIMIT,
        paged_list_limit: int = PAGED_LIST_LIMIT,
    ) -> None:
        if processing_seconds < 0 or list_lag_seconds < 0 or page_size < 1:
            raise ValueError("processing_seconds, list_lag_seconds must be >= 0, page_size >= 1")
        self.clock = clock or Clock()
        self.registry = registry
        self.buyer_known = buyer_known
        self.token_check = token_check or (lambda token: bool(token))
        self.known_sellers = None if known_sellers is None else {str(c) for c in known_sellers}
        self.processing_seconds = processing_seconds
        self.list_lag_seconds = list_lag_seconds
        self.page_size = page_size
        self.limits = {
            "stareMesaj": status_limit,
            "descarcare": download_limit,
            "listaMesajeFactura": list_limit,
            "listaMesajePaginatieFactura": paged_list_limit,
        }
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._wake.set()  # release uploads held by timeout_after_accept
            self._wake = threading.Event()
            self.faults = AnafFaults()
            self._uploads: dict[int, _Upload] = {}
            self._by_download: dict[int, _Upload] = {}
            self._accepted: dict[tuple[str, str, str, str], _Upload] = {}
            self._calls: Counter[tuple[str, str, date]] = Counter()
            self._next_index = FIRST_INDEX
            self._next_download = FIRST_DOWNLOAD_ID
            self._support_ids = 7_000_000_000_000_000_001

    # -- for tests and the server ---------------------------------------------------------

    def ledger_entries(self) -> list[dict[str, Any]]:
        """One entry per upload that got an index, oldest first, with its state now."""
        with self._lock:
            self._settle(self.clock.now())
            return [
                {
                    "index": str(u.index),
                    "environment": u.environment,
                    "cif": u.cif,
                    "standard": u.standard,
                    "b2c": u.b2c,
                    "invoice_number": u.document.number,
                    "issue_date": u.document.issue_date,
                    "xml_sha256": u.sha256,
                    "received_at": datetime.fromtimestamp(u.received_at, UTC).isoformat(),
                    "state": str(u.state),
                    "download_id": None if u.download_id is None else str(u.download_id),
                }
                for u in self._uploads.values()
            ]

    # -- HTTP ------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response | None:
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        for prefix, environment in ENVIRONMENTS.items():
            if request.path.startswith(prefix):
                return self._api(request, environment, request.path[len(prefix) :])
        return None

    def _api(self, request: Request, environment: str, name: str) -> Response:
        operation = name.split("/", 1)[0]
        public = operation in ("validare", "transformare")
        fault = self._injected_fault(operation)
        if fault is not None:
            return fault
        if public:
            if environment != "prod":  # ANAF serves these on the prod path only
                return self._not_found(request)
            return self._public(request, name)
        routes: dict[str, tuple[str, Callable[[Request, str], Response]]] = {
            "upload": ("POST", self._upload),
            "uploadb2c": ("POST", self._upload),
            "stareMesaj": ("GET", self._status),
            "listaMesajeFactura": ("GET", self._list_days),
            "listaMesajePaginatieFactura": ("GET", self._list_paged),
            "descarcare": ("GET", self._download),
        }
        if name not in routes:
            return self._not_found(request)
        method, answer = routes[name]
        if request.method != method:
            return self._custom_error(405, "Method Not Allowed", f"{request.method} not supported")
        token = _bearer(request)
        if not token or not self.token_check(token):
            response = self._custom_error(
                401, "Unauthorized", "Invalid or missing access token (Bearer)"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="ANAF"'
            return response
        return answer(request, environment)

    # -- upload -----------------------------------------------------------------------------

    def _upload(self, request: Request, environment: str) -> Response:
        now = self.clock.now()
        query = dict(request.query)
        for required in ("standard", "cif"):
            if not query.get(required):
                return self._custom_error(
                    400, "Bad Request", f"Parametrul {required} este obligatoriu"
                )
        standard, cif = query["standard"], query["cif"]
        if cif.upper().startswith("RO"):
            # ANAF refuses the URL outright: the caller has no rights on "RO123" (§7).
            return self._custom_error(403, "Forbidden", "Access Denied")
        if standard not in UPLOAD_ROOTS:
            return _upload_rejected(now, STANDARD_ERROR)
        if not cif.isdigit():
            return _upload_rejected(now, f"CIF introdus= {cif} nu este un numar")  # fake wording
        for flag in OPTIONAL_FLAGS:
            if flag in query and query[flag] != "DA":
                return _upload_rejected(
                    now, f"Valoarea acceptata pentru parametrul {flag} este DA"
                )  # fake wording
        if not request.body:
            return _upload_rejected(now, "Fisierul transmis este gol")  # fake wording
        if len(request.body) > MAX_XML_BYTES:
            return _upload_rejected(
                now, "Fisierul transmis depaseste dimensiunea maxima admisa"
            )  # fake wording
        flags = tuple(flag for flag in OPTIONAL_FLAGS if query.get(flag) == "DA")
        b2c = request.path.endswith("/uploadb2c")
        document, well_formed = _read_upload(request.body, standard)
        # Outside the lock: the registry fake reads the Stripe fake.
        problems = self._rule_problems(cif, document, b2c, flags) if well_formed else []
        with self._lock:
            index = self._next_index
            self._next_index += 1
            upload = _Upload(
                index=index,
                environment=environment,
                cif=cif,
                standard=standard,
                b2c=b2c,
                flags=flags,
                xml=request.body,
                received_at=now,
                ready_at=now + self.processing_seconds,
                document=document,
                problems=problems,
            )
            if not well_formed:
                upload.state = State.XML_ERRORS
                upload.settled_at = now
            self._uploads[index] = upload
            late = self.faults.timeout_after_accept > 0
            if late:
                self.faults.timeout_after_accept -= 1
            delay, wake = self.faults.accept_delay_s, self._wake
        if late:
            wake.wait(delay)  # the upload stands; only the answer is late
        header = etree.Element(
            f"{{{NS_UPLOAD}}}header",
            dateResponse=_bucharest(now).strftime("%Y%m%d%H%M"),
            ExecutionStatus="0",
            index_incarcare=str(index),
            nsmap={None: NS_UPLOAD},
        )
        return _xml_response(header)

    def _rule_problems(
        self, cif: str, doc: _Document, b2c: bool, flags: tuple[str, ...]
    ) -> list[str]:
        problems = []
        # Self-billing (autofactura=DA): the buyer files in the seller's name.
        uploader, role = (
            (doc.buyer_cui, "cumparatorului") if "autofactura" in flags else (doc.seller_cui, "")
        )
        if uploader and uploader != cif:
            problems.append(  # fake wording
                f"E: validari globale\n eroare regula: R6.1: CIF-ul {role or 'vanzatorului'} din "
                f"factura ({uploader}) nu corespunde cu CIF-ul pentru care s-a facut incarcarea "
                f"({cif})"
            )
        elif self.known_sellers is not None and cif not in self.known_sellers:
            problems.append(
                "E: validari globale\n eroare regula: R6.1: CIF-ul vanzatorului nu figureaza in "
                f"baza de date:{cif}"
            )
        if doc.buyer_cui and not b2c and "extern" not in flags and not self._buyer_ok(doc):
            problems.append(  # R6.1's wording, for the buyer
                "E: validari globale\n eroare regula: R6.2: CIF-ul cumparatorului nu figureaza "
                f"in baza de date:{doc.buyer_cui}"
            )
        return problems

    def _buyer_ok(self, doc: _Document) -> bool:
        if self.buyer_known is not None:
            return self.buyer_known(doc.buyer_cui)
        if self.registry is None:
            return True
        try:
            on = date.fromisoformat(doc.issue_date)
        except ValueError:
            on = _bucharest(self.clock.now()).date()
        return self.registry.record_for(int(doc.buyer_cui), on) is not None

    # -- processing -------------------------------------------------------------------------

    def _settle(self, now: int) -> None:
        """Give every message whose processing time is over its outcome (lock held)."""
        due = sorted(
            (u for u in self._uploads.values() if u.state is State.IN_PROGRESS),
            key=lambda u: (u.ready_at, u.index),
        )
        for upload in due:
            if upload.ready_at > now:
                break
            errors = list(upload.problems)
            key = upload.duplicate_key
            first = self._accepted.get(key) if key else None
            if first is not None:
                errors.append(
                    f"Factura a mai fost transmisa anterior cu index={first.index} si data "
                    f"incarcare={_bucharest(first.received_at):%Y-%m-%d}"
                )
            upload.errors = errors
            upload.state = State.NOK if errors else State.OK
            if key and not errors:
                self._accepted[key] = upload
            upload.download_id = self._next_download
            self._next_download += 1
            upload.settled_at = upload.ready_at
            self._by_download[upload.download_id] = upload

    def _count(self, operation: str, key: str, now: int) -> tuple[int, int]:
        """Count one call (lock held); (calls today including this one, the daily limit)."""
        counter = (operation, key, _bucharest(now).date())
        self._calls[counter] += 1
        return self._calls[counter], self.limits[operation]

    # -- stareMesaj -------------------------------------------------------------------------

    def _status(self, request: Request, environment: str) -> Response:
        raw = dict(request.query).get("id_incarcare")
        if raw is None:
            return self._custom_error(
                400, "Bad Request", "Parametrul id_incarcare este obligatoriu"
            )
        if not raw.strip().isdigit():
            return _status_error(f"Id_incarcare introdus= {raw} nu este un numar intreg")
        index = int(raw)
        now = self.clock.now()
        with self._lock:
            self._settle(now)
            upload = self._uploads.get(index)
            if upload is None or upload.environment != environment:
                return _status_error(f"Nu exista factura cu id_incarcare= {index}")
            calls, limit = self._count("stareMesaj", str(index), now)
            if calls > limit:
                return _status_error(  # the fake's wording, shaped like ANAF's other limits
                    f"S-au facut deja {limit} interogari de stare pentru mesajul cu "
                    f"id_incarcare= {index} in cursul zilei"
                )
            attributes = {"stare": str(upload.state)}
            if upload.download_id is not None:
                attributes["id_descarcare"] = str(upload.download_id)
        return _xml_response(
            etree.Element(f"{{{NS_STATUS}}}header", attributes, nsmap={None: NS_STATUS})
        )

    # -- lists ------------------------------------------------------------------------------

    def _list_days(self, request: Request, environment: str) -> Response:
        query = dict(request.query)
        problem = self._list_params(query, ("zile", "cif"))
        if problem is not None:
            return problem
        cif, days = query["cif"], query["zile"]
        if not days.strip().lstrip("-").isdigit():
            return _list_error(f"Numarul de zile introdus= {days} nu este un numar intreg")
        if not 1 <= int(days) <= RETENTION_DAYS:
            return _list_error(f"Numarul de zile trebuie sa fie intre 1 si {RETENTION_DAYS}")
        now = self.clock.now()
        with self._lock:
            limited = self._over_limit("listaMesajeFactura", cif, now, "simpla")
            if limited is not None:
                return limited
            self._settle(now)
            messages = self._messages(environment, cif, now - int(days) * 86400, now, query)
        if not messages:
            return _list_error(NO_MESSAGES_DAYS.format(days=int(days)))
        if len(messages) > self.page_size:
            return _list_error(  # fake wording
                f"Lista de mesaje este mai mare decat numarul de {self.page_size} elemente "
                "permise in pagina. Folositi endpoint-ul cu paginatie."
            )
        return _json(
            {
                "mesaje": messages,
                "serial": _serial(cif, now),
                "cui": cif,
                "titlu": f"Lista Mesaje disponibile din ultimele {int(days)} zile",
            }
        )

    def _list_paged(self, request: Request, environment: str) -> Response:
        query = dict(request.query)
        problem = self._list_params(query, ("startTime", "endTime", "cif", "pagina"))
        if problem is not None:
            return problem
        cif = query["cif"]
        for name in ("startTime", "endTime", "pagina"):
            if not query[name].strip().isdigit():
                return _list_error(f"{name} introdus= {query[name]} nu este un numar intreg")
        start_ms, end_ms, page = (int(query[n]) for n in ("startTime", "endTime", "pagina"))
        now = self.clock.now()
        if end_ms > now * 1000:  # wording of the fake; ANAF quotes its own clock too
            return _list_error(
                f"endTime = {end_ms} nu poate fi in viitor; data curenta a serverului este "
                f"{now * 1000} ({_bucharest(now):%d-%m-%Y %H:%M:%S})"
            )
        if start_ms < (now - RETENTION_DAYS * 86400) * 1000:
            return _list_error(
                f"startTime = {start_ms} nu poate fi mai vechi de {RETENTION_DAYS} de zile"
            )
        if start_ms > end_ms:
            return _list_error("startTime nu poate fi mai mare decat endTime")
        if page < 1:
            return _list_error(f"pagina introdusa= {page} trebuie sa fie cel putin 1")
        with self._lock:
            limited = self._over_limit("listaMesajePaginatieFactura", cif, now, "cu paginatie")
            if limited is not None:
                return limited
            self._settle(now)
            # Milliseconds to the second the fake keeps, both ends inclusive.
            messages = self._messages(environment, cif, -(-start_ms // 1000), end_ms // 1000, query)
        if not messages:
            return _list_error(NO_MESSAGES_INTERVAL)
        pages = -(-len(messages) // self.page_size)
        if page > pages:
            return _list_error(  # fake wording
                f"Pagina solicitata {page} este mai mare decat numarul total de pagini {pages}"
            )
        chunk = messages[(page - 1) * self.page_size : page * self.page_size]
        return _json(
            {
                "mesaje": chunk,
                "numar_inregistrari_in_pagina": len(chunk),
                "numar_total_inregistrari_per_pagina": self.page_size,
                "numar_total_inregistrari": len(messages),
                "numar_total_pagini": pages,
                "index_pagina_curenta": page,
                "serial": _serial(cif, now),
                "cui": cif,
                "titlu": LIST_TITLE,
            }
        )

    def _list_params(self, query: dict[str, str], required: tuple[str, ...]) -> Response | None:
        for name in required:
            if not query.get(name):
                return self._custom_error(400, "Bad Request", f"Parametrul {name} este obligatoriu")
        cif = query["cif"]
        if cif.upper().startswith("RO"):
            return self._custom_error(403, "Forbidden", "Access Denied")
        if not cif.isdigit():
            return _list_error(f"CIF introdus= {cif} nu este un numar")
        if self.known_sellers is not None and cif not in self.known_sellers:
            return _list_error(f"Nu aveti drept in SPV pentru CIF={cif}")
        if query.get("filtru") not in (None, "E", "T", "P", "R"):
            return _list_error("Valorile acceptate pentru parametrul filtru sunt E, T, P sau R")
        return None

    def _over_limit(self, operation: str, cif: str, now: int, what: str) -> Response | None:
        calls, limit = self._count(operation, cif, now)
        if calls <= limit:
            return None
        return _list_error(
            f"S-au facut deja {limit} de interogari de tip lista mesaje {what} de catre "
            f"CUI={cif} in cursul zilei"
        )

    def _messages(
        self, environment: str, cif: str, start: int, end: int, query: dict[str, str]
    ) -> list[dict[str, str]]:
        """The list entries of `cif` created within [start, end] (lock held), oldest first."""
        wanted = {"E": "ERORI FACTURA", "T": "FACTURA TRIMISA", "P": "FACTURA PRIMITA", "R": ""}
        kinds = {wanted[query["filtru"]]} if query.get("filtru") else None
        entries = []
        for upload in self._by_download.values():
            listed_at = (upload.settled_at or 0) + self.list_lag_seconds
            if upload.environment != environment or not start <= listed_at <= end:
                continue
            for kind, details in _list_kinds(upload, cif):
                if kinds is None or kind in kinds:
                    entries.append(
                        {
                            "data_creare": _bucharest(listed_at).strftime("%Y%m%d%H%M"),
                            "cif": cif,
                            "id_solicitare": str(upload.index),
                            "detalii": details,
                            "tip": kind,
                            "id": str(upload.download_id),
                        }
                    )
        return entries

    # -- descarcare -------------------------------------------------------------------------

    def _download(self, request: Request, environment: str) -> Response:
        raw = dict(request.query).get("id")
        if raw is None:
            return self._custom_error(400, "Bad Request", "Parametrul id este obligatoriu")
        if not raw.strip().isdigit():
            return _download_error(f"Id descarcare introdus= {raw} nu este un numar intreg")
        download_id = int(raw)
        now = self.clock.now()
        with self._lock:
            self._settle(now)
            upload = self._by_download.get(download_id)
            if upload is None or upload.environment != environment:
                return _download_error(
                    f"Pentru id={download_id} nu exista inregistrata nici o factura"
                )
            if now - (upload.settled_at or now) > RETENTION_DAYS * 86400:
                return _download_error(
                    "Fisierul nu mai poate fi descarcat pentru ca a trecut perioada de "
                    f"{RETENTION_DAYS} de zile in care este disponibil"
                )
            calls, limit = self._count("descarcare", str(download_id), now)
            if calls > limit:
                return _download_error(
                    f"S-au facut deja {limit} descarcari la mesajul cu id_descarcare="
                    f"{download_id} in cursul zilei"
                )
        body = _answer_zip(upload)
        return Response(
            200,
            body,
            {"Content-Disposition": f'attachment; filename="{download_id}.zip"'},
            content_type="application/zip",
        )

    # -- validare / transformare (public) ---------------------------------------------------

    def _public(self, request: Request, name: str) -> Response:
        parts = name.split("/")
        operation, kind = parts[0], parts[1] if len(parts) > 1 else ""
        skip_validation = operation == "transformare" and parts[2:] == ["DA"]
        if len(parts) > (3 if operation == "transformare" else 2) or (
            len(parts) == 3 and not skip_validation
        ):
            return self._not_found(request)
        if request.method != "POST":
            return self._custom_error(405, "Method Not Allowed", f"{request.method} not supported")
        if kind not in PUBLIC_ROOTS:
            return self._custom_error(  # fake wording
                400, "Bad Request", "Valorile acceptate pentru parametrul standard sunt FACT1, FCN"
            )
        if _waf_trigger(request.body):
            with self._lock:
                return self._waf_page()
        messages, root = _basic_checks(request.body, kind)
        if operation == "validare" or (messages and (root is None or not skip_validation)):
            payload: dict[str, Any] = {"stare": "nok" if messages else "ok"}
            if messages:
                payload["Messages"] = [{"message": m} for m in messages]
            payload["trace_id"] = str(uuid.uuid4())
            return _json(payload)
        assert root is not None
        return Response(200, render_pdf(_pdf_lines(root, kind)), content_type="application/pdf")

    # -- control --------------------------------------------------------------------------

    def _control(self, request: Request) -> Response | None:
        name = request.path.removeprefix(CONTROL_PREFIX).rstrip("/")
        if (request.method, name) == ("GET", "ledger"):
            return Response.json(200, {"uploads": self.ledger_entries()})
        if (request.method, name) == ("GET", "faults"):
            with self._lock:
                return Response.json(200, asdict(self.faults))
        if (request.method, name) == ("POST", "faults"):
            try:
                changes = request.json()
                with self._lock:
                    self.faults.update(changes)
                    return Response.json(200, asdict(self.faults))
            except ValueError as error:
                return Response.json(400, {"error": {"message": f"ANAF faults: {error}"}})
        return None

    # -- shared answers ---------------------------------------------------------------------

    def _injected_fault(self, operation: str) -> Response | None:
        with self._lock:
            faults = self.faults
            if faults.operation not in (None, operation):
                return None
            if faults.http_429 > 0:
                faults.http_429 -= 1
                return self._custom_error(429, "Too Many Requests", "Too Many Requests")
            if faults.http_500 > 0:
                faults.http_500 -= 1
                return self._custom_error(500, "Internal Server Error", "Eroare interna")
            if faults.waf > 0:
                faults.waf -= 1
                return self._waf_page()
        return None

    def _waf_page(self) -> Response:
        """The F5 page (lock held, for the support id)."""
        support_id = self._support_ids
        self._support_ids += 7919
        body = _WAF_PAGE.format(support_id=support_id).encode()
        return Response(200, body, {"Cache-Control": "no-cache"}, "text/html; charset=utf-8")

    def _custom_error(self, status: int, error: str, message: str) -> Response:
        """ANAF's `CustomErrorMessage` (§1.3)."""
        timestamp = _bucharest(self.clock.now()).strftime("%d-%m-%Y %H:%M:%S")
        return Response.json(
            status, {"timestamp": timestamp, "status": status, "error": error, "message": message}
        )

    def _not_found(self, request: Request) -> Response:
        return self._custom_error(404, "Not Found", f"No message available ({request.path})")


# -- reading uploads --------------------------------------------------------------------------


def _parser() -> etree.XMLParser:
    """No entities, no DTDs, no network, no huge trees: uploads are untrusted."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse_untrusted(xml: bytes) -> etree._Element:
    """The root of `xml`; etree.XMLSyntaxError (or ValueError for a DOCTYPE) when unusable."""
    root = etree.fromstring(xml, _parser())
    if root.getroottree().docinfo.doctype:
        raise ValueError("a DOCTYPE is not allowed")
    return root


def _read_upload(xml: bytes, standard: str) -> tuple[_Document, bool]:
    """What the fake needs from an upload, and whether it is well-formed with the right root."""
    try:
        root = parse_untrusted(xml)
    except (etree.XMLSyntaxError, ValueError):
        return _Document(), False
    if etree.QName(root) != etree.QName(*UPLOAD_ROOTS[standard]):
        return _Document(), False
    if standard not in ("UBL", "CN"):
        return _Document(), True
    return _ubl_document(root), True


def _ubl_document(root: etree._Element) -> _Document:
    ns = {"cac": NS_CAC, "cbc": NS_CBC}

    def texts(path: str) -> list[str]:
        return [str(t).strip() for t in root.xpath(path + "/text()", namespaces=ns)]

    def first(path: str) -> str:
        return next(iter(texts(path)), "")

    seller = "cac:AccountingSupplierParty/cac:Party"
    buyer = "cac:AccountingCustomerParty/cac:Party"
    seller_cui = next(
        (c for c in map(_cui_digits, texts(f"{seller}/cac:PartyTaxScheme/cbc:CompanyID")) if c),
        _cui_digits(first(f"{seller}/cac:PartyLegalEntity/cbc:CompanyID")),
    )
    buyer_country = first(f"{buyer}/cac:PostalAddress/cac:Country/cbc:IdentificationCode")
    buyer_vat = first(f"{buyer}/cac:PartyTaxScheme/cbc:CompanyID")
    buyer_legal = first(f"{buyer}/cac:PartyLegalEntity/cbc:CompanyID")
    buyer_cui = ""
    if buyer_country == "RO":
        if buyer_vat.upper().startswith("RO"):
            buyer_cui = _cui_digits(buyer_vat)
        elif 2 <= len(buyer_legal) <= 10:  # a 13-digit CNP is a person, not in the registry
            buyer_cui = _cui_digits(buyer_legal)
    buyer_id = buyer_cui or re.sub(r"[^0-9A-Za-z]", "", buyer_vat or buyer_legal)
    return _Document(
        number=first("cbc:ID"),
        issue_date=first("cbc:IssueDate"),
        seller_cui=seller_cui,
        buyer_cui=buyer_cui,
        buyer_id=buyer_id,
    )


def _cui_digits(raw: str) -> str:
    """`RO 123` → `123`; "" when what is left is not 2-10 digits (a CNP, a foreign id)."""
    text = re.sub(r"[\s.\-]", "", raw).upper().removeprefix("RO")
    return text.lstrip("0") if text.isdigit() and 2 <= len(text) <= 10 else ""


def _list_kinds(upload: _Upload, cif: str) -> list[tuple[str, str]]:
    """(tip, detalii) of the list entries `cif` sees for one settled upload: the uploader sees
    it sent (or its errors), the other party received."""
    doc, index = upload.document, upload.index
    if "autofactura" in upload.flags:
        counterpart = doc.seller_cui
        details = (
            f"Factura cu id_incarcare={index} transmisa de cif={upload.cif} ca autofactura "
            f"in numele cif={counterpart}"
        )
    else:
        counterpart = doc.buyer_cui
        details = (
            f"Factura cu id_incarcare={index} emisa de cif_emitent={upload.cif} "
            f"pentru cif_beneficiar={doc.buyer_id or '0'}"
        )
    if cif == upload.cif and upload.state is State.NOK:
        return [("ERORI FACTURA", f"Erori de validare identificate la factura primita cu "
                 f"id_incarcare={index}")]  # fmt: skip
    kinds = []
    if upload.state is State.OK and cif == upload.cif:
        kinds.append(("FACTURA TRIMISA", details))
    if upload.state is State.OK and cif == counterpart:  # both when seller and buyer are one
        kinds.append(("FACTURA PRIMITA", details))
    return kinds


# -- answers ----------------------------------------------------------------------------------


def _xml_bytes(root: etree._Element) -> bytes:
    """With the declaration as ANAF writes it (double quotes, standalone)."""
    return _DECLARATION + etree.tostring(root, encoding="UTF-8")


def _xml_response(root: etree._Element) -> Response:
    return Response(200, _xml_bytes(root), content_type=_XML)


def _upload_rejected(now: int, message: str) -> Response:
    header = etree.Element(
        f"{{{NS_UPLOAD}}}header",
        dateResponse=_bucharest(now).strftime("%Y%m%d%H%M"),
        ExecutionStatus="1",
        nsmap={None: NS_UPLOAD},
    )
    etree.SubElement(header, f"{{{NS_UPLOAD}}}Errors", errorMessage=message)
    return _xml_response(header)


def _status_error(message: str) -> Response:
    header = etree.Element(f"{{{NS_STATUS}}}header", nsmap={None: NS_STATUS})
    etree.SubElement(header, f"{{{NS_STATUS}}}Errors", errorMessage=message)
    return _xml_response(header)


def _json(payload: dict[str, Any]) -> Response:
    response = Response.json(200, payload)
    response.content_type = "application/json;charset=UTF-8"
    return response


def _list_error(message: str) -> Response:
    return _json({"eroare": message, "titlu": LIST_TITLE})


def _download_error(message: str) -> Response:
    response = _json({"eroare": message, "titlu": DOWNLOAD_TITLE})
    response.content_type = "text/plain;charset=UTF-8"  # ANAF labels these text/plain at times
    return response


def _serial(cif: str, now: int) -> str:
    return hashlib.sha256(f"{cif}:{now}".encode()).hexdigest()[:16]


def _bearer(request: Request) -> str:
    value = request.header("Authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _bucharest(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, BUCHAREST)


def _waf_trigger(body: bytes) -> bool:
    """What makes ANAF's firewall reject a public-service call (§1.3): a relative
    `xsi:schemaLocation`, or `;CP ` (e.g. in an address)."""
    if b";CP " in body:
        return True
    for match in _SCHEMA_LOCATION.finditer(body):
        locations = match.group(1).split()[1::2]  # pairs of namespace, location
        if any(b"://" not in location for location in locations):
            return True
    return False


# -- the zip and its signature ----------------------------------------------------------------


def _answer_zip(upload: _Upload) -> bytes:
    if upload.state is State.OK:
        document = upload.xml
    else:
        header = etree.Element(
            f"{{{NS_ERRORS}}}header",
            Index_incarcare=str(upload.index),
            Cif_emitent=upload.cif,
            nsmap={None: NS_ERRORS},
        )
        for message in upload.errors:
            etree.SubElement(header, f"{{{NS_ERRORS}}}Error", errorMessage=message)
        document = _xml_bytes(header)
    signed = sign_enveloped(document)
    stamp = _bucharest(upload.settled_at or upload.received_at).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in ((f"{upload.index}.xml", document),
                           (f"semnatura_{upload.index}.xml", signed)):  # fmt: skip
            archive.writestr(zipfile.ZipInfo(name, date_time=stamp), data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def sign_enveloped(document: bytes) -> bytes:
    """`document` with an XML-DSig `Signature` appended to its root, shaped as ANAF's test
    environment signs (exclusive C14N, RSA-SHA256, enveloped, `Reference URI=""`). The digest is
    real; the signature value and the certificate are NOT: this proves nothing cryptographically."""
    root = parse_untrusted(document)
    digest = hashlib.sha256(etree.tostring(root, method="c14n", exclusive=True)).digest()
    value = b"".join(hashlib.sha512(digest + bytes([n])).digest() for n in range(4))  # 256 B
    certificate = b"".join(hashlib.sha256(b"invoicesync sandbox" + bytes([n])).digest()
                           for n in range(24))  # fmt: skip
    algorithms = (
        ("CanonicalizationMethod", "http://www.w3.org/2001/10/xml-exc-c14n#"),
        ("SignatureMethod", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
    )

    def sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> Any:
        element = etree.SubElement(parent, f"{{{NS_DSIG}}}{tag}", attrs)
        element.text = text
        return element

    signature = etree.SubElement(root, f"{{{NS_DSIG}}}Signature", nsmap={None: NS_DSIG})
    signed_info = sub(signature, "SignedInfo")
    for tag, algorithm in algorithms:
        sub(signed_info, tag, Algorithm=algorithm)
    reference = sub(signed_info, "Reference", URI="")
    transforms = sub(reference, "Transforms")
    sub(transforms, "Transform", Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature")
    sub(reference, "DigestMethod", Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
    sub(reference, "DigestValue", base64.b64encode(digest).decode())
    sub(signature, "SignatureValue", base64.b64encode(value).decode())
    x509 = sub(sub(signature, "KeyInfo"), "X509Data")
    sub(
        x509,
        "X509SubjectName",
        "CN=ANAF SANDBOX,OU=invoicesync sandbox - NOT A VALID SIGNATURE,O=ANAF-TEST,"
        "L=Bucharest,ST=Bucharest,C=RO",
    )
    sub(x509, "X509Certificate", base64.b64encode(certificate).decode())
    return etree.tostring(root, encoding="UTF-8")


# -- the public services ----------------------------------------------------------------------


def _basic_checks(xml: bytes, kind: str) -> tuple[list[str], etree._Element | None]:
    """A few of the checks ANAF's validator runs (EN 16931 BR texts); (messages, root)."""
    try:
        root = parse_untrusted(xml)
    except (etree.XMLSyntaxError, ValueError) as error:
        return [f"Fisierul XML nu este bine format: {error}"], None  # fake wording
    namespace, local = PUBLIC_ROOTS[kind]
    if etree.QName(root) != etree.QName(namespace, local):
        return [
            f"Pentru standardul {kind} elementul radacina trebuie sa fie {local} din "
            f"{namespace}, nu {etree.QName(root).localname}"  # fake wording
        ], None
    ns = {"cac": NS_CAC, "cbc": NS_CBC}

    def present(path: str) -> bool:
        return any(str(t).strip() for t in root.xpath(path + "/text()", namespaces=ns))

    checks = (
        ("cbc:CustomizationID",
         "[BR-01]-An Invoice shall have a Specification identifier (BT-24)."),
        ("cbc:ID", "[BR-02]-An Invoice shall have an Invoice number (BT-1)."),
        ("cbc:IssueDate", "[BR-03]-An Invoice shall have an Invoice issue date (BT-2)."),
        ("cbc:DocumentCurrencyCode",
         "[BR-05]-An Invoice shall have an Invoice currency code (BT-5)."),
        ("cac:AccountingSupplierParty/cac:Party/cac:PartyLegalEntity/cbc:RegistrationName",
         "[BR-06]-An Invoice shall contain the Seller name (BT-27)."),
        ("cac:AccountingCustomerParty/cac:Party/cac:PartyLegalEntity/cbc:RegistrationName",
         "[BR-07]-An Invoice shall contain the Buyer name (BT-44)."),
    )  # fmt: skip
    return [message for path, message in checks if not present(path)], root


def _pdf_lines(root: etree._Element, kind: str) -> list[str]:
    ns = {"cac": NS_CAC, "cbc": NS_CBC}

    def first(path: str) -> str:
        return next((str(t).strip() for t in root.xpath(path + "/text()", namespaces=ns)), "")

    party = "cac:Accounting{}Party/cac:Party/cac:PartyLegalEntity/cbc:RegistrationName"
    return [
        "Factura" if kind == "FACT1" else "Factura storno (nota de creditare)",
        f"Numar: {first('cbc:ID')}   Data emiterii: {first('cbc:IssueDate')}",
        f"Furnizor: {first(party.format('Supplier'))}",
        f"Cumparator: {first(party.format('Customer'))}",
        f"Total de plata: {first('cac:LegalMonetaryTotal/cbc:PayableAmount')} "
        f"{first('cbc:DocumentCurrencyCode')}",
        "Document generat de sandbox-ul invoicesync (nu de ANAF).",
    ]


def render_pdf(lines: list[str]) -> bytes:
    """A one-page A4 PDF 1.4 showing `lines` in Helvetica (diacritics folded to ASCII)."""
    text = ["BT", "/F1 11 Tf", "14 TL", "50 800 Td"]
    for line in lines:
        ascii_line = unicodedata.normalize("NFKD", line).encode("ascii", "ignore").decode()
        escaped = ascii_line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        text.append(f"({escaped}) Tj T*")
    text.append("ET")
    stream = "\n".join(text).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
