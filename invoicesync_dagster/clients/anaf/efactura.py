"""Client for ANAF's e-Factura REST API (EFACTURA.md §1, §8).

Two hosts: the OAuth one (`api_base`, e.g. https://api.anaf.ro) with `upload`, `uploadb2c`,
`stareMesaj`, `listaMesajeFactura`, `listaMesajePaginatieFactura`, `descarcare` under
`/test/FCTEL/rest/` (`staging=True`) or `/prod/FCTEL/rest/`, and the public one (`public_base`,
e.g. https://webservicesp.anaf.ro) with `validare` and `transformare`, always under `/prod/` (the
test path answers 404 there).

Every answer becomes a typed result or one of the `AnafError` subclasses below, including the
errors ANAF sends with HTTP 200: XML `Errors`, JSON `eroare`, the firewall's HTML page, and the
"S-au facut deja N ... in cursul zilei" limit messages (→ AnafRateLimited). The benign "Nu exista
mesaje in ..." list answer is an empty page, not an error.

Uploads are NOT idempotent (§7, §10): this client never retries one. When the request may have
reached ANAF but no definite answer came back (a timeout or lost connection after sending, a 5xx,
an answer it cannot read) it raises AnafUploadOutcomeUnknown: the caller must reconcile from the
message list before deciding to send again. Reads (and the side-effect-free public services) are
retried on timeouts, connection errors and 5xx with exponential backoff; limits (429, "S-au facut
deja") are never retried here, as every retry would spend the same daily budget.

Keep-alive is off: ANAF resets idle pooled connections, and a reused dead connection would turn
an upload that never left into an "outcome unknown".

The access token comes from `token_provider()` on every call and never appears in a message.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from hashlib import sha256
from types import TracebackType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
from lxml import etree

BUCHAREST = ZoneInfo("Europe/Bucharest")
STANDARDS = ("UBL", "CN", "CII", "RASP")
PUBLIC_KINDS = ("FACT1", "FCN")  # validare/transformare: invoice, credit note (not "CN")
NS_UPLOAD = "mfp:anaf:dgti:spv:respUploadFisier:v1"
NS_STATUS = "mfp:anaf:dgti:efactura:stareMesajFactura:v1"
NS_ERRORS = "mfp:anaf:dgti:efactura:mesajEroriFactuta:v1"  # sic

TIP_SENT = "FACTURA TRIMISA"
TIP_RECEIVED = "FACTURA PRIMITA"
TIP_ERRORS = "ERORI FACTURA"

MAX_ZIP_BYTES = 50 * 1024 * 1024
MAX_MEMBER_BYTES = 20 * 1024 * 1024
MAX_MEMBERS = 8  # ANAF sends two
MAX_BACKOFF_SECONDS = 30.0

_LIMIT = re.compile(r"S-au facut deja\s+(\d+)", re.IGNORECASE)
_NO_MESSAGES = "Nu exista mesaje in "
_EXPIRED = "a trecut perioada"
_WAF_MARKER = "The requested URL was rejected"
_SUPPORT_ID = re.compile(r"support ID is:\s*(\d+)", re.IGNORECASE)
_ISSUER = re.compile(r"cif_emitent=\s*(\d+)")
_BUYER = re.compile(r"cif_beneficiar=\s*(\w+)")
_SELF_BILLED = re.compile(r"transmisa de cif=\s*(\d+) ca autofactura in numele cif=\s*(\d+)")
_SAFE_MEMBER = re.compile(r"[A-Za-z0-9_-]{1,120}\.xml")
_DOCUMENT_MEMBER = re.compile(r"\d+\.xml")
_STATES = {
    "ok": "ok",
    "nok": "nok",
    "in prelucrare": "in_progress",
    "XML cu erori nepreluat de sistem": "rejected_xml",
}

log = logging.getLogger(__name__)
T = TypeVar("T")
D = TypeVar("D", int, None)


# -- errors -----------------------------------------------------------------------------------


class AnafError(Exception):
    """Something ANAF answered (or failed to answer) that is not the result asked for."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class AnafAuthError(AnafError):
    """HTTP 401/403: the token is missing, expired, or has no rights on that URL or CIF."""


class AnafRateLimited(AnafError):
    """HTTP 429 (or 204), or one of ANAF's daily limits ("S-au facut deja N ... in cursul
    zilei"): `limit_text` is ANAF's sentence, `limit` its number. Retry tomorrow / later."""

    def __init__(
        self,
        message: str,
        *,
        limit_text: str = "",
        limit: int | None = None,
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.limit_text = limit_text
        self.limit = limit
        self.retry_after = retry_after


class AnafWafRejected(AnafError):
    """ANAF's F5 firewall answered its HTML page ("The requested URL was rejected")."""

    def __init__(self, message: str, *, support_id: str | None, status_code: int) -> None:
        super().__init__(message, status_code=status_code)
        self.support_id = support_id


class AnafUnavailable(AnafError):
    """ANAF could not be reached or failed (connection, timeout, 5xx). For an upload this means
    the request was NOT sent, so sending again is safe."""


class AnafRequestError(AnafError):
    """ANAF refused the request: HTTP 400/404, `Errors` in the XML, `eroare` in the JSON, a
    `nok` validation. `errors` holds ANAF's messages."""

    def __init__(
        self, message: str, *, errors: tuple[str, ...] = (), status_code: int | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.errors = errors


class AnafMessageExpired(AnafRequestError):
    """The message is past ANAF's 60-day retention: it can no longer be downloaded."""


class AnafUnexpectedResponse(AnafError):
    """An answer in no shape ANAF documents (the message quotes its start)."""


class AnafUploadOutcomeUnknown(AnafError):
    """The upload may or may not have been recorded by ANAF (timeout or lost connection after
    sending, 5xx, unreadable answer). Never send it again blindly: look for it in the message
    list (the `detalii` and `id_solicitare` of the seller's messages) first."""

    def __init__(self, message: str, *, cif: str, standard: str, xml_sha256: str) -> None:
        super().__init__(message)
        self.cif = cif
        self.standard = standard
        self.xml_sha256 = xml_sha256


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadReceipt:
    index: str  # index_incarcare, a numeric string
    date_response: datetime | None  # dateResponse, Bucharest time
    raw: bytes = field(repr=False)


class StatusState(StrEnum):
    OK = "ok"
    NOK = "nok"
    IN_PROGRESS = "in_progress"
    REJECTED_XML = "rejected_xml"  # "XML cu erori nepreluat de sistem": nothing to download


@dataclass(frozen=True)
class Status:
    state: StatusState
    download_id: str | None  # id_descarcare, for ok and nok
    raw: bytes = field(repr=False)

    @property
    def is_final(self) -> bool:
        return self.state is not StatusState.IN_PROGRESS


@dataclass(frozen=True)
class Message:
    """One entry of ANAF's message lists; every value came as a string."""

    id: str  # the download id
    upload_index: str  # id_solicitare
    cif: str
    kind: str  # tip: FACTURA TRIMISA, FACTURA PRIMITA, ERORI FACTURA, MESAJ CUMPARATOR ...
    details: str  # detalii: the only place the CIFs appear
    created_at: datetime | None  # data_creare (indexing time), Bucharest
    issuer_cif: str | None
    buyer_cif: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class MessagePage:
    messages: tuple[Message, ...]
    page: int
    total_pages: int
    total_messages: int
    per_page: int | None


@dataclass(frozen=True)
class DownloadedZip:
    """A `descarcare` zip, checked and read in memory (nothing is written to disk)."""

    download_id: str
    content: bytes = field(repr=False)  # the zip as received: archive these bytes
    members: Mapping[str, bytes] = field(repr=False, compare=False)
    document_name: str  # `<upload index>.xml`
    signature_name: str  # `semnatura_<upload index>.xml`
    errors: tuple[str, ...]  # for `nok`: the Error/@errorMessage texts

    @property
    def document(self) -> bytes:
        """The invoice as uploaded (ok) or ANAF's error header (nok)."""
        return self.members[self.document_name]

    @property
    def signature(self) -> bytes:
        return self.members[self.signature_name]

    @property
    def upload_index(self) -> str:
        return self.document_name.removesuffix(".xml")

    @property
    def is_error(self) -> bool:
        return bool(self.errors)


@dataclass(frozen=True)
class Validation:
    ok: bool
    messages: tuple[str, ...]
    trace_id: str | None


# -- the client -------------------------------------------------------------------------------


class EfacturaClient:
    def __init__(
        self,
        api_base: str,
        public_base: str,
        token_provider: Callable[[], str],
        *,
        staging: bool,
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff_s: float = 1.0,
        user_agent: str = "invoicesync",
    ) -> None:
        if max_retries < 0 or backoff_s < 0:
            raise ValueError("max_retries and backoff_s must be >= 0")
        environment = "test" if staging else "prod"
        self.api_url = f"{api_base.rstrip('/')}/{environment}/FCTEL/rest/"
        self.public_url = f"{public_base.rstrip('/')}/prod/FCTEL/rest/"
        self.staging = staging
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._token_provider = token_provider
        self._http = httpx.Client(
            timeout=timeout,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": user_agent},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EfacturaClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- upload ---------------------------------------------------------------------------

    def upload(
        self,
        xml: bytes,
        *,
        cif: str,
        standard: str = "UBL",
        b2c: bool = False,
        extern: bool = False,
        self_billed: bool = False,
    ) -> UploadReceipt:
        """Send one document; its index when ANAF took it. Never retried (see module doc)."""
        cif = plain_cif(cif)
        if standard not in STANDARDS:
            raise ValueError(f"standard must be one of {', '.join(STANDARDS)}, got {standard!r}")
        if not xml:
            raise ValueError("nothing to upload: the XML is empty")
        params = {"standard": standard, "cif": cif}
        if extern:
            params["extern"] = "DA"
        if self_billed:
            params["autofactura"] = "DA"
        operation = "uploadb2c" if b2c else "upload"
        what = f"POST {operation} (cif={cif}, standard={standard})"
        digest = sha256(xml).hexdigest()

        def unknown(reason: str) -> AnafUploadOutcomeUnknown:
            return AnafUploadOutcomeUnknown(
                f"{what}: {reason}. ANAF may have recorded the upload (XML sha256 {digest}): "
                "reconcile from the message list before sending it again",
                cif=cif,
                standard=standard,
                xml_sha256=digest,
            )

        headers = {**self._auth(), "Content-Type": "text/plain"}
        try:
            response = self._http.post(
                self.api_url + operation, params=params, content=xml, headers=headers
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise AnafUnavailable(
                f"{what}: could not connect ({type(error).__name__}); nothing was sent, "
                "sending again is safe"
            ) from error
        except httpx.TransportError as error:  # the request was (maybe partly) sent
            raise unknown(f"no answer ({type(error).__name__}: {error})") from error
        if response.status_code >= 500:
            raise unknown(f"HTTP {response.status_code} {_snippet(response)}")
        try:
            _check_http(response, what)
            return _parse_upload(response, what)
        except AnafUnexpectedResponse as error:
            raise unknown(str(error)) from error

    # -- reads ----------------------------------------------------------------------------

    def status(self, index: str | int) -> Status:
        """`stareMesaj` for one upload index (at most 100 calls per index per day)."""
        index = str(index).strip()
        if not index.isdigit():
            raise ValueError(f"an upload index is a number, got {index!r}")
        what = f"GET stareMesaj (id_incarcare={index})"
        return self._read(
            what, "stareMesaj", {"id_incarcare": index}, lambda r: _parse_status(r, what)
        )

    def list_messages(
        self,
        cif: str,
        start: datetime,
        end: datetime,
        *,
        page: int = 1,
        filter: str | None = None,
    ) -> MessagePage:
        """One page of `listaMesajePaginatieFactura` for [start, end] (aware datetimes; ANAF
        refuses an end after its own clock, so keep it a minute behind now)."""
        cif = plain_cif(cif)
        if page < 1:
            raise ValueError(f"pages start at 1, got {page}")
        params = {
            "startTime": str(_unix_ms(start, "start")),
            "endTime": str(_unix_ms(end, "end")),
            "cif": cif,
            "pagina": str(page),
        }
        if filter is not None:
            params["filtru"] = _filter(filter)
        what = f"GET listaMesajePaginatieFactura (cif={cif}, page {page})"
        return self._read(
            what, "listaMesajePaginatieFactura", params, lambda r: _parse_list(r, what, page)
        )

    def iter_messages(
        self, cif: str, start: datetime, end: datetime, *, filter: str | None = None
    ) -> Iterator[Message]:
        """Every message of [start, end], page after page."""
        page = 1
        while True:
            result = self.list_messages(cif, start, end, page=page, filter=filter)
            yield from result.messages
            if page >= result.total_pages:
                return
            page += 1

    def list_recent(self, cif: str, days: int, *, filter: str | None = None) -> MessagePage:
        """`listaMesajeFactura` for the last `days` (1-60) days: one page of at most 500; the
        paged list is preferred (1500 calls a day per CUI here against 100000)."""
        cif = plain_cif(cif)
        if not 1 <= days <= 60:
            raise ValueError(f"days must be 1..60 (ANAF keeps 60 days), got {days}")
        params = {"zile": str(days), "cif": cif}
        if filter is not None:
            params["filtru"] = _filter(filter)
        what = f"GET listaMesajeFactura (cif={cif}, {days} days)"
        return self._read(what, "listaMesajeFactura", params, lambda r: _parse_list(r, what, 1))

    def download(self, download_id: str | int) -> DownloadedZip:
        """`descarcare`: the signed zip (at most 10 downloads per message per day: store it)."""
        download_id = str(download_id).strip()
        if not download_id.isdigit():
            raise ValueError(f"a download id is a number, got {download_id!r}")
        what = f"GET descarcare (id={download_id})"
        return self._read(
            what, "descarcare", {"id": download_id}, lambda r: _parse_download(r, what, download_id)
        )

    # -- public services --------------------------------------------------------------------

    def validate(self, xml: bytes, kind: str = "FACT1") -> Validation:
        """ANAF's validator (`validare/FACT1|FCN`, no auth): a second opinion, not a filing."""
        kind = _public_kind(kind)
        what = f"POST validare/{kind}"
        return self._public(what, f"validare/{kind}", xml, lambda r: _parse_validation(r, what))

    def to_pdf(self, xml: bytes, kind: str = "FACT1", *, validate: bool = True) -> bytes:
        """ANAF's PDF rendering (`transformare/FACT1|FCN`, `/DA` skips validation)."""
        kind = _public_kind(kind)
        path = f"transformare/{kind}" if validate else f"transformare/{kind}/DA"
        what = f"POST {path}"
        return self._public(what, path, xml, lambda r: _parse_pdf(r, what))

    # -- plumbing ---------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        token = self._token_provider()
        if not token:
            raise AnafAuthError("no ANAF access token: run `invoicesync anaf login` first")
        return {"Authorization": f"Bearer {token}"}

    def _read(
        self,
        what: str,
        operation: str,
        params: dict[str, str],
        parse: Callable[[httpx.Response], T],
    ) -> T:
        url = self.api_url + operation
        return self._retrying(
            what, lambda: self._http.get(url, params=params, headers=self._auth()), parse
        )

    def _public(self, what: str, path: str, xml: bytes, parse: Callable[[httpx.Response], T]) -> T:
        url = self.public_url + path
        headers = {"Content-Type": "text/plain"}  # what ANAF's documentation mandates
        return self._retrying(
            what, lambda: self._http.post(url, content=xml, headers=headers), parse
        )

    def _retrying(
        self, what: str, send: Callable[[], httpx.Response], parse: Callable[[httpx.Response], T]
    ) -> T:
        """For calls without side effects: retry timeouts, connection errors and 5xx."""
        attempt = 0
        while True:
            try:
                try:
                    response = send()
                except httpx.TimeoutException as error:
                    raise AnafUnavailable(f"{what}: timed out ({type(error).__name__})") from error
                except httpx.TransportError as error:
                    raise AnafUnavailable(
                        f"{what}: connection failed ({type(error).__name__}: {error}); check "
                        "ANAF_API_BASE / ANAF_PUBLIC_API_BASE and the network"
                    ) from error
                _check_http(response, what)
                return parse(response)
            except AnafUnavailable as error:
                if attempt >= self.max_retries:
                    raise
                delay = min(self.backoff_s * 2**attempt, MAX_BACKOFF_SECONDS)
                attempt += 1
                log.warning("%s; retry %d/%d in %.1f s", error, attempt, self.max_retries, delay)
                time.sleep(delay)


# -- helpers for callers ----------------------------------------------------------------------


def plain_cif(cif: str) -> str:
    """The CIF as ANAF's `cif` parameter wants it: digits only, no `RO` (an `RO` prefix gets
    HTTP 403). ValueError when what is left is not a number."""
    text = re.sub(r"[\s.\-]", "", str(cif)).upper().removeprefix("RO")
    if not text.isdigit() or not 1 <= len(text) <= 10:
        raise ValueError(f"CIF {cif!r} must be 1-10 digits, optionally written with RO")
    return text


def read_zip(
    content: bytes,
    *,
    max_members: int = MAX_MEMBERS,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_ZIP_BYTES,
) -> dict[str, bytes]:
    """The members of an untrusted zip, in memory: plain file names only (no paths, no `..`),
    no encryption, no duplicates, and sizes capped while reading (headers can lie)."""
    if len(content) > max_total_bytes:
        raise AnafUnexpectedResponse(f"zip of {len(content)} bytes exceeds {max_total_bytes}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as error:
        raise AnafUnexpectedResponse(f"not a readable zip ({error})") from error
    if len(infos) > max_members:
        raise AnafUnexpectedResponse(f"zip holds {len(infos)} members, expected 2")
    members: dict[str, bytes] = {}
    total = 0
    for info in infos:
        name = info.filename
        if not _SAFE_MEMBER.fullmatch(name):
            raise AnafUnexpectedResponse(f"zip member name {name[:120]!r} is not a plain .xml name")
        if name in members:
            raise AnafUnexpectedResponse(f"zip member {name!r} appears twice")
        if info.flag_bits & 0x1:
            raise AnafUnexpectedResponse(f"zip member {name!r} is encrypted")
        if info.file_size > max_member_bytes:
            raise AnafUnexpectedResponse(f"zip member {name!r} is {info.file_size} bytes")
        try:
            with archive.open(info) as member:
                data = member.read(max_member_bytes + 1)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as error:
            raise AnafUnexpectedResponse(f"zip member {name!r} unreadable ({error})") from error
        total += len(data)
        if len(data) > max_member_bytes or total > max_total_bytes:
            raise AnafUnexpectedResponse(f"zip member {name!r} inflates beyond the size limit")
        members[name] = data
    return members


# -- parsing ----------------------------------------------------------------------------------


def _check_http(response: httpx.Response, what: str) -> None:
    """Raise for every answer that is not a 200 with content, including the WAF page."""
    status = response.status_code
    content_type = response.headers.get("content-type", "")
    head = response.content[:4096]
    if b"<html" in head.lower() or content_type.startswith("text/html"):
        text = head.decode("utf-8", "replace")
        if _WAF_MARKER in text:
            match = _SUPPORT_ID.search(text)
            support_id = match.group(1) if match else None
            raise AnafWafRejected(
                f"{what}: ANAF's firewall rejected the request (support ID "
                f"{support_id or 'not given'}). Known triggers: a relative xsi:schemaLocation "
                "or ';CP ' in the XML; otherwise wait and retry, or contact ANAF with the ID",
                support_id=support_id,
                status_code=status,
            )
    if status in (401, 403):
        raise AnafAuthError(
            f"{what}: HTTP {status} {_snippet(response)}. The access token is missing, expired or "
            "has no rights for this CIF/URL: check the CIF (digits, no RO), the staging setting "
            "(ANAF_USE_STAGING) and run `invoicesync anaf token` / `anaf login`",
            status_code=status,
        )
    if status in (204, 429):
        raise AnafRateLimited(
            f"{what}: HTTP {status}: ANAF's request limit is reached; slow down",
            retry_after=_retry_after(response),
            status_code=status,
        )
    if status >= 500:
        raise AnafUnavailable(f"{what}: HTTP {status} {_snippet(response)}", status_code=status)
    if status != 200:
        message = _json_message(response) or _snippet(response)
        raise AnafRequestError(
            f"{what}: HTTP {status} {message}", errors=(message,), status_code=status
        )
    if content_type.startswith("text/html"):
        raise AnafUnexpectedResponse(
            f"{what}: an HTML page instead of an answer: {_snippet(response)}"
        )


def _error_from_messages(
    what: str, messages: list[str], *, expired_is_terminal: bool = False
) -> AnafError:
    """The typed error for ANAF's error texts (XML `Errors`, JSON `eroare`)."""
    for message in messages:
        match = _LIMIT.search(message)
        if match:
            return AnafRateLimited(
                f"{what}: ANAF's daily limit: {message}",
                limit_text=message,
                limit=int(match.group(1)),
            )
    text = "; ".join(messages)
    if expired_is_terminal and any(_EXPIRED in message for message in messages):
        return AnafMessageExpired(f"{what}: {text}", errors=tuple(messages))
    return AnafRequestError(f"{what}: {text}", errors=tuple(messages))


def _xml_root(response: httpx.Response, what: str) -> etree._Element:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        return etree.fromstring(response.content, parser)
    except etree.XMLSyntaxError as error:
        raise AnafUnexpectedResponse(f"{what}: not XML ({error}): {_snippet(response)}") from error


def _error_texts(root: etree._Element, tag: str) -> list[str]:
    return [
        str(child.get("errorMessage") or "").strip()
        for child in root
        if isinstance(child.tag, str) and etree.QName(child).localname == tag
    ]


def _parse_upload(response: httpx.Response, what: str) -> UploadReceipt:
    root = _xml_root(response, what)
    if etree.QName(root) != etree.QName(NS_UPLOAD, "header"):
        raise AnafUnexpectedResponse(f"{what}: unexpected XML: {_snippet(response)}")
    errors = _error_texts(root, "Errors")
    index = (root.get("index_incarcare") or "").strip()
    if root.get("ExecutionStatus") == "0" and index.isdigit() and not errors:
        return UploadReceipt(index, _anaf_time(root.get("dateResponse")), response.content)
    if root.get("ExecutionStatus") == "1" and errors:
        raise _error_from_messages(what, errors)
    raise AnafUnexpectedResponse(f"{what}: unexpected upload answer: {_snippet(response)}")


def _parse_status(response: httpx.Response, what: str) -> Status:
    root = _xml_root(response, what)
    if etree.QName(root) != etree.QName(NS_STATUS, "header"):
        raise AnafUnexpectedResponse(f"{what}: unexpected XML: {_snippet(response)}")
    stare = root.get("stare")
    if stare is None:
        errors = _error_texts(root, "Errors")
        if errors:  # a query failure (unknown index, rights, limit), not an outcome
            raise _error_from_messages(what, errors)
        raise AnafUnexpectedResponse(f"{what}: neither stare nor Errors: {_snippet(response)}")
    state = _STATES.get(stare.strip())
    if state is None:
        raise AnafUnexpectedResponse(f"{what}: unknown stare {stare!r}")
    download_id = (root.get("id_descarcare") or "").strip() or None
    if state in ("ok", "nok") and (download_id is None or not download_id.isdigit()):
        raise AnafUnexpectedResponse(f"{what}: stare {stare} without id_descarcare")
    return Status(StatusState(state), download_id, response.content)


def _json_payload(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        payload = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnafUnexpectedResponse(f"{what}: not JSON: {_snippet(response)}") from error
    if not isinstance(payload, dict):
        raise AnafUnexpectedResponse(f"{what}: not a JSON object: {_snippet(response)}")
    return payload


def _parse_list(response: httpx.Response, what: str, page: int) -> MessagePage:
    payload = _json_payload(response, what)
    error = payload.get("eroare")
    if error:
        if str(error).startswith(_NO_MESSAGES):  # benign: nothing in that window
            return MessagePage((), page, 0, 0, None)
        raise _error_from_messages(what, [str(error)])
    raw_messages = payload.get("mesaje")
    if not isinstance(raw_messages, list):
        raise AnafUnexpectedResponse(f"{what}: no `mesaje` list: {_snippet(response)}")
    messages = tuple(_message(item, what) for item in raw_messages)
    total_pages = _int(payload.get("numar_total_pagini"), 1)
    return MessagePage(
        messages=messages,
        page=_int(payload.get("index_pagina_curenta"), page),
        total_pages=total_pages,
        total_messages=_int(payload.get("numar_total_inregistrari"), len(messages)),
        per_page=_int(payload.get("numar_total_inregistrari_per_pagina"), None),
    )


def _message(item: Any, what: str) -> Message:
    if not isinstance(item, dict) or not str(item.get("id") or "").strip().isdigit():
        raise AnafUnexpectedResponse(f"{what}: a message without a numeric id: {item!r:.200}")
    details = str(item.get("detalii") or "")
    issuer = _ISSUER.search(details)
    buyer = _BUYER.search(details)
    issuer_cif = issuer.group(1) if issuer else None
    buyer_cif = buyer.group(1) if buyer else None
    self_billed = _SELF_BILLED.search(details)
    if self_billed:  # "transmisa de cif=B ca autofactura in numele cif=A"
        buyer_cif, issuer_cif = self_billed.group(1), self_billed.group(2)
    return Message(
        id=str(item["id"]).strip(),
        upload_index=str(item.get("id_solicitare") or "").strip(),
        cif=str(item.get("cif") or "").strip(),
        kind=str(item.get("tip") or "").strip(),
        details=details,
        created_at=_anaf_time(item.get("data_creare")),
        issuer_cif=issuer_cif,
        buyer_cif=buyer_cif,
        raw=item,
    )


def _parse_download(response: httpx.Response, what: str, download_id: str) -> DownloadedZip:
    content = response.content
    if not content.startswith(b"PK\x03\x04"):
        # Errors come as JSON, labelled application/json or text/plain.
        payload = _json_payload(response, what)
        if payload.get("eroare"):
            raise _error_from_messages(what, [str(payload["eroare"])], expired_is_terminal=True)
        raise AnafUnexpectedResponse(f"{what}: neither a zip nor an error: {_snippet(response)}")
    return read_answer(content, download_id, what=what)


def read_answer(
    content: bytes, download_id: str, *, what: str = "archived answer"
) -> DownloadedZip:
    """A `descarcare` zip from its bytes (e.g. the archived copy), with a download's checks."""
    try:
        members = read_zip(content)
    except AnafUnexpectedResponse as error:
        raise AnafUnexpectedResponse(f"{what}: {error}") from None
    documents = [name for name in members if _DOCUMENT_MEMBER.fullmatch(name)]
    signatures = [name for name in members if name.startswith("semnatura")]
    if len(documents) != 1 or len(signatures) != 1:
        raise AnafUnexpectedResponse(
            f"{what}: expected <index>.xml and semnatura_<index>.xml, got {sorted(members)}"
        )
    return DownloadedZip(
        download_id=download_id,
        content=content,
        members=members,
        document_name=documents[0],
        signature_name=signatures[0],
        errors=tuple(_answer_errors(members[documents[0]])),
    )


def _answer_errors(document: bytes) -> list[str]:
    """The Error/@errorMessage texts when the zip's document is ANAF's error header."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(document, parser)
    except etree.XMLSyntaxError:
        return []
    if etree.QName(root) != etree.QName(NS_ERRORS, "header"):
        return []
    return _error_texts(root, "Error") or ["(ANAF's error document lists no message)"]


def _parse_validation(response: httpx.Response, what: str) -> Validation:
    payload = _json_payload(response, what)
    stare = payload.get("stare")
    if stare not in ("ok", "nok"):
        raise AnafUnexpectedResponse(f"{what}: no stare ok/nok: {_snippet(response)}")
    return Validation(stare == "ok", _validation_messages(payload), payload.get("trace_id"))


def _validation_messages(payload: dict[str, Any]) -> tuple[str, ...]:
    messages = payload.get("Messages") or []
    return tuple(
        str(m.get("message") if isinstance(m, dict) else m) for m in messages if m is not None
    )


def _parse_pdf(response: httpx.Response, what: str) -> bytes:
    if response.content.startswith(b"%PDF"):
        return response.content
    payload = _json_payload(response, what)
    if payload.get("stare") == "nok":
        messages = _validation_messages(payload)
        raise AnafRequestError(
            f"{what}: ANAF did not render the PDF: {'; '.join(messages) or 'no reason given'}",
            errors=messages,
        )
    raise AnafUnexpectedResponse(f"{what}: neither a PDF nor stare nok: {_snippet(response)}")


# -- small things -----------------------------------------------------------------------------


def _anaf_time(value: Any) -> datetime | None:
    """`YYYYMMDDHHmm` in Romanian time (dateResponse, data_creare)."""
    try:
        return datetime.strptime(str(value), "%Y%m%d%H%M").replace(tzinfo=BUCHAREST)
    except ValueError:
        return None


def _unix_ms(moment: datetime, name: str) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (ANAF compares it with its own clock)")
    return int(moment.timestamp() * 1000)


def _filter(value: str) -> str:
    if value not in ("E", "T", "P", "R"):
        raise ValueError(f"filter must be E, T, P or R, got {value!r}")
    return value


def _public_kind(kind: str) -> str:
    if kind not in PUBLIC_KINDS:
        raise ValueError(f"kind must be FACT1 (invoice) or FCN (credit note), got {kind!r}")
    return kind


def _int(value: Any, default: D) -> int | D:
    try:
        return int(str(value).strip())
    except ValueError:
        return default


def _json_message(response: httpx.Response) -> str | None:
    try:
        payload = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(payload, dict):
        for key in ("message", "eroare", "error"):
            if payload.get(key):
                return str(payload[key])
    return None


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _snippet(response: httpx.Response) -> str:
    text = response.content[:300].decode("utf-8", "replace")
    return " ".join(text.split())
