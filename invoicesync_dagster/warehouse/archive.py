"""The archive of what providers sent back: signed zips, error zips, PDFs, under
`INVOICESYNC_HOME/archive/YYYY/MM/` (ARCHITECTURE.md §4.4: ANAF keeps messages only 60 days, so
this folder is the legal copy). Files are written once, atomically, and never replaced by
different bytes."""

from __future__ import annotations

import hashlib
import os
import re
from datetime import date
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")


class ArchiveConflict(RuntimeError):
    """A file of that name already holds other bytes; nothing was overwritten."""


def answer_stem(invoice_number: str, upload_index: str) -> str:
    """The file name, without extension, of ANAF's answers to one upload: `INV-2026-000123_5001`."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", invoice_number).strip(".-") or "document"
    return f"{safe}_{upload_index}"


def archive_path(root: Path, issued: date, name: str) -> Path:
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"archive file name {name!r} must be letters, digits, '.', '_' or '-'")
    return root / "archive" / f"{issued.year:04d}" / f"{issued.month:02d}" / name


def store(root: Path, issued: date, name: str, data: bytes) -> Path:
    """Write `data` as `name` in the month folder of `issued`; storing the same bytes again is a
    no-op, other bytes under the same name raise ArchiveConflict."""
    path = archive_path(root, issued, name)
    if path.exists():
        if hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest():
            return path
        raise ArchiveConflict(
            f"{path} already holds a different answer; it is kept. Compare the two by hand "
            "before deleting anything (the archive is the legal copy)."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as sink:
        sink.write(data)
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(partial, path)
    return path
