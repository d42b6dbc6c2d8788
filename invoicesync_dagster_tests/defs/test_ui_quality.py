"""What the Dagster UI shows a Romanian company's developer or accountant (issue 6, item 5):
every asset described, grouped, kinded and owned; every check saying how to fix what it flags;
a documented and filed day showing row counts, amounts, previews and where its files are."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from invoicesync_dagster.definitions import defs
from invoicesync_dagster.defs.efactura.deadlines import submission_deadline
from invoicesync_dagster.defs.efactura.ledger_checks import (
    no_duplicate_submissions,
    numbering_gapless,
)
from invoicesync_dagster.defs.efactura.status import efactura_status_job, run_config_for
from invoicesync_dagster.defs.efactura.submissions import efactura_submissions
from invoicesync_dagster.defs.metadata import table_metadata
from invoicesync_dagster.defs.resources import AnafResource, WarehouseResource
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster_tests.defs.buyers import DAY
from invoicesync_dagster_tests.defs.test_efactura_documents import DAY_ASSETS, STRIPE, Day
from invoicesync_dagster_tests.defs.test_efactura_submissions import anaf_ready  # noqa: F401

Materialize = Callable[..., dg.ExecuteInProcessResult]

# A check says how to fix what it flags when its description tells the reader what to do.
REMEDY = re.compile(
    r"\b(fix|correct|add|void|restore|re-materialize|re-run|rebuild|cancel|tell|ask|"
    r"look it up|file them|nothing to do)\b",
    re.IGNORECASE,
)
# The assets kept in a warehouse table of the same name, whose columns the UI lists.
TABLE_ASSETS = {
    "stripe_invoices", "stripe_invoice_lines", "stripe_charges", "stripe_refunds",
    "stripe_credit_notes", "stripe_customers", "customer_tax_profiles", "fx_rates",
    "billable_events", "efactura_documents", "efactura_submissions",
}  # fmt: skip


@pytest.fixture(scope="module")
def asset_graph() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Preview warnings of partitioned checks
        return defs().resolve_asset_graph()


def test_every_asset_is_described_grouped_kinded_and_owned(asset_graph: Any) -> None:
    keys = sorted(asset_graph.get_all_asset_keys())
    assert len(keys) >= 13
    problems = []
    for key in keys:
        node = asset_graph.get(key)
        name = key.to_user_string()
        if len((node.description or "").split()) < 10:
            problems.append(f"{name}: no description saying what it is and what it is for")
        if not node.group_name or node.group_name == "default":
            problems.append(f"{name}: no group")
        if not node.kinds:
            problems.append(f"{name}: no kinds")
        if not node.owners:
            problems.append(f"{name}: no owners")
    assert problems == []


def test_warehouse_assets_list_their_columns_as_duckdb_declares_them(asset_graph: Any) -> None:
    for key in asset_graph.get_all_asset_keys():
        schema = (asset_graph.get(key).metadata or {}).get("dagster/column_schema")
        name = key.to_user_string()
        assert schema is not None or name not in TABLE_ASSETS, f"{name} lists no columns"
        if schema is None:
            continue
        declared = table_metadata(name)["dagster/column_schema"]
        shown = getattr(schema, "schema", schema)  # a TableSchema or its metadata value
        assert [c.name for c in shown.columns] == [c.name for c in declared.columns]
    declared = table_metadata("efactura_documents")["dagster/column_schema"]
    columns = {c.name: c for c in declared.columns}
    assert columns["total"].type == "decimal(18,2)"
    assert columns["document_id"].constraints.nullable is False
    assert "BT-112" in (columns["total"].description or "")
    trigger = table_metadata("billable_events")["dagster/column_schema"].columns[4]
    assert trigger.description and trigger.description.endswith("refund or credit_note")


def test_every_check_says_how_to_fix_what_it_flags(asset_graph: Any) -> None:
    keys = sorted(asset_graph.asset_check_keys, key=str)
    assert {k.name for k in keys} >= {
        "missing_cui", "invalid_cui", "inactive_buyer", "documents_pass_local_rules",
        "documents_tie_to_stripe", "submission_deadline", "numbering_gapless",
        "no_duplicate_submissions",
    }  # fmt: skip
    vague = [
        key.name
        for key in keys
        if not REMEDY.search(asset_graph.get_check_spec(key).description or "")
    ]
    assert vague == []


def says_what_to_do(metadata: Mapping[str, Any]) -> bool:
    """A failing result names the remedy: a `what_to_do` entry or a what-to-do/fix column."""
    text = {name: str(getattr(value, "value", value)) for name, value in metadata.items()}
    if "what_to_do" in text:
        return bool(REMEDY.search(text["what_to_do"]))
    return bool(re.search(r"\| what to (do|fix) \|", " ".join(text.values())))


def materialization(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    (event,) = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(asset)
    ]
    return {name: value.value for name, value in event.metadata.items()}


def test_a_filed_day_shows_counts_amounts_previews_and_its_archive(
    materialize: Materialize,
    sandbox: SandboxServer,
    anaf_ready: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    day = Day(sandbox)
    alfa = day.company("Alfa Soft S.R.L.", "office@alfa.ro", 1_234_561)
    for hour in (9, 10, 11):
        day.invoice_for(alfa, hour)  # 123.45 lei + 25.92 VAT each
    database = tmp_path / "w.duckdb"  # the materialize fixture's warehouse
    warehouse = WarehouseResource(database=str(database))
    synced = materialize(STRIPE)
    built = materialize(DAY_ASSETS)
    assert synced.success and built.success
    for result in (synced, built):
        for event in result.get_asset_materialization_events():
            metadata = event.materialization.metadata
            assert "dagster/row_count" in metadata, event.asset_key
            assert metadata["duckdb_file"].value == str(database), event.asset_key

    documents = materialization(built, "efactura_documents")
    assert documents["dagster/row_count"] == 3
    assert documents["totals_by_currency"] == {"RON": "448.11"}
    assert documents["total_ron"] == pytest.approx(448.11)
    shown = rows(database, "SELECT invoice_number, buyer_name FROM efactura_documents")
    preview = documents["preview"]
    assert "| number | buyer |" in preview and "| ready |" in preview
    assert all(f"| {number} | {buyer} | RON | 149.37 |" in preview for number, buyer in shown)
    billable = materialization(built, "billable_events")
    assert billable["total_ron"] == pytest.approx(448.11) and "| document |" in billable["preview"]
    assert materialization(synced, "stripe_invoices")["total_ron"] == pytest.approx(448.11)

    filed = materialize([efactura_submissions, submission_deadline])
    assert filed.success
    submissions = materialization(filed, "efactura_submissions")
    assert submissions["dagster/row_count"] == 3 and submissions["uploaded"] == 3
    assert submissions["totals_by_currency"] == documents["totals_by_currency"]
    assert submissions["total_ron"] == pytest.approx(448.11)
    assert submissions["filing_states"] == {"sent now": 3}
    assert all(f"| {n} | {buyer} |" in submissions["preview"] for n, buyer in shown)
    folder = Path(submissions["archive_folder"])
    assert folder == anaf_ready / "archive" / f"{DAY.year:04d}" / f"{DAY.month:02d}"
    assert folder.is_dir()
    assert Path(submissions["duckdb_file"]) == database and database.exists()

    # ANAF answers; the status job archives the signed zips and links them.
    sandbox.clock.set(sandbox.clock.now() + 600)
    followed = efactura_status_job.execute_in_process(
        run_config=run_config_for(submissions["anaf_uploads"], render_pdf=False),
        resources={
            "warehouse": warehouse,
            "anaf": AnafResource(api_base=sandbox.url, public_base=sandbox.url,
                                 oauth_base=sandbox.url, staging=True),
        },
    )  # fmt: skip
    assert followed.success
    [event] = followed.get_asset_observation_events()
    observed = event.asset_observation_data.asset_observation.metadata
    archived = [Path(p) for p in observed["archived_files"].value]  # type: ignore[union-attr]
    assert len(archived) == 3 and all(p.is_file() and p.suffix == ".zip" for p in archived)
    assert Path(str(observed["archive_folder"].value)) == folder
    assert observed["preview"].value.count("| accepted | ok |") == 3  # type: ignore[union-attr]

    # Books broken by hand: the failing checks say what to do.
    with duckdb.connect(str(database)) as connection:
        connection.execute("DELETE FROM invoice_number_allocations WHERE number = 2")
        connection.execute(
            "INSERT INTO efactura_submissions SELECT document_id, provider, attempt + 1, "
            "invoice_number, xml_sha256, state, upload_index, download_id, errors, created_at, "
            "sent_at, final_at, archive_path FROM efactura_submissions ORDER BY document_id LIMIT 1"
        )
    broken = [numbering_gapless(warehouse=warehouse), no_duplicate_submissions(warehouse=warehouse)]
    assert [result.passed for result in broken] == [False, False]
    assert all(says_what_to_do(result.metadata) for result in broken)
    evaluations = built.get_asset_check_evaluations() + filed.get_asset_check_evaluations()
    unexplained = [
        e.check_name for e in evaluations if not (e.passed or says_what_to_do(e.metadata))
    ]
    assert unexplained == []


def rows(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute(sql).fetchall()
