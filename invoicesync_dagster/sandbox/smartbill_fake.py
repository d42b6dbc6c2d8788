"""A fake of SmartBill Cloud's REST API (EFACTURA.md §6, §8.10) at SmartBill's own paths under
`/SBORO/api/` (production base `https://ws.smartbill.ro/SBORO/api/`).

Sources: SmartBill's `openapi.json` (the copy shipped in dnutiu/SmartBill-Ruby-SDK
`docs/openapi.json`) for the paths, the documented error messages, the tax names, the response
fields and the call limit; SmartBill's PHP client for the lowercase `seriesname` query parameter.

Endpoints (JSON in, JSON out):

- `POST invoice`: the bare invoice object. Numbers are given per series, sequentially, as
  4-digit strings (`"0001"`), and the answer is `{errorText: "", message: "", number, series,
  url: ""}`.
- `POST invoice/reverse` `{companyVatCode, seriesName, number, issueDate}`: a storno, i.e. a new
  invoice in the same series with every quantity negated; answers its number and series with
  "Factura cu seria si numarul FCT0001 a fost stornata cu succes." as `message`.
- `GET invoice/pdf?cif=&seriesname=&number=`: `application/octet-stream`, a small valid PDF.
- `GET invoice/paymentstatus?cif=&seriesname=&number=`: `{invoiceTotalAmount, paidAmount,
  unpaidAmount, paid, number, series, errorText, message}`; the amount paid at issue (the
  invoice's `payment.value`) counts, and `record_payment` adds more.
- `GET tax?cif=`: `{taxes: [{name, percentage}], errorText, message}`.
- `GET series?cif=[&type=f|p|c]`: `{list: [{name, nextNumber, type}], errorText, message}`.

Taxes of the default account (DEFAULT_TAXES): the names of SmartBill's own examples, at the
rates in force since 1 Aug 2025 plus the former ones that pre-August documents and their stornos
still carry: "Normala" 21 and 19, "Redusa" 11 and 9, "Redusa locuinte" 5, "Taxare inversa" 0
(reverse charge), "SDD" 0 (scutit cu drept de deducere: exports, intra-community supplies),
"SFDD" 0 (scutit fara drept de deducere: exempt supplies), "TVA Inclus" 0. "Neimpozabil" 0 (not
subject to Romanian VAT) is this fake's own name: SmartBill's documentation shows no tax for it,
a real account defines whatever its accountant chose. A product's `taxName` and `taxPercentage`
must together match one of the account's taxes, as SmartBill demands.

Errors are answered SmartBill's way: a JSON object whose `errorText` says what is wrong, with
the wording of SmartBill's documentation where it gives one (and this fake's own, in the same
style, for the few cases it does not: bad JSON, storno of a storno, second storno). SmartBill
documents them as HTTP 400; users have also seen them inside HTTP 200 answers, which
`business_error_status=200` reproduces. Wrong credentials → HTTP 401.

Call limit, as SmartBill documents it: at most 30 calls in 10 seconds per account, else the
account is blocked for 10 minutes; while blocked every call is answered HTTP 403 with "Utilizatorul
a fost blocat pentru ca s-a depasit limita maxima de apeluri permise." (the documented meaning of
403; `blocked_status=429` for clients written against a 429). The window slides over the
arrival times of the calls that were served (blocked calls neither count nor prolong the block).
Served answers carry SmartBill's `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
`X-RateLimit-Reset` headers. Time is `time_source` (default: the sandbox clock when pinned, else
real time), so tests can drive it.

For tests and "exactly once" proofs: `ledger_entries()` (also `GET /_sandbox/smartbill/ledger`)
lists every invoice and storno created, with the sha256 of the request body in canonical JSON
(keys sorted, no spaces, UTF-8: `canonical_sha256`); `calls` (also `GET
/_sandbox/smartbill/calls`) every API call with its arrival time and outcome. Knobs:
`delay_create_answers(seconds, times)` answers creates only after a delay, once the invoice
exists (a timeout after the server accepted it), also `POST /_sandbox/smartbill/knobs`
`{"create_answer_delay_ms", "times", "business_error_status", "blocked_status", "block_s"}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from invoicesync_dagster.sandbox.http import Clock, Request, Response

PREFIX = "/SBORO/api/"
CONTROL_PREFIX = "/_sandbox/smartbill/"
CALLS_PER_WINDOW = 30
WINDOW_S = 10.0
BLOCK_S = 600.0
MAX_ENTRIES = 400
_JSON = "application/json; charset=utf-8"
_CENT = Decimal("0.01")
BUCHAREST = ZoneInfo("Europe/Bucharest")

# (name, percentage) of the default account's taxes; see the module docstring.
DEFAULT_TAXES: tuple[tuple[str, int], ...] = (
    ("Normala", 21),
    ("Normala", 19),
    ("Redusa", 11),
    ("Redusa", 9),
    ("Redusa locuinte", 5),
    ("Taxare inversa", 0),
    ("SDD", 0),
    ("SFDD", 0),
    ("Neimpozabil", 0),
    ("TVA Inclus", 0),
)
# Series of the default account besides the invoice series: a proforma and a receipt series.
_OTHER_SERIES = (("PFT", "p"), ("CHT", "c"))

# SmartBill's documented messages.
BLOCKED = "Utilizatorul a fost blocat pentru ca s-a depasit limita maxima de apeluri permise."
UNAUTHORIZED = "Datele de autentificare nu sunt corecte sau datele companiei nu sunt corecte."
COMPANY_REQUIRED = "CIF-ul firmei ('companyVatCode') trebuie specificat"
CIF_REQUIRED = "Ciful firmei trebuie specificat!"
COMPANY_UNKNOWN = (
    "Firma la care incercati sa va conectati nu este disponibila pentru acest utilizator."
)
CLIENT_REQUIRED = "client trebuie specificat"
CLIENT_INVALID = "Client invalid!"
BAD_DATE = "Data documentului trebuie sa fie de forma yyyy-MM-dd."
UNKNOWN_SERIES = "Seria nu a fost gasita! Folositi o serie creata in contul de cloud."
UNKNOWN_CURRENCY = "Moneda nu a fost gasita pe server!"
NO_PRODUCTS = "Factura nu contine produse!"
ONLY_DISCOUNTS = (
    "Nu poti sa emiti un document care contine doar un discount. "
    "Trebuie sa ai si produse / servicii adaugate."
)
TOO_MANY_ENTRIES = "Numarul maxim acceptat de 400 intrari pe document a fost depasit."
PRODUCT_FIELD = "{field} trebuie specificat pentru fiecare produs"
DISCOUNT_VALUE = "discountValue trebuie specificat pentru fiecare produs de tip discount"
DISCOUNT_PERCENTAGE = "discountPercentage trebuie specificat pentru fiecare produs de tip discount"
TAX_MISSING = "Trebuie sa setezi o cota tva pentru produsul {name}."
TAX_UNKNOWN = "Cota tva a produsului {name} nu a fost gasita pe server!"
FOREIGN_PRODUCT = (
    "Nu puteti emite documente in {invoice} cu moneda de referinta a produselor in {product} !"
)
NOT_FOUND = "Factura nu a fost gasita"
BAD_SERIES_TYPE = (
    "Tipul documentului nu poate fi {type}! Parametrul type poate lua valorile: 'f' pentru "
    "factura, 'p' pentru proforma si 'c' pentru chitanta."
)
REVERSED = "Factura cu seria si numarul {name} a fost stornata cu succes."
# This fake's own wording, in SmartBill's style.
BAD_JSON = "Continutul apelului nu este un obiect JSON valid."
ALREADY_REVERSED = "Factura cu seria si numarul {name} a fost deja stornata prin {storno}."
STORNO_OF_STORNO = "Factura cu seria si numarul {name} este o stornare si nu poate fi stornata."


class Rejected(Exception):
    """A business error: answered with `errorText`."""


@dataclass(frozen=True)
class SmartBillCall:
    """One API call as the fake saw it: arrival time (on `time_source`), outcome, status."""

    at: float
    method: str
    path: str
    status: int
    outcome: str  # served | rejected | blocked | unauthorized | not_found


@dataclass
class _Invoice:
    series: str
    number: str
    kind: str  # invoice | storno
    issue_date: str
    client: dict[str, Any]
    currency: str
    products: list[dict[str, Any]]
    total: Decimal
    paid: Decimal
    reverses: str | None = None  # the invoice a storno reverses (series + number)
    reversed_by: str | None = None

    @property
    def name(self) -> str:
        return f"{self.series}{self.number}"


@dataclass
class _Knobs:
    create_answer_delay_s: float = 0.0
    delays_left: int | None = 0  # None: every create
    business_error_status: int = 400
    blocked_status: int = 403
    block_s: float = BLOCK_S


def canonical_sha256(payload: Any) -> str:
    """sha256 of `payload` as canonical JSON: keys sorted, no spaces, UTF-8."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def fold_cif(cif: str) -> str:
    """`RO 012345674` → `12345674`: how a CIF is compared."""
    text = "".join(str(cif).split()).upper().removeprefix("RO")
    return text.lstrip("0") or text


class SmartBillFake:
    """One SmartBill account (`username`, `token`) with one company (`company_cif`)."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        username: str = "facturare@exemplu.ro",
        token: str = "sandbox-smartbill-token",
        company_cif: str = "RO12345674",
        vat_payer: bool = True,
        invoice_series: Iterable[str] = ("FCT",),
        taxes: Iterable[tuple[str, int | str | Decimal]] = DEFAULT_TAXES,
        calls_per_window: int = CALLS_PER_WINDOW,
        window_s: float = WINDOW_S,
        block_s: float = BLOCK_S,
        blocked_status: int = 403,
        business_error_status: int = 400,
        time_source: Callable[[], float] | None = None,
        prefix: str = PREFIX,
    ) -> None:
        if blocked_status not in (403, 429):
            raise ValueError(f"blocked_status must be 403 or 429, got {blocked_status}")
        self.clock = clock or Clock()
        self.username = username
        self._token = token
        self.company_cif = company_cif
        self.vat_payer = vat_payer
        self.prefix = prefix
        self.calls_per_window = calls_per_window
        self.window_s = window_s
        self._time = time_source or self._sandbox_time
        self._initial_series = tuple(invoice_series)
        self._taxes = tuple((str(name), Decimal(str(pct))) for name, pct in taxes)
        self._initial_knobs = _Knobs(
            business_error_status=business_error_status,
            blocked_status=blocked_status,
            block_s=block_s,
        )
        self._lock = threading.RLock()
        self.reset()

    def __repr__(self) -> str:
        return f"SmartBillFake(username={self.username!r}, company_cif={self.company_cif!r})"

    # -- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._series: dict[str, list[Any]] = {name: ["f", 1] for name in self._initial_series}
            for name, kind in _OTHER_SERIES:
                self._series.setdefault(name, [kind, 1])
            self._invoices: dict[str, _Invoice] = {}
            self._ledger: list[dict[str, Any]] = []
            self._calls: list[SmartBillCall] = []
            self._window: deque[float] = deque()
            self._blocked_until: float | None = None
            self.knobs = _Knobs(**asdict(self._initial_knobs))

    def add_series(self, name: str, next_number: int = 1, kind: str = "f") -> None:
        with self._lock:
            self._series[name] = [kind, next_number]

    def delay_create_answers(self, seconds: float, times: int | None = 1) -> None:
        """Create the next `times` invoices/stornos (None: all), then wait `seconds` before
        answering: a client timing out meanwhile does not know the invoice exists."""
        with self._lock:
            self.knobs.create_answer_delay_s = seconds
            self.knobs.delays_left = times

    def record_payment(self, series: str, number: str, amount: Decimal | str) -> None:
        with self._lock:
            invoice = self._invoices[f"{series}{number}"]
            invoice.paid += Decimal(str(amount))

    def ledger_entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._ledger]

    @property
    def calls(self) -> list[SmartBillCall]:
        with self._lock:
            return list(self._calls)

    @property
    def blocked_until(self) -> float | None:
        with self._lock:
            return self._blocked_until

    def _sandbox_time(self) -> float:
        pinned = self.clock.pinned
        return float(pinned) if pinned is not None else time.time()

    # -- HTTP -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response | None:
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        if not request.path.startswith(self.prefix):
            return None
        route = request.path[len(self.prefix) :].strip("/")
        delay = 0.0
        with self._lock:
            now = self._time()
            if not self._authorized(request):
                response = _answer(401, {"errorText": UNAUTHORIZED, "message": ""})
                response.headers["WWW-Authenticate"] = 'Basic realm="SmartBill"'
                self._record(now, request, response, "unauthorized")
                return response
            if self._blocked(now):
                response = _answer(self.knobs.blocked_status, {"errorText": BLOCKED, "message": ""})
                response.headers.update(self._limit_headers(now))
                self._record(now, request, response, "blocked")
                return response
            self._window.append(now)
            try:
                response, created = self._route(request, route)
                outcome = "served" if response.status < 400 else "not_found"
            except Rejected as error:
                created = False
                response = _answer(self.knobs.business_error_status, _error_body(str(error)))
                outcome = "rejected"
            response.headers.update(self._limit_headers(now))
            self._record(now, request, response, outcome)
            if created and self.knobs.delays_left != 0:
                delay = self.knobs.create_answer_delay_s
                if self.knobs.delays_left is not None:
                    self.knobs.delays_left -= 1
        if delay > 0:
            time.sleep(delay)  # outside the lock: other calls go on meanwhile
        return response

    def _authorized(self, request: Request) -> bool:
        header = request.header("Authorization") or ""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, _, token = decoded.partition(":")
        return hmac.compare_digest(username.encode(), self.username.encode()) and (
            hmac.compare_digest(token.encode(), self._token.encode())
        )

    def _blocked(self, now: float) -> bool:
        if self._blocked_until is not None:
            if now < self._blocked_until:
                return True
            self._blocked_until = None
        while self._window and self._window[0] <= now - self.window_s:
            self._window.popleft()
        if len(self._window) >= self.calls_per_window:
            self._blocked_until = now + self.knobs.block_s
            return True
        return False

    def _limit_headers(self, now: float) -> dict[str, str]:
        if self._blocked_until is not None and now < self._blocked_until:
            remaining, reset = 0, self._blocked_until
        else:
            remaining = max(self.calls_per_window - len(self._window), 0)
            reset = (self._window[0] if self._window else now) + self.window_s
        return {
            "X-RateLimit-Limit": str(self.calls_per_window),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }

    def _record(self, now: float, request: Request, response: Response, outcome: str) -> None:
        self._calls.append(
            SmartBillCall(now, request.method, request.path, response.status, outcome)
        )

    def _route(self, request: Request, route: str) -> tuple[Response, bool]:
        """The answer, and whether it created an invoice. Raises Rejected."""
        query = {key.lower(): value for key, value in request.query}
        endpoints: dict[str, tuple[str, Callable[[], tuple[Response, bool]]]] = {
            "invoice": ("POST", lambda: self._create(request)),
            "invoice/reverse": ("POST", lambda: self._reverse(request)),
            "invoice/pdf": ("GET", lambda: (self._pdf(query), False)),
            "invoice/paymentstatus": ("GET", lambda: (self._payment_status(query), False)),
            "tax": ("GET", lambda: (self._tax(query), False)),
            "series": ("GET", lambda: (self._series_list(query), False)),
        }
        if route not in endpoints:
            return _answer(404, _error_body(f"Resursa {route!r} nu exista.")), False
        method, run = endpoints[route]
        if request.method != method:
            return _answer(405, _error_body(f"Metoda {request.method} nu este permisa.")), False
        return run()

    # -- endpoints --------------------------------------------------------------------------

    def _create(self, request: Request) -> tuple[Response, bool]:
        body = _json_object(request)
        self._check_company(body.get("companyVatCode"), COMPANY_REQUIRED)
        client = body.get("client")
        if not isinstance(client, dict):
            raise Rejected(CLIENT_REQUIRED)
        if not str(client.get("name") or "").strip():
            raise Rejected(CLIENT_INVALID)
        issue_date = self._issue_date(body.get("issueDate"))
        series = self._invoice_series(body.get("seriesName"))
        currency = str(body.get("currency") or "RON").upper()
        if len(currency) != 3 or not currency.isalpha():
            raise Rejected(UNKNOWN_CURRENCY)
        products = body.get("products")
        if not isinstance(products, list) or not products:
            raise Rejected(NO_PRODUCTS)
        if len(products) > MAX_ENTRIES:
            raise Rejected(TOO_MANY_ENTRIES)
        total = self._total(products, currency)
        payment = body.get("payment")
        paid = _decimal(payment.get("value") or 0, "value") if isinstance(payment, dict) else 0
        invoice = _Invoice(
            series=series,
            number=self._allocate(series),
            kind="invoice",
            issue_date=issue_date,
            client=client,
            currency=currency,
            products=products,
            total=total,
            paid=Decimal(paid),
        )
        self._store(invoice, canonical_sha256(json.loads(request.body)))
        return _answer(200, self._document_body(invoice)), True

    def _reverse(self, request: Request) -> tuple[Response, bool]:
        body = _json_object(request)
        self._check_company(body.get("companyVatCode"), COMPANY_REQUIRED)
        original = self._find(body.get("seriesName"), body.get("number"))
        if original.reverses is not None:
            raise Rejected(STORNO_OF_STORNO.format(name=original.name))
        if original.reversed_by is not None:
            raise Rejected(ALREADY_REVERSED.format(name=original.name, storno=original.reversed_by))
        storno = _Invoice(
            series=original.series,
            number=self._allocate(original.series),
            kind="storno",
            issue_date=self._issue_date(body.get("issueDate")),
            client=original.client,
            currency=original.currency,
            products=[_negated(product) for product in original.products],
            total=-original.total,
            paid=Decimal(0),
            reverses=original.name,
        )
        original.reversed_by = storno.name
        self._store(storno, canonical_sha256(json.loads(request.body)))
        answer = self._document_body(storno)
        answer.update(message=REVERSED.format(name=original.name), documentUrl="")
        return _answer(200, answer), True

    def _pdf(self, query: dict[str, str]) -> Response:
        self._check_company(query.get("cif"), CIF_REQUIRED)
        invoice = self._find(query.get("seriesname"), query.get("number"))
        response = Response(200, render_pdf(self._pdf_lines(invoice)))
        response.content_type = "application/octet-stream"
        response.headers["Content-Disposition"] = f'attachment; filename="{invoice.name}.pdf"'
        return response

    def _payment_status(self, query: dict[str, str]) -> Response:
        self._check_company(query.get("cif"), CIF_REQUIRED)
        invoice = self._find(query.get("seriesname"), query.get("number"))
        unpaid = invoice.total - invoice.paid
        body = {
            "errorText": "",
            "message": "",
            "number": invoice.number,
            "series": invoice.series,
            "invoiceTotalAmount": float(invoice.total),
            "paidAmount": float(invoice.paid),
            "unpaidAmount": float(unpaid),
            "paid": unpaid <= 0,
        }
        return _answer(200, body)

    def _tax(self, query: dict[str, str]) -> Response:
        self._check_company(query.get("cif"), CIF_REQUIRED)
        taxes = [{"name": name, "percentage": _number(pct)} for name, pct in self._taxes]
        return _answer(200, {"errorText": "", "message": "", "taxes": taxes})

    def _series_list(self, query: dict[str, str]) -> Response:
        self._check_company(query.get("cif"), CIF_REQUIRED)
        wanted = query.get("type") or None
        if wanted is not None and wanted not in ("f", "p", "c"):
            raise Rejected(BAD_SERIES_TYPE.format(type=wanted))
        listed = [
            {"name": name, "nextNumber": _format_number(next_number), "type": kind}
            for name, (kind, next_number) in self._series.items()
            if wanted in (None, kind)
        ]
        return _answer(200, {"errorText": "", "message": "", "list": listed})

    # -- helpers ----------------------------------------------------------------------------

    def _check_company(self, cif: Any, missing: str) -> None:
        if not str(cif or "").strip():
            raise Rejected(missing)
        if fold_cif(str(cif)) != fold_cif(self.company_cif):
            raise Rejected(COMPANY_UNKNOWN)

    def _issue_date(self, raw: Any) -> str:
        if raw in (None, ""):
            return datetime.fromtimestamp(self.clock.now(), BUCHAREST).date().isoformat()
        try:
            return date.fromisoformat(str(raw)).isoformat()
        except ValueError:
            raise Rejected(BAD_DATE) from None

    def _invoice_series(self, raw: Any) -> str:
        invoice_series = [name for name, (kind, _) in self._series.items() if kind == "f"]
        name = str(raw or "").strip() or (invoice_series[0] if invoice_series else "")
        if name not in invoice_series:
            raise Rejected(UNKNOWN_SERIES)
        return name

    def _allocate(self, series: str) -> str:
        entry = self._series[series]
        number = _format_number(entry[1])
        entry[1] += 1
        return number

    def _find(self, series: Any, number: Any) -> _Invoice:
        invoice = self._invoices.get(f"{series or ''}{number or ''}")
        if invoice is None:
            raise Rejected(NOT_FOUND)
        return invoice

    def _store(self, invoice: _Invoice, body_sha256: str) -> None:
        self._invoices[invoice.name] = invoice
        self._ledger.append(
            {
                "series": invoice.series,
                "number": invoice.number,
                "invoice_number": invoice.name,
                "cif": self.company_cif,
                "client_vat_code": str(invoice.client.get("vatCode") or ""),
                "total": str(invoice.total),
                "currency": invoice.currency,
                "kind": invoice.kind,
                "reverses": invoice.reverses,
                "received_at": datetime.fromtimestamp(self.clock.now(), UTC).isoformat(),
                "body_sha256": body_sha256,
            }
        )

    def _total(self, products: list[Any], currency: str) -> Decimal:
        """The invoice total: each tax's net (products and discounts) plus its VAT, rounded
        once per tax, as an EN 16931 breakdown is. Raises Rejected for a bad product."""
        nets: dict[Decimal, Decimal] = {}
        entries: list[tuple[Decimal, Decimal]] = []  # (net, percentage) per entry, for discounts
        for product in products:
            if not isinstance(product, dict):
                raise Rejected(PRODUCT_FIELD.format(field="name"))
            name = str(product.get("name") or "").strip()
            if not name:
                raise Rejected(PRODUCT_FIELD.format(field="name"))
            for required in ("measuringUnitName", "currency"):
                if not str(product.get(required) or "").strip():
                    raise Rejected(PRODUCT_FIELD.format(field=required))
            product_currency = str(product["currency"]).upper()
            if product_currency != currency and currency != "RON":
                raise Rejected(FOREIGN_PRODUCT.format(invoice=currency, product=product_currency))
            percentage = self._tax_percentage(product, name, entries)
            if _flag(product.get("isDiscount")):
                net = self._discount(product, entries)
            else:
                net = self._product_net(product, percentage)
            entries.append((net, percentage))
            nets[percentage] = nets.get(percentage, Decimal(0)) + net
        if all(_flag(p.get("isDiscount")) for p in products):
            raise Rejected(ONLY_DISCOUNTS)
        total = Decimal(0)
        for percentage, net in nets.items():
            total += _round(net) + _round(net * percentage / 100)
        return _round(total)

    def _tax_percentage(
        self, product: dict[str, Any], name: str, entries: list[tuple[Decimal, Decimal]]
    ) -> Decimal:
        if not self.vat_payer:
            return Decimal(0)
        tax_name = str(product.get("taxName") or "").strip()
        raw = product.get("taxPercentage")
        if not tax_name and raw in (None, ""):
            if _flag(product.get("isDiscount")) and entries:
                return entries[-1][1]  # a discount takes the tax of the entry it follows
            raise Rejected(TAX_MISSING.format(name=name))
        try:
            percentage = Decimal(str(raw))
        except InvalidOperation:
            raise Rejected(TAX_UNKNOWN.format(name=name)) from None
        if (tax_name, percentage) not in {(n, p) for n, p in self._taxes}:
            raise Rejected(TAX_UNKNOWN.format(name=name))
        return percentage

    @staticmethod
    def _product_net(product: dict[str, Any], percentage: Decimal) -> Decimal:
        for required in ("quantity", "price"):
            if product.get(required) in (None, ""):
                raise Rejected(PRODUCT_FIELD.format(field=required))
        amount = _decimal(product["quantity"], "quantity") * _decimal(product["price"], "price")
        if _flag(product.get("isTaxIncluded")):
            return amount * 100 / (100 + percentage)
        return amount

    @staticmethod
    def _discount(product: dict[str, Any], entries: list[tuple[Decimal, Decimal]]) -> Decimal:
        covered = int(product.get("numberOfItems") or 1)
        if int(product.get("discountType") or 2) == 2:
            if product.get("discountPercentage") in (None, ""):
                raise Rejected(DISCOUNT_PERCENTAGE)
            share = _decimal(product["discountPercentage"], "discountPercentage") / 100
            return -sum((net for net, _ in entries[-covered:]), Decimal(0)) * share
        if product.get("discountValue") in (None, ""):
            raise Rejected(DISCOUNT_VALUE)
        return _decimal(product["discountValue"], "discountValue")

    def _document_body(self, invoice: _Invoice) -> dict[str, Any]:
        return {
            "errorText": "",
            "message": "",
            "number": invoice.number,
            "series": invoice.series,
            "url": "",
        }

    def _pdf_lines(self, invoice: _Invoice) -> list[str]:
        title = "Factura storno" if invoice.kind == "storno" else "Factura"
        lines = [
            f"SmartBill (sandbox) - {title} {invoice.series} {invoice.number}",
            f"Data emiterii: {invoice.issue_date}",
            f"Furnizor CIF: {self.company_cif}",
            f"Client: {invoice.client.get('name')} ({invoice.client.get('vatCode') or '-'})",
        ]
        if invoice.reverses:
            lines.append(f"Storneaza factura {invoice.reverses}")
        for product in invoice.products:
            lines.append(
                f"- {product.get('name')}: {product.get('quantity', '')} x "
                f"{product.get('price', product.get('discountValue', ''))} {invoice.currency}, "
                f"TVA {product.get('taxName') or '-'} {product.get('taxPercentage', '')}"
            )
        lines.append(f"Total: {invoice.total} {invoice.currency}")
        return lines

    # -- control ----------------------------------------------------------------------------

    def _control(self, request: Request) -> Response | None:
        name = request.path.removeprefix(CONTROL_PREFIX).rstrip("/")
        if (request.method, name) == ("GET", "ledger"):
            return Response.json(200, {"smartbill_invoices": self.ledger_entries()})
        if (request.method, name) == ("GET", "calls"):
            return Response.json(200, {"calls": [asdict(call) for call in self.calls]})
        if (request.method, name) == ("GET", "knobs"):
            with self._lock:
                return Response.json(200, asdict(self.knobs))
        if (request.method, name) == ("POST", "knobs"):
            try:
                self._set_knobs(request.json())
            except (ValueError, TypeError) as error:
                return Response.json(400, {"error": f"smartbill knobs: {error}"})
            with self._lock:
                return Response.json(200, asdict(self.knobs))
        return None

    def _set_knobs(self, raw: Any) -> None:
        allowed = {
            "create_answer_delay_ms",
            "times",
            "business_error_status",
            "blocked_status",
            "block_s",
        }
        if not isinstance(raw, dict) or set(raw) - allowed:
            raise ValueError(f"expected a JSON object with some of {sorted(allowed)}")
        with self._lock:
            if "create_answer_delay_ms" in raw:
                self.delay_create_answers(
                    float(raw["create_answer_delay_ms"]) / 1000, raw.get("times", 1)
                )
            if "business_error_status" in raw:
                status = int(raw["business_error_status"])
                if status not in (200, 400):
                    raise ValueError("business_error_status must be 200 or 400")
                self.knobs.business_error_status = status
            if "blocked_status" in raw:
                status = int(raw["blocked_status"])
                if status not in (403, 429):
                    raise ValueError("blocked_status must be 403 or 429")
                self.knobs.blocked_status = status
            if "block_s" in raw:
                self.knobs.block_s = float(raw["block_s"])


# -- the PDF ----------------------------------------------------------------------------------


def render_pdf(lines: list[str]) -> bytes:
    """A one-page PDF 1.4 showing `lines` in Helvetica, with a correct cross-reference table."""
    text = ["BT", "/F1 10 Tf", "14 TL", "50 800 Td"]
    for line in lines:
        text.append(f"({_pdf_text(line)}) Tj T*")
    text.append("ET")
    stream = "\n".join(text).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _pdf_text(line: str) -> str:
    """Latin-1 text with PDF string escapes; diacritics the font lacks lose their marks."""
    plain = unicodedata.normalize("NFKD", line)
    kept = "".join(ch for ch in plain if not unicodedata.combining(ch))
    latin = kept.encode("latin-1", "replace").decode("latin-1")
    return latin.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


# -- helpers ----------------------------------------------------------------------------------


def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"null", parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Rejected(BAD_JSON) from None
    if not isinstance(body, dict):
        raise Rejected(BAD_JSON)
    return body


def _answer(status: int, payload: dict[str, Any]) -> Response:
    response = Response.json(status, payload)
    response.content_type = _JSON
    return response


def _error_body(message: str) -> dict[str, Any]:
    return {"errorText": message, "message": "", "number": "", "series": "", "url": ""}


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool):
        raise Rejected(PRODUCT_FIELD.format(field=name))
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise Rejected(PRODUCT_FIELD.format(field=name)) from None


def _flag(value: Any) -> bool:
    """SmartBill booleans: true/false or 1/0 (also as strings)."""
    return str(value).strip().lower() in ("true", "1")


def _round(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _format_number(number: int) -> str:
    return f"{number:04d}"


def _negated(product: dict[str, Any]) -> dict[str, Any]:
    copy = dict(product)
    if _flag(copy.get("isDiscount")):
        if copy.get("discountValue") not in (None, ""):
            copy["discountValue"] = -Decimal(str(copy["discountValue"]))
    elif copy.get("quantity") not in (None, ""):
        copy["quantity"] = -Decimal(str(copy["quantity"]))
    return copy
