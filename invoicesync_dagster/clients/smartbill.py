"""Client for SmartBill Cloud's REST API (EFACTURA.md §6, §8.10): invoices made from the
project's invoice model, stornos, PDFs, payment status, the account's taxes and series.

`SmartBillClient(api_base, username, token, cif)` speaks to `{api_base}/SBORO/api/` (api_base is
the host, `https://ws.smartbill.ro` in production, as SMARTBILL_API_BASE holds it; a base that
already ends in `/SBORO/api` is used as is) with HTTP Basic `username:token`. The token is never
kept in an attribute, a message or a repr.

Limits: SmartBill blocks an account for 10 minutes after more than 30 calls in 10 seconds. Every
call takes a slot of a `CallLimiter` (shared by the clients of one account in this process), which
waits rather than fail; it counts a call from before it is sent until its answer is in, so the
server, whatever the latency, never sees 31 calls within 10 s. Other processes using the same
account are not counted: run SmartBill work in one process at a time (a Dagster pool of 1).

What comes back, and what it becomes:
- HTTP 401 → SmartBillAuthError (bad username/token, or a company not in that account);
- HTTP 403 (SmartBill's documented "account blocked for exceeding the call limit") or 429 →
  SmartBillRateLimited, never retried here (the block lasts ~10 minutes);
- a non-empty `errorText`, in an HTTP 200 or 4xx answer → SmartBillRejected carrying the text;
- 5xx, timeouts, connection errors → SmartBillUnavailable; GET calls are retried first
  (`max_retries`, backoff);
- for `create_invoice` and `reverse`, which are not idempotent: a timeout or broken connection
  after the request went out, or a 5xx, → SmartBillOutcomeUnknown, never retried. SmartBill may
  have created the invoice: the caller reconciles (the series' next number, then the payment
  status or PDF of the numbers issued since) before sending again. Failing to connect at all is
  SmartBillUnavailable: nothing was sent. Keep-alive is off so that a stale pooled connection
  cannot make a create's fate unknown.

How a `Document` becomes a SmartBill invoice (`invoice_payload`):
- buyer → `client`: `vatCode` the VAT id, else the tax registration id (CUI, CNP, the B2C
  placeholder), else "-" (SmartBill's mark for a person without an id); `isTaxPayer` when there
  is a VAT id; address, Bucharest sector as "Sector N", county by its Romanian name, country
  "Romania" or the ISO code abroad;
- each line → a product at its net unit price (`isTaxIncluded` false), with the SmartBill tax
  matched against `GET tax` (`match_tax`): category S by the line's rate; AE, K, G, E, O, Z by
  the 0 % tax whose name fits (`TAX_NAME_HINTS`, or `tax_names={"O": "..."}`); no fit raises
  SmartBillMappingError naming the document and the line, before anything is sent. A seller
  without a VAT id is not a VAT payer: its products carry no tax;
- line and document allowances → SmartBill value discounts under the same tax;
- currency and `exchangeRate` (the document's RON rate) for non-RON documents; notes →
  `mentions`; the project's document number → `observations` (SmartBill numbers the invoice in
  its own series); an amount already paid (by card through Stripe) → `payment`;
- a credit note → the same with negative quantities (a partial storno); `reverse` is the full
  storno of an invoice SmartBill issued.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any

import httpx
from pydantic import SecretStr

from invoicesync_dagster.efactura.counties import COUNTY_NAMES
from invoicesync_dagster.efactura.model import Document, DocumentKind, InvoiceLine, Party
from invoicesync_dagster.efactura.vat import VatCategory

API_PATH = "/SBORO/api"
CALLS_PER_WINDOW = 30
WINDOW_S = 10.0
MAX_BACKOFF_S = 30.0
_JSON = "application/json"
# Envelopes some SmartBill answers are wrapped in (seen by SmartBill's generated SDKs).
_ENVELOPES = (
    "sbcResponse",
    "Response",
    "sbcInvoicePaymentStatusResponse",
    "sbcSeries",
    "sbcTaxes",
    "Fault",
    "fault",
)
# UN/ECE Rec 20 unit → SmartBill measuring unit name; others are sent as their code.
UNIT_NAMES = {
    "C62": "buc",
    "H87": "buc",
    "HUR": "ora",
    "MIN": "min",
    "DAY": "zi",
    "WEE": "saptamana",
    "MON": "luna",
    "ANN": "an",
    "KGM": "kg",
    "MTR": "m",
    "LTR": "l",
}
GOODS_UNITS = frozenset({"H87", "KGM", "MTR", "LTR"})  # lines in these units are not services
CARD_PAYMENT_CODES = frozenset({"48", "54", "55"})
# Which SmartBill 0 % tax fits a VAT category: the first hint found in a tax's name (folded:
# lower case, no diacritics) wins. "SDD"/"SFDD" are SmartBill's own names for exempt supplies
# with / without the right of deduction; "Taxare inversa" its reverse-charge tax.
TAX_NAME_HINTS: dict[VatCategory, tuple[str, ...]] = {
    VatCategory.REVERSE_CHARGE: ("taxare inversa", "inversa"),
    VatCategory.INTRA_COMMUNITY: ("sdd", "scutit cu drept", "intracomunitar"),
    VatCategory.EXPORT: ("sdd", "scutit cu drept", "export"),
    VatCategory.EXEMPT: ("sfdd", "scutit fara drept", "scutit", "scutita"),
    VatCategory.NOT_SUBJECT: ("neimpozabil", "neimpozabile", "neinclus", "in afara sferei"),
    VatCategory.ZERO_RATED: ("cota zero", "zero"),
}

log = logging.getLogger(__name__)


# -- errors -----------------------------------------------------------------------------------


class SmartBillError(Exception):
    """SmartBill answered something that is not a result; the message says what and why."""


class SmartBillAuthError(SmartBillError):
    """HTTP 401: the username/token pair is wrong or the company is not in that account."""


class SmartBillRateLimited(SmartBillError):
    """SmartBill blocked the account for exceeding its call limit (HTTP 403 or 429)."""

    def __init__(self, message: str, reset_at: float | None = None) -> None:
        super().__init__(message)
        self.reset_at = reset_at  # X-RateLimit-Reset as SmartBill sent it, if it did


class SmartBillRejected(SmartBillError):
    """SmartBill refused the request with an `errorText` (in an HTTP 200 or 4xx answer)."""

    def __init__(self, message: str, error_text: str, status: int) -> None:
        super().__init__(message)
        self.error_text = error_text
        self.status = status


class SmartBillUnavailable(SmartBillError):
    """SmartBill could not be reached or failed (connection, timeout, 5xx); nothing was
    created, so trying again later is safe."""


class SmartBillOutcomeUnknown(SmartBillError):
    """A create or storno was sent but no answer came back: SmartBill may have issued the
    invoice. Never resend blindly; reconcile first."""

    def __init__(self, message: str, series: str, request_sha256: str) -> None:
        super().__init__(message)
        self.series = series
        self.request_sha256 = request_sha256


class SmartBillMappingError(SmartBillError, ValueError):
    """The document cannot be expressed with the account's SmartBill settings (e.g. no tax
    fits a line); nothing was sent."""


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmartBillInvoice:
    """An invoice or storno SmartBill issued."""

    series: str
    number: str
    url: str = ""
    message: str = ""
    request_sha256: str = ""  # canonical JSON of what was sent, as the sandbox ledger has it

    @property
    def name(self) -> str:
        return f"{self.series}{self.number}"


@dataclass(frozen=True)
class SmartBillTax:
    name: str
    percentage: Decimal


@dataclass(frozen=True)
class SmartBillSeries:
    name: str
    next_number: str
    type: str  # f invoice, p proforma, c receipt


@dataclass(frozen=True)
class SmartBillPaymentStatus:
    series: str
    number: str
    total: Decimal
    paid: Decimal
    unpaid: Decimal
    is_paid: bool


# -- the call limiter -------------------------------------------------------------------------


class CallLimiter:
    """At most `calls` calls per rolling `per_s` seconds; `slot()` waits for a free one.

    A call holds its slot from before it is sent until its answer is in, and counts for
    `per_s` seconds after that: a new call starts only when fewer than `calls` calls are running
    or finished within the last `per_s` seconds. So any `calls + 1` calls reach the server at
    least `per_s` seconds apart whatever the latency. Thread-safe; `clock` and `sleep` can be
    replaced (tests drive time without sleeping)."""

    def __init__(
        self,
        calls: int = CALLS_PER_WINDOW,
        per_s: float = WINDOW_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls < 1 or per_s <= 0:
            raise ValueError(f"need calls >= 1 and per_s > 0, got {calls} per {per_s} s")
        self.calls = calls
        self.per_s = per_s
        self._clock = clock
        self._sleep = sleep
        self._changed = threading.Condition()
        self._running = 0
        self._finished: deque[float] = deque()  # end times, oldest first

    @contextmanager
    def slot(self) -> Iterator[None]:
        self._acquire()
        try:
            yield
        finally:
            self._release()

    def _acquire(self) -> None:
        with self._changed:
            while True:
                now = self._clock()
                while self._finished and self._finished[0] <= now - self.per_s:
                    self._finished.popleft()
                if self._running + len(self._finished) < self.calls:
                    self._running += 1
                    return
                if not self._finished:  # every slot is held by a call still running
                    self._changed.wait()
                    continue
                wait = self._finished[0] + self.per_s - now
                self._changed.release()  # others may finish calls while this one waits
                try:
                    self._sleep(wait)
                finally:
                    self._changed.acquire()

    def _release(self) -> None:
        with self._changed:
            self._running -= 1
            self._finished.append(self._clock())
            self._changed.notify_all()


_LIMITERS: dict[tuple[str, str], CallLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def account_limiter(api_base: str, username: str) -> CallLimiter:
    """The limiter shared by every client of one SmartBill account in this process."""
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault((api_base, username), CallLimiter())


# -- the mapping ------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Lower case, no diacritics, single spaces: how tax names are compared."""
    plain = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch))
    return " ".join(plain.lower().split())


def match_tax(
    category: VatCategory,
    rate: Decimal | None,
    taxes: Sequence[SmartBillTax],
    *,
    where: str,
    tax_names: Mapping[str, str] | None = None,
) -> SmartBillTax:
    """The account's tax for a VAT category and rate; SmartBillMappingError naming `where`
    (the document and line) when none fits. `tax_names` maps a category code (`"O"`) to the
    name of the tax to use, over the name hints."""
    category = VatCategory(category)
    wanted = rate if category is VatCategory.STANDARD else Decimal(0)
    if wanted is None:
        raise SmartBillMappingError(f"{where}: VAT category S without a rate")
    same_rate = [tax for tax in taxes if tax.percentage == wanted]
    chosen = (tax_names or {}).get(category.value)
    if chosen is not None:
        found = [tax for tax in same_rate if fold(tax.name) == fold(chosen)]
    elif category is VatCategory.STANDARD:
        found = same_rate
    else:
        found = [
            tax
            for hint in TAX_NAME_HINTS[category]
            for tax in same_rate
            if f" {hint} " in f" {fold(tax.name)} "
        ]
    if found:
        return found[0]
    described = f"{category.value} {wanted.normalize():f} %"
    known = ", ".join(f"{t.name} {t.percentage.normalize():f} %" for t in taxes) or "none"
    if chosen is not None:
        hint = f"tax_names names {chosen!r} for {category.value}, which the account lacks"
    elif category is VatCategory.STANDARD:
        hint = f"no tax has {wanted.normalize():f} %"
    else:
        hint = f"no 0 % tax is named like {' / '.join(TAX_NAME_HINTS[category])}"
    raise SmartBillMappingError(
        f"{where} (VAT {described}): no SmartBill tax fits: {hint}. The account's taxes: "
        f"{known}. Define the tax in SmartBill (Configurare > Cote TVA) or name the one to use "
        f"with tax_names={{'{category.value}': '<tax name>'}}"
    )


def invoice_payload(
    document: Document,
    *,
    series: str,
    cif: str,
    taxes: Sequence[SmartBillTax],
    tax_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The body of `POST invoice` for `document` (see the module docstring)."""
    vat_payer = document.seller.vat_id is not None
    sign = -1 if document.kind is DocumentKind.CREDIT_NOTE else 1
    currency = document.currency

    def tax_of(category: VatCategory, rate: Decimal | None, where: str) -> SmartBillTax | None:
        if not vat_payer:
            return None
        return match_tax(category, rate, taxes, where=where, tax_names=tax_names)

    products: list[dict[str, Any]] = []
    for line in document.lines:
        where = f"document {document.number}, line {line.id} ({line.name!r})"
        tax = tax_of(line.vat_category, line.vat_rate, where)
        products.append(_product(line, currency, tax, sign))
        for allowance in line.allowances:
            name = allowance.reason or f"Discount {line.name}"
            products.append(_discount(name, allowance.amount, currency, tax, sign, 1))
    for n, allowance in enumerate(document.allowances, 1):
        where = f"document {document.number}, document discount {n} ({allowance.reason!r})"
        tax = tax_of(allowance.vat_category, allowance.vat_rate, where)
        name = allowance.reason or "Discount"
        products.append(_discount(name, allowance.amount, currency, tax, sign, len(products)))

    mentions = list(document.notes)
    for preceding in document.preceding_invoices:
        on = f" din {preceding.issue_date.isoformat()}" if preceding.issue_date else ""
        mentions.append(f"Storno pentru factura {preceding.number}{on}")
    body: dict[str, Any] = {
        "companyVatCode": cif,
        "client": _client(document.buyer),
        "isDraft": False,
        "issueDate": document.issue_date.isoformat(),
        "seriesName": series,
        "currency": currency,
        "language": "RO",
        "precision": 2,
        "useStock": False,
        "observations": f"invoicesync {document.number}",
        "products": products,
    }
    if currency != "RON" and document.tax_exchange_rate is not None:
        body["exchangeRate"] = document.tax_exchange_rate
    if document.due_date is not None:
        body["dueDate"] = document.due_date.isoformat()
    if document.delivery is not None and document.delivery.delivery_date is not None:
        body["deliveryDate"] = document.delivery.delivery_date.isoformat()
    if mentions:
        body["mentions"] = "\n".join(mentions)
    if document.paid_amount > 0 and sign > 0:
        by_card = any(means.code in CARD_PAYMENT_CODES for means in document.payment_means)
        body["payment"] = {
            "value": document.paid_amount,
            "type": "Card" if by_card else "Alta incasare",
            "isCash": False,
        }
    return body


def _client(buyer: Party) -> dict[str, Any]:
    address = buyer.address
    street = ", ".join(part for part in (address.street, address.additional_street) if part)
    city = address.city
    if city.upper().startswith("SECTOR") and city[-1:].isdigit():
        city = f"Sector {city[-1]}"  # SmartBill wants Bucharest's sector as the locality
    if address.country == "RO":
        county = COUNTY_NAMES.get(address.county or "", address.county or "")
        country = "Romania"
    else:
        county, country = address.county or "", address.country
    client = {
        "name": buyer.name,
        "vatCode": buyer.vat_id or buyer.tax_registration_id or "-",
        "regCom": buyer.trade_register_number,
        "isTaxPayer": buyer.vat_id is not None,
        "address": street or "-",
        "city": city or "-",
        "county": county,
        "country": country,
        "email": buyer.email,
        "contact": buyer.contact_name,
        "phone": buyer.phone,
        "saveToDb": False,
    }
    return {key: value for key, value in client.items() if value not in (None, "")}


def _product(
    line: InvoiceLine, currency: str, tax: SmartBillTax | None, sign: int
) -> dict[str, Any]:
    product: dict[str, Any] = {
        "name": line.name,
        "isDiscount": False,
        "measuringUnitName": UNIT_NAMES.get(line.unit_code, line.unit_code),
        "currency": currency,
        "quantity": line.quantity * sign,
        "price": line.unit_price,
        "isTaxIncluded": False,
        "isService": line.unit_code not in GOODS_UNITS,
        "saveToDb": False,
    }
    if line.seller_item_id:
        product["code"] = line.seller_item_id
    if line.description:
        product["productDescription"] = line.description
    return product | _tax_fields(tax)


def _discount(
    name: str,
    amount: Decimal,
    currency: str,
    tax: SmartBillTax | None,
    sign: int,
    number_of_items: int,
) -> dict[str, Any]:
    discount = {
        "name": name,
        "isDiscount": True,
        "numberOfItems": number_of_items,
        "measuringUnitName": "buc",
        "currency": currency,
        "isTaxIncluded": False,
        "discountType": 1,  # a value, negative: it lowers the total
        "discountValue": -amount * sign,
    }
    return discount | _tax_fields(tax)


def _tax_fields(tax: SmartBillTax | None) -> dict[str, Any]:
    return {} if tax is None else {"taxName": tax.name, "taxPercentage": tax.percentage}


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The JSON bytes sent for `payload` (Decimals as JSON numbers)."""
    return json.dumps(payload, default=_json_number, ensure_ascii=False).encode()


def canonical_sha256(body: bytes) -> str:
    """sha256 of a JSON body in canonical form (keys sorted, no spaces, UTF-8), as the
    sandbox's SmartBill ledger records it."""
    text = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _json_number(value: Any) -> int | float:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# -- the client -------------------------------------------------------------------------------


class SmartBillClient:
    """One SmartBill account and company (`cif`). Safe to share between threads."""

    def __init__(
        self,
        api_base: str,
        username: str,
        token: str | SecretStr,
        cif: str,
        *,
        tax_names: Mapping[str, str] | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        backoff_s: float = 1.0,
        limiter: CallLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        if not username or not secret or not cif:
            raise ValueError(
                "SmartBill needs a username (SMARTBILL_USERNAME), a token (SMARTBILL_TOKEN) and "
                "the company's CIF"
            )
        base = api_base.rstrip("/")
        self.api_base = base if base.endswith(API_PATH) else base + API_PATH
        self.username = username
        self.cif = cif
        self.tax_names = dict(tax_names or {})
        unknown = sorted(set(self.tax_names) - {category.value for category in VatCategory})
        if unknown:
            raise ValueError(
                f"tax_names keys must be VAT category codes ({', '.join(VatCategory)}), "
                f"got {unknown}"
            )
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.limiter = limiter or account_limiter(self.api_base, username)
        self._sleep = sleep
        self._taxes: tuple[SmartBillTax, ...] | None = None
        self._http = httpx.Client(
            auth=httpx.BasicAuth(username, secret),
            timeout=timeout_s,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"Accept": _JSON, "User-Agent": "invoicesync"},
        )

    def __repr__(self) -> str:
        return (
            f"SmartBillClient(api_base={self.api_base!r}, username={self.username!r}, "
            f"cif={self.cif!r})"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SmartBillClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- lookups ----------------------------------------------------------------------------

    def taxes(self, *, refresh: bool = False) -> tuple[SmartBillTax, ...]:
        """The account's VAT rates (`GET tax`), asked once per client unless `refresh`."""
        if self._taxes is None or refresh:
            payload = self._get("tax", {"cif": self.cif}, "GET tax")
            taxes = []
            for item in payload.get("taxes") or []:
                try:
                    taxes.append(SmartBillTax(str(item["name"]), _decimal(item["percentage"])))
                except (KeyError, TypeError, InvalidOperation):
                    raise SmartBillError(f"GET tax: unreadable tax {item!r:.200}") from None
            self._taxes = tuple(taxes)
        return self._taxes

    def series(self, kind: str = "f") -> list[SmartBillSeries]:
        """The account's document series of `kind` (f invoice, p proforma, c receipt)."""
        payload = self._get("series", {"cif": self.cif, "type": kind}, f"GET series type={kind}")
        return [
            SmartBillSeries(str(item.get("name")), str(item.get("nextNumber")), str(item["type"]))
            for item in payload.get("list") or []
            if isinstance(item, dict) and "type" in item
        ]

    def next_number(self, series: str) -> str:
        """The number SmartBill will give the next invoice in `series`: before and after an
        unknown outcome, it tells whether invoices were issued meanwhile."""
        for found in self.series("f"):
            if found.name == series:
                return found.next_number
        raise SmartBillError(
            f"SmartBill has no invoice series {series!r} for company {self.cif}; create it in "
            "SmartBill (Configurare > Serii documente) or fix SMARTBILL_SERIES"
        )

    def payment_status(self, series: str, number: str) -> SmartBillPaymentStatus:
        what = f"GET invoice/paymentstatus {series}{number}"
        payload = self._get("invoice/paymentstatus", self._document_query(series, number), what)
        try:
            total = _decimal(payload.get("invoiceTotalAmount"))
            paid = _decimal(payload.get("paidAmount") or 0)
            unpaid = _decimal(payload.get("unpaidAmount") or 0)
        except (InvalidOperation, TypeError):
            raise SmartBillError(f"{what}: unreadable amounts {payload!r:.300}") from None
        return SmartBillPaymentStatus(
            series=str(payload.get("series") or series),
            number=str(payload.get("number") or number),
            total=total,
            paid=paid,
            unpaid=unpaid,
            is_paid=bool(payload["paid"]) if "paid" in payload else unpaid <= 0,
        )

    def pdf(self, series: str, number: str) -> bytes:
        what = f"GET invoice/pdf {series}{number}"
        response = self._send(
            "GET",
            "invoice/pdf",
            what,
            params=self._document_query(series, number),
            accept="application/octet-stream",
            retries=self.max_retries,
        )
        if response.status_code == 200 and response.content.startswith(b"%PDF"):
            return response.content
        self._parse(response, what)  # raises for an error answer
        raise SmartBillError(
            f"{what}: HTTP {response.status_code} answer is not a PDF "
            f"({response.headers.get('content-type', 'no type')}): {_snippet(response.text)}"
        )

    # -- documents --------------------------------------------------------------------------

    def create_invoice(self, document: Document, series: str) -> SmartBillInvoice:
        """Issue `document` in SmartBill `series`. Never retried: see SmartBillOutcomeUnknown."""
        payload = invoice_payload(
            document, series=series, cif=self.cif, taxes=self.taxes(), tax_names=self.tax_names
        )
        what = f"POST invoice (document {document.number}, series {series})"
        return self._create("invoice", payload, series, what)

    def reverse(self, series: str, number: str, issue_date: date) -> SmartBillInvoice:
        """Storno (full reversal) of invoice `series``number`, issued on `issue_date` as a new
        invoice in the same series. Never retried: see SmartBillOutcomeUnknown."""
        payload = {
            "companyVatCode": self.cif,
            "seriesName": series,
            "number": number,
            "issueDate": issue_date.isoformat(),
        }
        what = f"POST invoice/reverse ({series}{number})"
        return self._create("invoice/reverse", payload, series, what)

    def _create(
        self, path: str, payload: dict[str, Any], series: str, what: str
    ) -> SmartBillInvoice:
        body = encode_body(payload)
        sha = canonical_sha256(body)
        create = (series, sha)
        answer = self._parse(self._send("POST", path, what, body=body, create=create), what, create)
        number = str(answer.get("number") or "")
        if not number:
            raise SmartBillOutcomeUnknown(
                f"{what}: SmartBill answered without an invoice number ({_snippet(str(answer))});"
                " check in SmartBill whether it was issued before sending it again",
                series,
                sha,
            )
        return SmartBillInvoice(
            series=str(answer.get("series") or series),
            number=number,
            url=str(answer.get("url") or answer.get("documentUrl") or ""),
            message=str(answer.get("message") or ""),
            request_sha256=sha,
        )

    # -- HTTP -------------------------------------------------------------------------------

    def _document_query(self, series: str, number: str) -> dict[str, str]:
        # SmartBill's own client writes `seriesname` in lower case.
        return {"cif": self.cif, "seriesname": series, "number": number}

    def _get(self, path: str, params: dict[str, str], what: str) -> dict[str, Any]:
        response = self._send("GET", path, what, params=params, retries=self.max_retries)
        return self._parse(response, what)

    def _send(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        create: tuple[str, str] | None = None,
        accept: str = _JSON,
        retries: int = 0,
    ) -> httpx.Response:
        """One exchange (GETs: with retries). `create` (series, request sha256) marks a
        non-idempotent create, whose lost answers are unknown outcomes."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        url = f"{self.api_base}/{path}"
        attempt = 0
        while True:
            try:
                with self.limiter.slot():
                    response = self._exchange(method, url, what, params, body, headers, create)
                if response.status_code >= 500 and create is None:
                    raise SmartBillUnavailable(
                        f"{what}: HTTP {response.status_code} {_snippet(response.text)}"
                    )
                return response
            except SmartBillUnavailable as error:
                if attempt >= retries:
                    raise
                delay = min(self.backoff_s * 2**attempt, MAX_BACKOFF_S)
                attempt += 1
                log.warning("%s; retry %d/%d in %.1f s", error, attempt, retries, delay)
                self._sleep(delay)

    def _exchange(
        self,
        method: str,
        url: str,
        what: str,
        params: dict[str, str] | None,
        body: bytes | None,
        headers: dict[str, str],
        create: tuple[str, str] | None,
    ) -> httpx.Response:
        try:
            return self._http.request(method, url, params=params, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            # Nothing left this machine: safe to try again, even for a create.
            raise SmartBillUnavailable(
                f"{what}: cannot connect to {self.api_base} ({error}); check SMARTBILL_API_BASE "
                "and the network"
            ) from error
        except httpx.TransportError as error:
            problem = (
                f"no answer within {self.timeout_s:g} s"
                if isinstance(error, httpx.TimeoutException)
                else f"the connection broke ({type(error).__name__}: {error})"
            )
            if create is not None:
                raise _unknown(what, problem, *create) from error
            raise SmartBillUnavailable(f"{what}: {problem}") from error

    def _parse(
        self, response: httpx.Response, what: str, create: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        status = response.status_code
        try:
            payload = _unwrap(json.loads(response.content))
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        error_text = _error_text(payload)
        if status == 401:
            raise SmartBillAuthError(
                f"{what}: SmartBill refused user {self.username!r} for company {self.cif} "
                f"(HTTP 401{': ' + error_text if error_text else ''}). Check SMARTBILL_USERNAME "
                "and SMARTBILL_TOKEN (SmartBill Cloud > Contul meu > Integrari > API) and that "
                "the company belongs to that account"
            )
        if status in (403, 429):
            reset = response.headers.get("x-ratelimit-reset")
            raise SmartBillRateLimited(
                f"{what}: SmartBill blocked the account for exceeding its call limit (HTTP "
                f"{status}{': ' + error_text if error_text else ''}). It allows 30 calls in "
                "10 seconds and then blocks for about 10 minutes: wait before calling again",
                _float(reset),
            )
        if status >= 500:
            problem = f"HTTP {status} {_snippet(response.text)}"
            if create is not None:
                raise _unknown(what, problem, *create)
            raise SmartBillUnavailable(f"{what}: {problem}")
        if error_text:
            raise SmartBillRejected(
                f"{what}: SmartBill refused it (HTTP {status}): {error_text}", error_text, status
            )
        if status >= 400 or not isinstance(payload, dict):
            raise SmartBillError(
                f"{what}: unexpected HTTP {status} answer "
                f"({response.headers.get('content-type', 'no type')}): {_snippet(response.text)};"
                " check SMARTBILL_API_BASE"
            )
        return payload


# -- helpers ----------------------------------------------------------------------------------


def _unknown(what: str, problem: str, series: str, sha: str) -> SmartBillOutcomeUnknown:
    return SmartBillOutcomeUnknown(
        f"{what}: {problem} after the request was sent; SmartBill may or may not have issued "
        "the invoice. Do not send it again before reconciling: compare the series' next "
        "number with the one before the attempt and look at the invoices issued since",
        series,
        sha,
    )


def _unwrap(payload: Any) -> Any:
    """The object inside one of SmartBill's envelopes (`{"sbcResponse": {...}}`), if any."""
    if isinstance(payload, dict):
        for key in _ENVELOPES:
            inner = payload.get(key)
            if isinstance(inner, dict):
                return inner
    return payload


def _error_text(payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    text = payload.get("errorText")
    return text.strip() if isinstance(text, str) else ""


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise TypeError(f"not a number: {value!r}")
    return Decimal(str(value))


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _snippet(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "…")
