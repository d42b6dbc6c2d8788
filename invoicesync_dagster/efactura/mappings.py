"""The customer mappings CSV: which tax id an e-mail address stands for (`email,cui`).

The accountant keeps this file by hand (often in Excel), so it is read leniently and every
problem is reported with the file, the line and what to do, while the good lines still load:

- the header names the columns (`email` and `cui`, or `cif`; any order, other columns ignored);
  a missing or wrong header is reported and the first two columns are read as email, cui;
- `,` or `;` separates the columns (Excel writes `;` in Romanian locales), chosen by the header;
- a UTF-8 byte-order mark is accepted; a line that is not UTF-8 is reported and skipped;
- blank lines and lines starting with `#` are skipped;
- the `cui` column takes a CUI (with or without RO) or a private buyer's CNP; a CUI must pass its
  check digit, a CNP its own checks (EFACTURA.md §5);
- an e-mail given twice with the same tax id is fine; with two different ones neither is used.

Pure: the caller reads the bytes (`parse_mappings(path.read_bytes(), str(path))`).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict

from invoicesync_dagster.efactura.identifiers import (
    InvalidCnp,
    InvalidCui,
    is_b2c_placeholder,
    normalize_person_id,
    validate_cnp,
    validate_cui,
)

TaxIdKind = Literal["cui", "cnp"]
_EMAIL_COLUMN = "email"
_TAX_ID_COLUMNS = ("cui", "cif")
_HEADER_EXAMPLE = "email,cui"


class MappingProblem(BaseModel):
    """One bad line of the mappings file; `str()` is the message shown to the user."""

    model_config = ConfigDict(frozen=True)

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}, line {self.line}: {self.message}"


class CustomerMapping(BaseModel):
    """One usable line: an e-mail (lower case) and its tax id (a CUI as digits, or a CNP)."""

    model_config = ConfigDict(frozen=True)

    email: str
    tax_id: str
    kind: TaxIdKind
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file} line {self.line}"


class Mappings(BaseModel):
    """The usable mappings by e-mail, and the problems of the lines that could not be used."""

    file: str
    entries: dict[str, CustomerMapping] = {}
    problems: list[MappingProblem] = []

    def for_email(self, email: str | None) -> CustomerMapping | None:
        return self.entries.get(email.strip().lower()) if email else None

    @classmethod
    def empty(cls, file: str = "") -> Mappings:
        return cls(file=file)


def parse_mappings(data: bytes, file: str) -> Mappings:
    """Parse the bytes of a mappings file; `file` names it in every problem."""
    problems: list[MappingProblem] = []
    entries: dict[str, CustomerMapping] = {}
    conflicted: dict[str, list[int]] = {}

    def problem(line: int, message: str) -> None:
        problems.append(MappingProblem(file=file, line=line, message=message))

    lines = _text_lines(data.removeprefix(b"\xef\xbb\xbf"), problem)
    header = next(lines, None)
    if header is None:
        return Mappings(file=file)
    number, text = header
    delimiter = ";" if ";" in text and "," not in text else ","
    columns = [name.strip().lower() for name in _fields(text, delimiter)]
    tax_column = next((name for name in _TAX_ID_COLUMNS if name in columns), None)
    if _EMAIL_COLUMN in columns and tax_column is not None:
        email_at, tax_at = columns.index(_EMAIL_COLUMN), columns.index(tax_column)
        rows: Iterator[tuple[int, str]] = lines
    else:
        problem(
            number,
            f"the first line must name the columns, `{_HEADER_EXAMPLE}`, but it is {text!r}: "
            f"add the line `{_HEADER_EXAMPLE}` at the top (the other lines were read as "
            "email, cui)",
        )
        email_at, tax_at = 0, 1
        # A file without a header starts with data: read its first line as a row too.
        rows = itertools.chain([(number, text)] if "@" in text else [], lines)

    for number, text in rows:
        fields = _fields(text, delimiter)
        email = fields[email_at].strip().lower() if len(fields) > email_at else ""
        raw = fields[tax_at].strip() if len(fields) > tax_at else ""
        if not email:
            problem(number, f"no e-mail address in {text!r}: write it as `email{delimiter}cui`")
            continue
        if "@" not in email or " " in email:
            problem(
                number,
                f"{email!r} is not an e-mail address: the e-mail comes first, then the CUI "
                f"(`client@firma.ro{delimiter}RO12345674`)",
            )
            continue
        if not raw:
            problem(
                number,
                f"{email} has an empty CUI: fill in the company's CUI (e.g. RO12345674) or "
                "delete the line",
            )
            continue
        try:
            tax_id, kind = _tax_id(raw)
        except (InvalidCui, InvalidCnp) as error:
            problem(number, f"{email}: {error}; correct it on this line or delete the line")
            continue
        if email in conflicted:
            conflicted[email].append(number)
            continue
        known = entries.get(email)
        if known is None:
            entries[email] = CustomerMapping(
                email=email, tax_id=tax_id, kind=kind, file=file, line=number
            )
        elif known.tax_id != tax_id:
            del entries[email]
            conflicted[email] = [known.line, number]
    for email, numbers in conflicted.items():
        listed = ", ".join(str(n) for n in numbers)
        problem(
            numbers[-1],
            f"{email} is given different tax ids on lines {listed}, so none is used: keep "
            "the right line and delete the others",
        )
    problems.sort(key=lambda p: p.line)
    return Mappings(file=file, entries=entries, problems=problems)


def _tax_id(raw: str) -> tuple[str, TaxIdKind]:
    """A CUI as digits (no RO, no leading zeros), or a 13-digit CNP / the B2C placeholder."""
    person = normalize_person_id(raw)
    if len(person) == 13 and person.isdigit():
        return (person, "cnp") if is_b2c_placeholder(person) else (validate_cnp(person), "cnp")
    return str(int(validate_cui(raw))), "cui"


def _text_lines(data: bytes, problem: Callable[[int, str], None]) -> Iterator[tuple[int, str]]:
    """Numbered, decoded, non-blank, non-comment lines; undecodable ones are reported."""
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            problem(
                number,
                f"this line is not UTF-8 text (byte 0x{raw[error.start]:02X} at column "
                f"{error.start + 1}): save the file as UTF-8 (Excel: Save As → "
                "'CSV UTF-8 (Comma delimited)'); the line was skipped",
            )
            continue
        if text.strip() and not text.lstrip().startswith("#"):
            yield number, text


def _fields(text: str, delimiter: str) -> list[str]:
    return next(csv.reader([text], delimiter=delimiter), [])
