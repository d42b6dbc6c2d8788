"""What the assets show in the Dagster UI, shared by every module under defs/: markdown
tables, the warehouse table's column schema, links to the DuckDB file and the archive, totals."""

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb

from invoicesync_dagster.warehouse import archive
from invoicesync_dagster.warehouse.schema import MIGRATIONS

TABLE_ROWS = 50  # a markdown table shows this many rows; the rest are counted


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, limit: int = TABLE_ROWS
) -> str:
    """A markdown table of at most `limit` rows, every cell escaped."""
    if not rows:
        return "_none_"
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_cell(value) for value in row) + " |" for row in rows[:limit]),
    ]
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit} more")
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Markdown-safe table cell: names carry `|`, `<`, `*` and `_` ("Cafeneaua <Ceașca>")."""
    escaped = " ".join(text.split())
    for char in ("\\", "|", "*", "_", "`", "[", "]"):
        escaped = escaped.replace(char, "\\" + char)
    return escaped.replace("<", "&lt;").replace(">", "&gt;")


def table_metadata(table: str) -> dict[str, object]:
    """Definition metadata of an asset kept in the warehouse table `table`: its name and its
    columns, with types and comments as warehouse/schema.py declares them."""
    columns = _warehouse_columns().get(table)
    if columns is None:
        raise KeyError(f"warehouse/schema.py declares no table {table!r}")
    return {"dagster/table_name": table, "dagster/column_schema": dg.TableSchema(columns)}


def warehouse_link(path: Path) -> dict[str, dg.MetadataValue]:
    """Where the rows are: the DuckDB file (open it read-only while no run is writing)."""
    return {"duckdb_file": dg.MetadataValue.path(str(path))}


def archive_link(home: Path, issued: date) -> dict[str, dg.MetadataValue]:
    """The archive's month folder of documents issued on `issued`, where ANAF's signed zips,
    error zips and PDFs are kept (created now, so the link opens before the first answer)."""
    folder = archive.archive_path(home, issued, "answer.zip").parent
    folder.mkdir(parents=True, exist_ok=True)
    return {"archive_folder": dg.MetadataValue.path(str(folder))}


def totals_metadata(totals: Mapping[str, Decimal]) -> dict[str, dg.MetadataValue]:
    """One float per currency (`total_ron`, `total_eur`), which the UI plots across runs; the
    exact amounts stay in the JSON metadata next to it."""
    return {f"total_{c.lower()}": dg.MetadataValue.float(float(t)) for c, t in totals.items()}


_TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+) \((.*?)\n\s*\);", re.S)
_COLUMN_COMMENT = re.compile(r"^\s*(\w+)\s+[A-Z].*?--\s*(.+)$")
_MORE_COMMENT = re.compile(r"^\s*--\s*(.+)$")


@functools.cache
def _warehouse_columns() -> dict[str, list[dg.TableColumn]]:
    """Every table's columns, as DuckDB itself reads the migrations (in memory: ~20 ms, no file)."""
    with duckdb.connect(":memory:") as connection:
        for sql in MIGRATIONS:
            connection.execute(sql)
        rows = connection.execute(
            "SELECT table_name, column_name, data_type, is_nullable = 'YES' "
            "FROM information_schema.columns WHERE table_schema = 'main' "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
    comments = _column_comments()
    tables: dict[str, list[dg.TableColumn]] = {}
    for table, column, data_type, nullable in rows:
        tables.setdefault(table, []).append(
            dg.TableColumn(
                column,
                data_type.lower(),
                description=comments.get((table, column)),
                constraints=dg.TableColumnConstraints(nullable=nullable),
            )
        )
    return tables


def _column_comments() -> dict[tuple[str, str], str]:
    """The `-- comment` after each column in the migrations, continued on `--` lines below."""
    comments: dict[tuple[str, str], str] = {}
    for table, body in _TABLE.findall("\n".join(MIGRATIONS)):
        last: tuple[str, str] | None = None
        for line in body.splitlines():
            if (more := _MORE_COMMENT.match(line)) and last:
                comments[last] += " " + more.group(1).strip()
            elif column := _COLUMN_COMMENT.match(line):
                last = (table, column.group(1))
                comments[last] = column.group(2).strip()
            else:
                last = None
    return comments
