"""SQL of `efactura_submissions`, the outbox: one row per filing attempt (efactura/submission.py).

Each function is one short transaction, so an attempt's row is on disk before its document is
sent (`begin`) and its answer right after (`mark_*`): a crash between the two leaves a `sending`
row that the next run reconciles instead of sending again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import duckdb

from invoicesync_dagster.efactura.submission import Attempt, AttemptState


class AttemptConflict(RuntimeError):
    """The attempt to record is not the next one: another run is filing the same document."""


def attempts(
    connection: duckdb.DuckDBPyConnection, document_ids: Iterable[str], provider: str
) -> dict[str, list[Attempt]]:
    """Every attempt of these documents with `provider`, by document, oldest first."""
    rows = connection.execute(
        "SELECT document_id, attempt, state, xml_sha256 FROM efactura_submissions "
        "WHERE provider = ? AND document_id IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY document_id, attempt",
        [provider, sorted(set(document_ids))],
    ).fetchall()
    found: dict[str, list[Attempt]] = {}
    for document_id, number, state, sha in rows:
        found.setdefault(document_id, []).append(Attempt(number, AttemptState(state), sha))
    return found


def begin(
    connection: duckdb.DuckDBPyConnection,
    document_id: str,
    provider: str,
    attempt: int,
    invoice_number: str,
    xml_sha256: str | None,
    expected_reference: str | None = None,
) -> None:
    """Record attempt `attempt` as `sending`, committed, before anything is sent.
    `expected_reference`: what the provider is expected to call it (SmartBill's next number in
    the series), kept in `upload_index` until the provider answers, for reconciliation."""
    try:
        connection.execute(
            "INSERT INTO efactura_submissions (document_id, provider, attempt, invoice_number, "
            "xml_sha256, state, upload_index, errors, created_at) "
            "VALUES (?, ?, ?, ?, ?, 'sending', ?, '[]', ?)",
            [document_id, provider, attempt, invoice_number, xml_sha256, expected_reference,
             datetime.now(UTC)],
        )  # fmt: skip
    except duckdb.ConstraintException as error:
        raise AttemptConflict(
            f"{document_id}: attempt {attempt} with {provider} is already recorded; another run "
            "is filing it. Let that run finish, then re-run."
        ) from error


def _update(
    connection: duckdb.DuckDBPyConnection,
    document_id: str,
    provider: str,
    attempt: int,
    assignments: str,
    values: Sequence[object],
) -> None:
    changed = connection.execute(
        f"UPDATE efactura_submissions SET {assignments} "
        "WHERE document_id = ? AND provider = ? AND attempt = ? RETURNING attempt",
        [*values, document_id, provider, attempt],
    ).fetchall()
    if not changed:
        raise KeyError(f"{document_id}: no attempt {attempt} with {provider} to update")


def mark_sent(
    connection: duckdb.DuckDBPyConnection,
    document_id: str,
    provider: str,
    attempt: int,
    upload_index: str,
) -> None:
    _update(
        connection,
        document_id,
        provider,
        attempt,
        "state = 'sent', upload_index = ?, sent_at = ?",
        [upload_index, datetime.now(UTC)],
    )


def reference(
    connection: duckdb.DuckDBPyConnection, document_id: str, provider: str, attempt: int
) -> str | None:
    """The attempt's `upload_index` (for a `sending`/`unknown` SmartBill attempt: the number it
    was expected to get)."""
    row = connection.execute(
        "SELECT upload_index FROM efactura_submissions WHERE document_id = ? AND provider = ? "
        "AND attempt = ?",
        [document_id, provider, attempt],
    ).fetchone()
    return row[0] if row else None


def mark_unknown(
    connection: duckdb.DuckDBPyConnection,
    document_id: str,
    provider: str,
    attempt: int,
    reason: str,
) -> None:
    _update(
        connection,
        document_id,
        provider,
        attempt,
        "state = 'unknown', errors = ?",
        [json.dumps([reason], ensure_ascii=False)],
    )


def mark_failed(
    connection: duckdb.DuckDBPyConnection,
    document_id: str,
    provider: str,
    attempt: int,
    errors: Sequence[str],
) -> None:
    _update(
        connection,
        document_id,
        provider,
        attempt,
        "state = 'failed', errors = ?",
        [json.dumps(list(errors), ensure_ascii=False)],
    )


def mark_final(
    connection: duckdb.DuckDBPyConnection,
    document_id: str,
    provider: str,
    attempt: int,
    *,
    accepted: bool,
    download_id: str | None = None,
    errors: Sequence[str] = (),
    archive_path: str | None = None,
) -> None:
    _update(
        connection,
        document_id,
        provider,
        attempt,
        "state = ?, download_id = ?, errors = ?, archive_path = ?, final_at = ?",
        [
            "accepted" if accepted else "rejected",
            download_id,
            json.dumps(list(errors), ensure_ascii=False),
            archive_path,
            datetime.now(UTC),
        ],
    )
