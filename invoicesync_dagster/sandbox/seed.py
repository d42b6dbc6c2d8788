"""Realistic, deterministic Stripe data for the sandbox (`invoicesync sandbox seed`).

`generate(days, ...)` yields Stripe objects (see `stripe_objects`) for the `days` days ending
`end_date` (default: yesterday in Europe/Bucharest); `write_jsonl` writes them one per line, the
fixture format the sandbox loads. The same arguments give byte-identical output.

Order: tax rates, the customers that existed before the range, then every object and event of
the range in creation order (`created`, ties in causal order), then the coupons (last, because
they carry their final `times_redeemed`).

State is the state at the end of the range ("now"): an object shows every change that happened
up to then and none after; an event exists only for a change that happened up to then, carrying
the object as it was right after that change. So an invoice created on the last day and due to be
paid three days later is still `open`, without `invoice.paid`, charge or payment intent.

What the data contains
- Customers: Romanian companies with valid CUIs, either as an `eu_vat` tax id (`RO<cui>`) or
  only in `metadata` (`cui` or `cif`, with or without `RO`), plus `metadata.reg_com`; two with an
  invalid CUI (one per form); one company without any CUI; private persons (some with a valid
  `metadata.cnp`); EU businesses (DE, FR, IT, NL, `eu_vat`, tax exempt `reverse`); non-EU
  customers (US, GB, CH, tax exempt `exempt`). Names carry diacritics and `& < " '`.
- Romanian addresses: `state` is the county, as its name from `efactura.counties.COUNTY_NAMES`
  (e.g. "Cluj", "București") for three customers in four and as its plate code (the ISO
  3166-2:RO suffix, e.g. "CJ", "B") for the rest, so `RO-<code>` is always derivable. Bucharest
  addresses have `city` "Sector 1" .. "Sector 6".
- Invoices (one-off, account-level numbers `<PREFIX>-0001`): RON, EUR and USD; 1 to 6 lines, some
  product names over 100 characters; Romanian VAT (Stripe Tax, 19 % before 2025-08-01 and 21 %
  from then, by creation day), reverse charge for EU businesses (0 tax, reason
  `reverse_charge`), exempt non-EU customers (0 tax, `customer_exempt`), and some Romanian
  invoices without Stripe Tax at all (no taxes); percent and amount coupons. Outcomes, in fixed
  proportions per 20 invoices: 9 paid within minutes, 6 paid 1-5 days later, 2 left open,
  1 voided, 1 marked uncollectible, 1 left as a draft.
- Every paid invoice has a payment intent and a succeeded charge for its total, linked through
  the invoice's `payments` (invoice_payment objects; the current API has no `charge.invoice`).
  Of every 12 paid invoices, one is partly refunded, one fully refunded, one gets a credit note
  refunded to the card and one a credit note settled outside Stripe.
- One-off charges without an invoice (each with its payment intent); of every 5, one is partly
  refunded, one twice partly, one fully.
- Events: invoice.finalized, invoice.paid, invoice.voided, invoice.marked_uncollectible,
  charge.succeeded, charge.refunded, credit_note.created.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import random
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from invoicesync_dagster.efactura.counties import COUNTY_NAMES
from invoicesync_dagster.efactura.identifiers import cui_check_digit
from invoicesync_dagster.sandbox import stripe_objects as so

BUCHAREST = ZoneInfo("Europe/Bucharest")
RO_VAT_21_FROM = date(2025, 8, 1)  # Law 141/2025: the standard rate went from 19 % to 21 %
ACCOUNT_NAME = "Exemplu Software S.R.L."
STATEMENT_DESCRIPTOR = "EXEMPLU SOFTWARE"
_DAY = 86_400
_HOUR = 3_600

Obj = dict[str, Any]


def yesterday_in_bucharest() -> date:
    return datetime.now(BUCHAREST).date() - timedelta(days=1)


def day_start(day: date) -> int:
    """Unix time of midnight Europe/Bucharest opening `day` (days are 23, 24 or 25 hours)."""
    return int(datetime.combine(day, time(), BUCHAREST).timestamp())


def generate(
    days: int,
    *,
    seed: int = 7,
    invoices_per_day: int = 20,
    charges_per_day: int = 5,
    end_date: date | None = None,
) -> Iterator[Obj]:
    """Stripe objects for the `days` days ending `end_date` (default: yesterday, Bucharest)."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if invoices_per_day < 0 or charges_per_day < 0:
        raise ValueError("invoices_per_day and charges_per_day must not be negative")
    last = end_date or yesterday_in_bucharest()
    first = last - timedelta(days=days - 1)
    return _Seeder(random.Random(seed), first, last).run(invoices_per_day, charges_per_day)


def write_jsonl(path: str | os.PathLike[str], objects: Iterable[Obj]) -> dict[str, int]:
    """Write one object per line (UTF-8, compact JSON) and return how many of each type.
    The file appears complete or not at all (written beside it, then renamed)."""
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    encode = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), check_circular=False
    ).encode
    counts: Counter[str] = Counter()
    try:
        with partial.open("w", encoding="utf-8", newline="\n") as out:
            batch: list[str] = []
            for obj in objects:
                batch.append(encode(obj))
                counts[obj["object"]] += 1
                if len(batch) == 256:  # fewer, larger writes: encoding to UTF-8 has a cost per call
                    out.write("\n".join(batch) + "\n")
                    batch.clear()
            if batch:
                out.write("\n".join(batch) + "\n")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return dict(sorted(counts.items()))


# --- reference data ---------------------------------------------------------------------------

# County plate code → (a town in it, first digits of its postal codes).
_RO_TOWNS: dict[str, tuple[str, str]] = {
    "CJ": ("Cluj-Napoca", "400"), "TM": ("Timișoara", "300"), "IS": ("Iași", "700"),
    "CT": ("Constanța", "900"), "BV": ("Brașov", "500"), "SB": ("Sibiu", "550"),
    "BH": ("Oradea", "410"), "PH": ("Ploiești", "100"), "DJ": ("Craiova", "200"),
    "AG": ("Pitești", "110"), "IF": ("Voluntari", "077"), "MS": ("Târgu Mureș", "540"),
    "SV": ("Suceava", "720"), "GL": ("Galați", "800"), "AR": ("Arad", "310"),
    "BC": ("Bacău", "600"), "MM": ("Baia Mare", "430"), "AB": ("Alba Iulia", "510"),
    "HD": ("Deva", "330"), "BN": ("Bistrița", "420"),
}  # fmt: skip
_STREETS = (
    "Str. Mihai Eminescu nr. {n}", "Bd. Unirii nr. {n}, bl. B{b}, ap. {a}",
    "Calea Victoriei nr. {n}", "Șos. Pantelimon nr. {n}", "Str. Ștefan cel Mare nr. {n}",
    "Aleea Trandafirilor nr. {n}", "Str. Avram Iancu nr. {n}", "Bd. Independenței nr. {n}",
    "Str. Țebei nr. {n}", "Piața Unirii nr. {n}", "Str. Gheorghe Doja nr. {n}, et. {b}",
    "Str. Mărășești nr. {n}", "Calea Moșilor nr. {n}, sc. A, ap. {a}",
)  # fmt: skip
_LINE2 = ("Clădirea „Nord” & Co, et. 2", "Birou 3, parter", "Hala <C>", "Corp B, et. 4")
_COMPANY_STEMS = (
    "Carpați Soft", "Dunărea Logistic", "Țara Bârsei Agro", "Bucovina Lemn", "Mureș Construct",
    "Șoimii Transport", "Ștefănescu Medical", "Vânătorii Tech", "Brâncoveanu Edit",
    "Lumină & Umbră Design", "Olteanu Farm", "Câmpia Verde", "Apuseni Turism",
    "Delta Pește & Co", "Făgăraș Energie", "Tîrnava Vin", "Meșterul Mâinii", "Cetatea Digital",
    "Iași Pixel", "Ghiță & Frații", "Moara lui Călifar", "Ursus Print", "Olt Agroserv",
)  # fmt: skip
_COMPANY_FORMS = ("S.R.L.", "S.R.L.", "S.R.L.", "S.A.", "SRL", "S.R.L.-D.")
_FIRST_NAMES = (
    "Andrei", "Ioana", "Ștefan", "Mihai", "Elena", "Cătălina", "Răzvan", "Ana-Maria", "Mihăiță",
    "Irina", "Bogdan", "Alexandru", "Raluca", "Sorin", "Oana", "Tudor", "Ilinca", "Dănuț",
    "Gheorghița", "Maria", "Vlad", "Ștefania", "Cosmin", "Ileana",
)  # fmt: skip
_LAST_NAMES = (
    "Popescu", "Ionescu", "Țurcanu", "Dumitrașcu", "Bălan", "Stănescu", "Vâlcu", "Pîrvu",
    "Mureșan", "Constantinescu", "Șerban", "Lungu", "Ene", "Drăgulescu", "Răducanu", "Neagu",
    "Ciobanu", "Rusu", "Munteanu", "Sârbu", "Toma", "Grigoraș",
)  # fmt: skip
_MAIL_HOSTS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com")

_LONG_NAMES = (
    "Servicii de implementare, configurare și instruire pentru platforma de facturare "
    "electronică e-Factura, inclusiv integrare SPV și suport 30 de zile",
    "Dezvoltare modul personalizat de raportare „Situația încasărilor & plăților” cu export "
    "XML/CSV către ERP-ul clientului (faza 1 din 3)",
)
# name, unit amount in RON / EUR / USD (minor units), the largest quantity on a line
_CATALOG: tuple[tuple[str, int, int, int, int], ...] = (
    ("Abonament lunar InvoiceSync — plan Start", 9900, 1990, 2190, 1),
    ("Abonament lunar InvoiceSync — plan Profesional", 29900, 5990, 6490, 1),
    ("Abonament anual InvoiceSync — plan Business (12 luni)", 299000, 59900, 64900, 1),
    ("Licență software „Contabil Pro” (1 utilizator)", 45000, 9000, 9900, 5),
    ("Consultanță implementare (oră)", 25000, 5000, 5500, 12),
    ("Instruire online <e-Factura> pentru echipă", 120000, 24000, 26000, 2),
    ("Găzduire & mentenanță site (lunar)", 15000, 3000, 3300, 3),
    ('Pachet "Start" facturare electronică', 49900, 9990, 10990, 1),
    ("Integrare SPV – configurare certificat digital", 35000, 7000, 7700, 1),
    ("Suport tehnic prioritar (lunar)", 19900, 3990, 4390, 1),
    ("Migrare date din alt program de facturare", 80000, 16000, 17500, 1),
    ("Taxă setup cont & import nomenclator", 14990, 2990, 3290, 1),
    ("Pagini suplimentare de documentație (bucată)", 1250, 250, 275, 40),
    (_LONG_NAMES[0], 450000, 90000, 99000, 1),
    (_LONG_NAMES[1], 1275050, 255010, 280500, 1),
)
# Businesses abroad per country: name, street, city, postal code, state (the first is always
# among the initial customers).
_FOREIGN: dict[str, tuple[tuple[str, str, str, str, str | None], ...]] = {
    "DE": (("Müller & Söhne GmbH", "Invalidenstraße 42", "Berlin", "10115", None),
           ("Schäfer Logistik GmbH & Co. KG", "Hafenstraße 3", "Hamburg", "20457", None)),
    "FR": (("Société d'Études Lumière SARL", "12 rue de la Ré", "Lyon", "69002", None),
           ("Boulangerie « Chez Hélène » SAS", "4 place Bellecour", "Lyon", "69002", None)),
    "IT": (("Rossi & Figli S.r.l.", "Via Dante 7", "Milano", "20121", "MI"),
           ("Caffè Dell'Opera S.p.A.", "Via Roma 18", "Torino", "10121", "TO")),
    "NL": (('Van der Berg "Digitaal" B.V.', "Damrak 70", "Amsterdam", "1012 AB", None),
           ("De Vries & Zonen B.V.", "Coolsingel 40", "Rotterdam", "3011 AD", None)),
    "US": (("Acme Widgets, Inc.", "500 Howard St", "San Francisco", "94107", "CA"),
           ("Brooklyn <Bytes> LLC", "77 Sands St", "Brooklyn", "11201", "NY")),
    "GB": (("Thames & Partners Ltd", "1 King's Road", "London", "SW3 4TR", None),
           ("O'Connor Analytics Ltd", "12 Deansgate", "Manchester", "M3 2BW", None)),
    "CH": (("Alpenblick AG", "Bahnhofstrasse 10", "Zürich", "8001", "ZH"),
           ("Genève Horlogerie SA", "Rue du Rhône 5", "Genève", "1204", "GE")),
}  # fmt: skip
# Tax id type, value pattern (each 9 becomes a random digit; empty: none), invoice currency.
_FOREIGN_TAX: dict[str, tuple[str, str, str]] = {
    "DE": ("eu_vat", "DE999999999", "eur"),
    "FR": ("eu_vat", "FR99999999999", "eur"),
    "IT": ("eu_vat", "IT99999999999", "eur"),
    "NL": ("eu_vat", "NL999999999B01", "eur"),
    "US": ("us_ein", "", "usd"),
    "GB": ("gb_vat", "GB999999999", "usd"),
    "CH": ("ch_vat", "CHE-999.999.999 MWST", "eur"),
}
_LOCALES = {"DE": "de-DE", "FR": "fr-FR", "IT": "it-IT", "NL": "nl-NL"}
_CHARGE_DESCRIPTIONS = (
    "Taxă de activare cont",
    "Comandă online #{n}",
    "Donație pentru Asociația „Prietenii Cărții”",
    "Avans proiect & consultanță",
    "Bilet eveniment <Tech Cluj>",
    'Voucher cadou "Primăvara"',
    "Reînnoire domeniu .ro (1 an)",
)
_CREDIT_MEMOS = (
    "Retur parțial – serviciu nefurnizat",
    "Corecție preț conform ofertei nr. {n}",
    "Anulare licență & rambursare",
)

# Fixed proportions, drawn without replacement from a shuffled deck so that every outcome
# occurs in every run of deck-size draws.
_INVOICE_OUTCOMES = ("paid_now",) * 9 + ("paid_later",) * 6 + ("open",) * 2 + (
    "void", "uncollectible", "draft",
)  # fmt: skip
_INVOICE_DISCOUNTS = ("none",) * 8 + ("percent", "amount")
_PAID_INVOICE_FOLLOW_UPS = ("none",) * 8 + (
    "refund_partial", "refund_full", "credit_note_refund", "credit_note_out_of_band",
)  # fmt: skip
_CHARGE_REFUNDS = ("none", "none", "partial", "two_partials", "full")
_RO_TAX = ("stripe_tax",) * 7 + ("no_tax",)
_TAXABILITY = {"reverse_charge": "reverse_charge", "exempt": "customer_exempt"}


class _Deck:
    def __init__(self, rng: random.Random, cards: Sequence[str]) -> None:
        self._rng, self._cards, self._hand = rng, list(cards), list[str]()

    def draw(self) -> str:
        if not self._hand:
            self._hand = list(self._cards)
            self._rng.shuffle(self._hand)
        return self._hand.pop()


def _ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = "".join(c if c.isalnum() else " " for c in plain.lower()).split()
    return "-".join(w for w in words if w not in ("s", "r", "l", "a", "srl", "d", "co"))


def _cnp(rng: random.Random) -> str:
    """A valid CNP (EFACTURA.md §5): sex/century, birth date, county, serial, check digit."""
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
    sex = rng.choice((1, 2)) + (4 if born.year >= 2000 else 0)
    county = rng.choice((*range(1, 41), *range(41, 47), 51, 52))
    body = f"{sex}{born:%y%m%d}{county:02d}{rng.randrange(1, 1000):03d}"
    check = sum(int(d) * int(k) for d, k in zip(body, "279146358279", strict=True)) % 11
    return body + str(1 if check == 10 else check)


def _cui(rng: random.Random, *, valid: bool = True) -> str:
    body = str(rng.randrange(100_000, 50_000_000))
    check = cui_check_digit(body)
    if not valid:
        check = (check + rng.randrange(1, 10)) % 10
    return f"{body}{check}"


# --- plans ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Customer:
    obj: Obj
    region: str  # "ro", "eu" or "world"
    currency: str
    payment_method: str
    card: Obj


@dataclass(slots=True)
class _ChargePlan:
    """A charge and its payment intent; refunds are final (those within the range)."""

    id: str
    payment_intent: str
    created: int
    amount: int
    currency: str
    customer: str | None
    description: str
    billing: Obj
    card: Obj
    payment_method: str
    balance_transaction: str
    receipt_email: str | None
    refunds: list[Obj] = field(default_factory=list)

    def at(self, moment: int) -> Obj:
        refunded = sum(r["amount"] for r in self.refunds if r["created"] <= moment)
        return so.charge(
            id=self.id,
            created=self.created,
            amount=self.amount,
            currency=self.currency,
            customer=self.customer,
            payment_intent=self.payment_intent,
            description=self.description,
            billing=self.billing,
            payment_method=self.payment_method,
            card=self.card,
            amount_refunded=refunded,
            balance_transaction=self.balance_transaction,
            receipt_email=self.receipt_email,
            statement_descriptor=STATEMENT_DESCRIPTOR,
        )

    def intent(self, created: int) -> Obj:
        return so.payment_intent(
            id=self.payment_intent,
            created=created,
            amount=self.amount,
            currency=self.currency,
            customer=self.customer,
            description=self.description,
            latest_charge=self.id,
            payment_method=self.payment_method,
            receipt_email=self.receipt_email,
        )


@dataclass(slots=True)
class _InvoicePlan:
    """An invoice and the moments of its changes (None: not within the range)."""

    id: str
    created: int
    customer: Obj
    currency: str
    lines: list[Obj]
    discounts: list[str]
    automatic_tax: bool
    collection_method: str
    due_date: int | None
    number: str | None = None
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    uncollectible_at: int | None = None
    payment_id: str | None = None  # the invoice_payment
    payment_created: int | None = None
    charge: _ChargePlan | None = None
    credit_notes: list[Obj] = field(default_factory=list)

    def at(self, moment: int) -> Obj:
        def by_then(t: int | None) -> int | None:
            return t if t is not None and t <= moment else None

        finalized_at, paid_at = by_then(self.finalized_at), by_then(self.paid_at)
        voided_at, uncollectible_at = by_then(self.voided_at), by_then(self.uncollectible_at)
        if paid_at:
            status = "paid"
        elif voided_at:
            status = "void"
        elif uncollectible_at:
            status = "uncollectible"
        else:
            status = "open" if finalized_at else "draft"
        payments = []
        if self.charge and self.payment_id and by_then(self.payment_created):
            payments.append(
                so.invoice_payment(
                    id=self.payment_id,
                    invoice=self.id,
                    created=self.payment_created,  # type: ignore[arg-type]
                    amount=self.charge.amount,
                    currency=self.currency,
                    payment_intent=self.charge.payment_intent,
                    paid_at=paid_at,
                )
            )
        return so.invoice(
            id=self.id,
            created=self.created,
            customer=self.customer,
            currency=self.currency,
            lines=self.lines,
            status=status,
            number=self.number if finalized_at else None,
            collection_method=self.collection_method,
            due_date=self.due_date,
            finalized_at=finalized_at,
            paid_at=paid_at,
            voided_at=voided_at,
            marked_uncollectible_at=uncollectible_at,
            discounts=self.discounts,
            automatic_tax=self.automatic_tax,
            payments=payments,
            post_payment_credit_notes_amount=sum(
                cn["total"] for cn in self.credit_notes if cn["created"] <= moment
            ),
            account_name=ACCOUNT_NAME,
        )


def _lines_total(lines: Iterable[Obj]) -> int:
    return sum(
        line["amount"]
        - sum(d["amount"] for d in line["discount_amounts"])
        + sum(t["amount"] for t in line["taxes"])
        for line in lines
    )


# --- the seeder -------------------------------------------------------------------------------


class _Seeder:
    def __init__(self, rng: random.Random, first: date, last: date) -> None:
        self.rng = rng
        self.ids = so.StripeIds(rng)
        self.first, self.last = first, last
        self.start, self.end = day_start(first), day_start(last + timedelta(days=1))
        self._queue: list[tuple[int, int, Callable[[], Obj]]] = []
        self._sequence = itertools.count()
        self._invoice_number = 0
        self._last_finalized = self.start
        self.prefix = "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=8))
        reference = self.start - 500 * _DAY
        self.tax_rates = self._tax_rates(reference)
        self.coupons = self._coupons(reference)
        self.catalog = [
            (name, {c: self.ids("price") for c in ("ron", "eur", "usd")}, self.ids("prod"),
             {"ron": ron, "eur": eur, "usd": usd}, most)
            for name, ron, eur, usd, most in _CATALOG
        ]  # fmt: skip
        self.decks = {
            "outcome": _Deck(rng, _INVOICE_OUTCOMES),
            "discount": _Deck(rng, _INVOICE_DISCOUNTS),
            "follow_up": _Deck(rng, _PAID_INVOICE_FOLLOW_UPS),
            "charge_refunds": _Deck(rng, _CHARGE_REFUNDS),
            "ro_tax": _Deck(rng, _RO_TAX),
        }

    # -- driver ---------------------------------------------------------------------------

    def run(self, invoices_per_day: int, charges_per_day: int) -> Iterator[Obj]:
        yield from self.tax_rates.values()
        customers = self._initial_customers()
        yield from (c.obj for c in customers)
        first_buyers = customers[::-1]  # every initial customer gets one of the first invoices
        day = self.first
        while day <= self.last:
            yield from self._day(day, customers, first_buyers, invoices_per_day, charges_per_day)
            day += timedelta(days=1)
        yield from self.coupons.values()

    def _day(
        self,
        day: date,
        customers: list[_Customer],
        first_buyers: list[_Customer],
        invoices: int,
        charges: int,
    ) -> Iterator[Obj]:
        opens, closes = day_start(day), day_start(day + timedelta(days=1))
        arrivals = sorted(
            (self._moment(opens, closes), order, kind)
            for order, kind in enumerate(
                ["customer"] * (1 + invoices // 100) + ["invoice"] * invoices + ["charge"] * charges
            )
        )
        new_customers = []
        # Planned in time order, flushing what is due first, so that only the objects of the
        # next minutes (and of changes days later) wait in memory.
        for moment, _order, kind in arrivals:
            yield from self._due(before=moment)
            if kind == "customer":
                new_customers.append(self._random_customer(moment))
                self._push(moment, lambda obj=new_customers[-1].obj: obj)
            elif kind == "invoice":
                buyer = first_buyers.pop() if first_buyers else self.rng.choice(customers)
                with self._own_draws():
                    self._plan_invoice(buyer, moment, day)
            else:
                with self._own_draws():
                    self._plan_one_off_charge(customers, moment)
        yield from self._due(before=closes)
        customers.extend(new_customers)  # they buy from the next day on

    @contextmanager
    def _own_draws(self) -> Iterator[None]:
        """Give one invoice or charge its own random stream, seeded from the main one.

        How much a plan draws depends on how much of its future lies within the range; with its
        own stream that never shifts the draws of later plans (and the decks are drawn from
        whatever happens), so a later end date leaves the earlier days' objects as they were,
        only further along: seeding to D and then to D+3 shows the same invoice open, then paid.
        """
        main = self.rng, self.ids
        self.rng = random.Random(main[0].getrandbits(64))
        self.ids = so.StripeIds(self.rng)
        try:
            yield
        finally:
            self.rng, self.ids = main

    def _due(self, *, before: int) -> Iterator[Obj]:
        """The scheduled objects created before `before`, in creation order."""
        queue = self._queue
        while queue and queue[0][0] < before:
            yield heapq.heappop(queue)[2]()

    def _push(self, moment: int | None, build: Callable[[], Obj]) -> None:
        """Schedule an object created at `moment`; dropped when after the range (not yet)."""
        if moment is not None and moment < self.end:
            heapq.heappush(self._queue, (moment, next(self._sequence), build))

    def _within(self, moment: int) -> int | None:
        return moment if moment < self.end else None

    def _moment(self, opens: int, closes: int) -> int:
        return self.rng.randrange(opens, closes)

    def _event(
        self,
        moment: int | None,
        kind: str,
        snapshot: Callable[[], Obj],
        previous: Obj | None = None,
        *,
        by_api: bool = True,
    ) -> None:
        """Schedule an event; `by_api` marks changes made through an API request."""
        event_id = self.ids("evt")
        request_id = self.ids("req")[:18] if by_api else None
        key = str(uuid.UUID(int=self.rng.getrandbits(128), version=4)) if by_api else None
        self._push(
            moment,
            lambda: so.event(
                id=event_id,
                type=kind,
                created=moment,  # type: ignore[arg-type]
                data_object=snapshot(),
                previous_attributes=previous,
                request_id=request_id,
                idempotency_key=key,
            ),
        )

    # -- reference objects ---------------------------------------------------------------

    def _tax_rates(self, created: int) -> dict[str, Obj]:
        def rate(percentage: float, country: str | None, jurisdiction: str, text: str) -> Obj:
            return so.tax_rate(
                id=self.ids("txr"),
                created=created,
                percentage=percentage,
                country=country,
                jurisdiction=jurisdiction,
                description=text,
            )

        return {
            "ro_19": rate(19, "RO", "RO", "TVA 19% (standard, până la 31.07.2025)"),
            "ro_21": rate(21, "RO", "RO", "TVA 21% (standard, din 01.08.2025)"),
            "reverse_charge": rate(0, None, "EU", "Taxare inversă (reverse charge)"),
            "exempt": rate(0, None, "World", "Scutit – client din afara UE"),
        }

    def _coupons(self, created: int) -> dict[str, Obj]:
        def make(name: str, **terms: Any) -> Obj:
            code = "".join(self.rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=8))
            return so.coupon(id=code, created=created, name=name, **terms)

        return {
            "percent_10": make("Reducere fidelitate 10%", percent_off=10),
            "percent_25": make("Black Friday 25%", percent_off=25),
            "ron": make("Bonus bun venit 50 RON", amount_off=5000, currency="ron"),
            "eur": make("Welcome 10 EUR", amount_off=1000, currency="eur"),
            "usd": make("Welcome 10 USD", amount_off=1000, currency="usd"),
        }

    # -- customers -----------------------------------------------------------------------

    def _ro_address(self, *, bucharest: bool | None = None) -> Obj:
        rng = self.rng
        street = rng.choice(_STREETS).format(
            n=rng.randrange(1, 220), b=rng.randrange(1, 12), a=rng.randrange(1, 90)
        )
        line2 = rng.choice(_LINE2) if rng.random() < 0.15 else None
        as_code = rng.random() < 0.25
        if bucharest if bucharest is not None else rng.random() < 0.4:
            sector = rng.randrange(1, 7)
            return so.address(
                line1=street,
                line2=line2,
                city=f"Sector {sector}",
                state="B" if as_code else COUNTY_NAMES["RO-B"],
                postal_code=f"0{sector}{rng.randrange(10_000):04d}",
                country="RO",
            )
        code = rng.choice(sorted(_RO_TOWNS))
        town, postal = _RO_TOWNS[code]
        return so.address(
            line1=street,
            line2=line2,
            city=town,
            state=code if as_code else COUNTY_NAMES[f"RO-{code}"],
            postal_code=f"{postal}{rng.randrange(10 ** (6 - len(postal))):0{6 - len(postal)}d}",
            country="RO",
        )

    def _customer(
        self,
        created: int,
        name: str,
        email: str,
        address: Obj,
        *,
        region: str,
        currency: str,
        tax_ids: Sequence[tuple[str, str, str]] = (),  # (type, value, verification)
        metadata: dict[str, str] | None = None,
        tax_exempt: str = "none",
        locale: str = "ro-RO",
    ) -> _Customer:
        rng, customer_id = self.rng, self.ids("cus")
        ids = [
            so.tax_id(
                id=self.ids("txi"),
                created=created,
                customer=customer_id,
                type=kind,
                value=value,
                country=address["country"],
                verification=verification,
                verified_name=name.upper(),
                verified_address=f"{address['line1']}, {address['city']}",
            )
            for kind, value, verification in tax_ids
        ]
        obj = so.customer(
            id=customer_id,
            created=created,
            name=name,
            email=email,
            address=address,
            tax_ids=ids,
            metadata=metadata,
            tax_exempt=tax_exempt,
            currency=currency,
            phone=self._ro_phone() if region == "ro" else None,
            invoice_prefix="".join(rng.choices("ABCDEF0123456789", k=8)),
            preferred_locales=[locale],
        )
        brand = rng.choice(("visa", "visa", "mastercard", "amex"))
        card = so.card_details(
            brand=brand,
            last4=f"{rng.randrange(10_000):04d}",
            exp_month=rng.randrange(1, 13),
            exp_year=2027 + rng.randrange(6),
            country=address["country"] or "RO",
            funding=rng.choice(("credit", "debit")),
            fingerprint="".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop", k=16)),
        )
        return _Customer(obj, region, currency, self.ids("pm"), card)

    def _ro_phone(self) -> str:
        rng = self.rng
        return f"+40 7{rng.randrange(20, 90)} {rng.randrange(1000):03d} {rng.randrange(1000):03d}"

    def _ro_company(
        self, created: int, name: str, *, cui_in: str, valid: bool = True, bucharest: bool = False
    ) -> _Customer:
        """`cui_in` is where the CUI is kept: "tax_id", "cui", "cif" or "none"."""
        rng = self.rng
        cui = _cui(rng, valid=valid)
        metadata = {"reg_com": f"J{rng.randrange(1, 53):02d}/{rng.randrange(1, 9999)}/"
                               f"{rng.randrange(1995, 2025)}"}  # fmt: skip
        tax_ids: list[tuple[str, str, str]] = []
        if cui_in == "tax_id":
            tax_ids.append(("eu_vat", f"RO{cui}", "verified" if valid else "unverified"))
        elif cui_in == "cui":
            metadata["cui"] = cui
        elif cui_in == "cif":
            metadata["cif"] = f"RO{cui}" if rng.random() < 0.5 else cui
        slug = _ascii_slug(name)
        return self._customer(
            created,
            name,
            f"{rng.choice(('contact', 'office', 'facturare', 'contabilitate'))}@{slug}.ro",
            self._ro_address(bucharest=bucharest or None),
            region="ro",
            currency="eur" if rng.random() < 0.2 else "ron",
            tax_ids=tax_ids,
            metadata=metadata,
        )

    def _ro_person(self, created: int, name: str | None = None, *, cnp: bool = False) -> _Customer:
        rng = self.rng
        name = name or f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
        email = (
            f"{_ascii_slug(name).replace('-', '.')}{rng.randrange(100)}@{rng.choice(_MAIL_HOSTS)}"
        )
        return self._customer(
            created,
            name,
            email,
            self._ro_address(),
            region="ro",
            currency="ron",
            metadata={"cnp": _cnp(rng)} if cnp else None,
        )

    def _foreign(self, created: int, country: str, *, first: bool = False) -> _Customer:
        """A business abroad: the country's first name for `first`, else a random one."""
        rng = self.rng
        choices = _FOREIGN[country]
        name, street, city, postal, state = choices[0] if first else rng.choice(choices)
        tax_type, pattern, currency = _FOREIGN_TAX[country]
        value = "".join(rng.choice("0123456789") if ch == "9" else ch for ch in pattern)
        eu = tax_type == "eu_vat"
        return self._customer(
            created,
            name,
            f"billing@{_ascii_slug(name)}.{country.lower()}",
            so.address(line1=street, city=city, postal_code=postal, state=state, country=country),
            region="eu" if eu else "world",
            currency=currency,
            tax_ids=[(tax_type, value, "verified" if eu else "unavailable")] if pattern else [],
            tax_exempt="reverse" if eu else "exempt",
            locale=_LOCALES.get(country, "en-US"),
        )

    def _initial_customers(self) -> list[_Customer]:
        """The showcase customers (every case once), then random ones, by creation time."""
        rng = self.rng
        before = lambda: self.start - rng.randrange(_DAY, 400 * _DAY)  # noqa: E731
        showcase = [
            self._ro_company(before(), "Popescu & Fiii S.R.L.", cui_in="tax_id", bucharest=True),
            self._ro_company(before(), 'Atelierul "Mâini Dibace" S.R.L.', cui_in="cui"),
            self._ro_company(before(), "D'Artagnan Consult S.R.L.", cui_in="cif"),
            self._ro_company(before(), "Cafeneaua <Ceașca Bună> S.R.L.", cui_in="tax_id"),
            self._ro_company(before(), "Țesătoria Ardeleană S.A.", cui_in="tax_id"),
            self._ro_company(before(), "Ionescu & Asociații S.R.L.", cui_in="tax_id", valid=False),
            self._ro_company(before(), "Grădina cu Meri S.R.L.", cui_in="cui", valid=False),
            self._ro_company(before(), "Fermele Bărăganului S.R.L.", cui_in="none"),
            self._ro_person(before(), "Ștefan Țurcanu", cnp=True),
            self._ro_person(before(), "Ioana-Cătălina Dumitrașcu", cnp=True),
            self._ro_person(before(), "Mihăiță Bălan"),
            *(self._foreign(before(), country, first=True) for country in _FOREIGN),
        ]
        extra = [self._random_customer(before()) for _ in range(30)]
        return sorted([*showcase, *extra], key=lambda c: c.obj["created"])

    def _random_customer(self, created: int) -> _Customer:
        rng = self.rng
        roll = rng.random()
        if roll < 0.55:
            name = f"{rng.choice(_COMPANY_STEMS)} {rng.choice(_COMPANY_FORMS)}"
            return self._ro_company(created, name, cui_in=rng.choice(("tax_id", "cui", "cif")))
        if roll < 0.9:
            return self._ro_person(created, cnp=rng.random() < 0.3)
        return self._foreign(created, rng.choice(sorted(_FOREIGN)))

    # -- invoices ------------------------------------------------------------------------

    def _plan_invoice(self, buyer: _Customer, created: int, day: date) -> None:
        rng, ids = self.rng, self.ids
        invoice_id, currency = ids("in"), buyer.currency
        coupon_by_discount = self._discounts(currency)
        vat = self._vat(buyer, day)
        lines = self._lines(invoice_id, created, currency, coupon_by_discount, vat)
        outcome = self.decks["outcome"].draw()
        paid = outcome in ("paid_now", "paid_later")
        follow_up = self.decks["follow_up"].draw() if paid else "none"
        send = outcome in ("paid_later", "open", "uncollectible") or (
            outcome == "void" and rng.random() < 0.5
        )
        plan = _InvoicePlan(
            id=invoice_id,
            created=created,
            customer=buyer.obj,
            currency=currency,
            lines=lines,
            discounts=list(coupon_by_discount),
            automatic_tax=vat != "no_tax",
            collection_method="send_invoice" if send else "charge_automatically",
            due_date=created + 14 * _DAY if send else None,
        )
        for discount_id, coupon in coupon_by_discount.items():
            applied = so.discount(
                id=discount_id,
                coupon=coupon["id"],
                start=created,
                customer=buyer.obj["id"],
                invoice=invoice_id,
            )
            self._push(created, lambda applied=applied: applied)
            coupon["times_redeemed"] += 1
        self._push(created, lambda: plan.at(self.end))
        if outcome == "draft":
            return
        # Finalization keeps the account's number sequence in time order.
        finalized = self._within(max(self._last_finalized, created + rng.randrange(5, 300)))
        if finalized is None:
            return
        self._last_finalized = finalized
        self._invoice_number += 1
        plan.number = f"{self.prefix}-{self._invoice_number:04d}"
        plan.finalized_at = finalized
        self._event(finalized, "invoice.finalized", lambda: plan.at(finalized))
        was_open = {"auto_advance": True, "status": "open"}
        if outcome == "void":
            voided = self._within(finalized + rng.randrange(600, 3 * _DAY))
            plan.voided_at = voided
            self._event(
                voided, "invoice.voided", lambda: plan.at(voided),  # type: ignore[arg-type]
                {**was_open, "status_transitions": {"voided_at": None}},
            )  # fmt: skip
        elif outcome == "uncollectible":
            marked = self._within(finalized + rng.randrange(2 * _DAY, 8 * _DAY))
            plan.uncollectible_at = marked
            self._event(
                marked, "invoice.marked_uncollectible",
                lambda: plan.at(marked),  # type: ignore[arg-type]
                {**was_open, "status_transitions": {"marked_uncollectible_at": None}},
            )  # fmt: skip
        elif paid:
            if outcome == "paid_now":
                intent_created = finalized + rng.randrange(1, 5)
                paid_at = intent_created + rng.randrange(2, 600)
            else:
                delay = rng.randrange(1, 6) * _DAY + rng.randrange(-4 * _HOUR, 4 * _HOUR)
                paid_at = finalized + delay
                intent_created = paid_at - rng.randrange(20, 900)
            if self._within(paid_at) is not None:
                self._plan_invoice_payment(plan, buyer, intent_created, paid_at, follow_up)

    def _plan_invoice_payment(
        self,
        plan: _InvoicePlan,
        buyer: _Customer,
        intent_created: int,
        paid: int,
        follow_up: str,
    ) -> None:
        total = _lines_total(plan.lines)
        customer = buyer.obj
        charge = _ChargePlan(
            id=self.ids("ch"),
            payment_intent=self.ids("pi"),
            created=paid,
            amount=total,
            currency=plan.currency,
            customer=customer["id"],
            description="Payment for Invoice",
            billing=so.billing_details(
                name=customer["name"], email=customer["email"], address=customer["address"]
            ),
            card=buyer.card,
            payment_method=buyer.payment_method,
            balance_transaction=self.ids("txn"),
            receipt_email=customer["email"],
        )
        plan.charge, plan.paid_at = charge, paid
        plan.payment_id, plan.payment_created = self.ids("inpay"), intent_created
        self._push(intent_created, lambda: charge.intent(intent_created))
        self._push(paid, lambda: charge.at(self.end))
        self._event(paid, "charge.succeeded", lambda: charge.at(paid), by_api=False)
        self._event(
            paid, "invoice.paid", lambda: plan.at(paid),
            {"amount_paid": 0, "amount_remaining": total, "attempt_count": 0, "attempted": False,
             "auto_advance": True, "status": "open", "status_transitions": {"paid_at": None}},
            by_api=False,  # paid by Stripe's automatic collection or on the hosted page
        )  # fmt: skip
        after = paid + self.rng.randrange(_DAY, 12 * _DAY)
        if follow_up == "refund_partial":
            self._refund(charge, after, total * self.rng.randrange(10, 60) // 100)
        elif follow_up == "refund_full":
            self._refund(charge, after, total, reason="requested_by_customer")
        elif follow_up.startswith("credit_note"):
            self._credit_note(plan, after, refund=follow_up == "credit_note_refund")

    def _discounts(self, currency: str) -> dict[str, Obj]:
        """The invoice's discounts (new discount id → its coupon)."""
        kind = self.decks["discount"].draw()
        if kind == "none":
            return {}
        if kind == "percent":
            coupon = self.coupons[self.rng.choice(("percent_10", "percent_25"))]
        else:
            coupon = self.coupons[currency]
        return {self.ids("di"): coupon}

    def _vat(self, buyer: _Customer, day: date) -> str:
        if buyer.region == "eu":
            return "reverse_charge"
        if buyer.region == "world":
            return "exempt"
        if self.decks["ro_tax"].draw() == "no_tax":
            return "no_tax"
        return "ro_21" if day >= RO_VAT_21_FROM else "ro_19"

    def _lines(
        self,
        invoice_id: str,
        created: int,
        currency: str,
        coupon_by_discount: dict[str, Obj],
        vat: str,
    ) -> list[Obj]:
        rng = self.rng
        count = rng.choice((1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6))
        picked = [rng.choice(self.catalog) for _ in range(count)]
        amounts, quantities = [], []
        for _name, _prices, _product, unit_amounts, most in picked:
            quantities.append(rng.randrange(1, most + 1))
            amounts.append(unit_amounts[currency] * quantities[-1])
        discount_shares = self._discount_shares(amounts, coupon_by_discount)
        rate = self.tax_rates.get(vat)
        lines = []
        for (name, prices, product, unit_amounts, _most), quantity, amount, shares in zip(
            picked, quantities, amounts, discount_shares, strict=True
        ):
            taxable = amount - sum(d["amount"] for d in shares)
            taxes = []
            if rate is not None:
                basis_points = round(rate["percentage"] * 100)
                taxes.append(
                    so.line_tax(
                        amount=(taxable * basis_points + 5_000) // 10_000,
                        taxable_amount=taxable,
                        tax_rate=rate["id"],
                        taxability_reason=_TAXABILITY.get(vat, "standard_rated"),
                    )
                )
            lines.append(
                so.line_item(
                    id=self.ids("il"),
                    invoice=invoice_id,
                    currency=currency,
                    description=name,
                    unit_amount=unit_amounts[currency],
                    quantity=quantity,
                    price=prices[currency],
                    product=product,
                    period_start=created,
                    period_end=created,
                    discount_amounts=shares,
                    taxes=taxes,
                )
            )
        return lines

    @staticmethod
    def _discount_shares(amounts: list[int], coupons: dict[str, Obj]) -> list[list[Obj]]:
        """Each invoice-level discount spread over the lines (the last line takes the rest)."""
        shares: list[list[Obj]] = [[] for _ in amounts]
        subtotal = sum(amounts)
        for discount_id, coupon in coupons.items():
            if coupon["percent_off"] is not None:
                off = [round(a * coupon["percent_off"] / 100) for a in amounts]
            else:
                total_off = min(coupon["amount_off"], subtotal // 2)
                off = [total_off * a // subtotal for a in amounts]
                off[-1] += total_off - sum(off)
            for line_shares, amount in zip(shares, off, strict=True):
                line_shares.append(so.discount_amount(amount=amount, discount=discount_id))
        return shares

    def _credit_note(self, plan: _InvoicePlan, moment: int, *, refund: bool) -> None:
        if self._within(moment) is None or plan.charge is None:
            return
        rng = self.rng
        line = rng.choice(plan.lines)
        quantity = rng.randrange(1, line["quantity"] + 1)
        cn_line = so.credit_note_line_from(line, id=self.ids("cnli"), quantity=quantity)
        refund_obj = None
        if refund:
            refund_obj = self._refund(
                plan.charge, moment, _lines_total([cn_line]), reason="requested_by_customer"
            )
        note = so.credit_note(
            id=self.ids("cn"),
            created=moment,
            invoice=plan.at(moment),
            lines=[cn_line],
            sequence=len(plan.credit_notes) + 1,
            reason=rng.choice(("product_unsatisfactory", "order_change", "duplicate")),
            memo=rng.choice(_CREDIT_MEMOS).format(n=rng.randrange(100, 999)),
            refund=refund_obj["id"] if refund_obj else None,
        )
        plan.credit_notes.append(note)
        # The refund (pushed first) comes before the note in the output, as on Stripe.
        self._push(moment, lambda: note)
        self._event(moment, "credit_note.created", lambda: note)

    def _refund(
        self, charge: _ChargePlan, moment: int, amount: int, *, reason: str | None = None
    ) -> Obj | None:
        """Refund `amount` of `charge` at `moment` (never beyond what is left to refund)."""
        if self._within(moment) is None:
            return None
        already = sum(r["amount"] for r in charge.refunds)
        amount = min(amount, charge.amount - already)
        if amount <= 0:
            return None
        refund = so.refund(
            id=self.ids("re"),
            created=moment,
            amount=amount,
            charge=charge.id,
            currency=charge.currency,
            payment_intent=charge.payment_intent,
            customer=charge.customer,
            reason=reason,
            balance_transaction=self.ids("txn"),
            payment_method=charge.payment_method,
        )
        charge.refunds.append(refund)
        self._push(moment, lambda: refund)
        self._event(
            moment, "charge.refunded", lambda: charge.at(moment),
            {"amount_refunded": already, "refunded": False},
        )  # fmt: skip
        return refund

    # -- one-off charges -----------------------------------------------------------------

    def _plan_one_off_charge(self, customers: list[_Customer], created: int) -> None:
        rng = self.rng
        known = rng.choice(customers) if rng.random() < 0.6 else None
        if known is not None:
            c = known.obj
            billing = so.billing_details(name=c["name"], email=c["email"], address=c["address"])
            currency, card, method = known.currency, known.card, known.payment_method
        else:
            name = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
            email = f"{_ascii_slug(name).replace('-', '.')}@{rng.choice(_MAIL_HOSTS)}"
            billing = so.billing_details(name=name, email=email, address=self._ro_address())
            currency = rng.choice(("ron", "ron", "ron", "eur", "eur", "usd"))
            card = so.card_details(last4=f"{rng.randrange(10_000):04d}")
            method = self.ids("pm")
        amount = rng.randrange(5, 1_500) * 100 + rng.choice((0, 0, 50, 90, 99))
        charge = _ChargePlan(
            id=self.ids("ch"),
            payment_intent=self.ids("pi"),
            created=created + rng.randrange(1, 20),
            amount=amount,
            currency=currency,
            customer=known.obj["id"] if known else None,
            description=rng.choice(_CHARGE_DESCRIPTIONS).format(n=rng.randrange(10_000, 99_999)),
            billing=billing,
            card=card,
            payment_method=method,
            balance_transaction=self.ids("txn"),
            receipt_email=billing["email"],
        )
        self._push(created, lambda: charge.intent(created))
        self._push(charge.created, lambda: charge.at(self.end))
        self._event(
            charge.created, "charge.succeeded", lambda: charge.at(charge.created), by_api=False
        )
        plan = self.decks["charge_refunds"].draw()
        first = charge.created + rng.randrange(_DAY, 10 * _DAY)
        if plan == "full":
            self._refund(charge, first, amount, reason=rng.choice(("requested_by_customer", None)))
        elif plan in ("partial", "two_partials"):
            self._refund(charge, first, amount * rng.randrange(10, 45) // 100)
            if plan == "two_partials":
                second = first + rng.randrange(_HOUR, 5 * _DAY)
                self._refund(charge, second, amount * rng.randrange(10, 45) // 100,
                             reason="requested_by_customer")  # fmt: skip
