"""What the Dagster UI shows for a day with a missing and an invalid CUI, asked the way the UI asks
it: GraphQL against the code location (loaded from definitions.py in a gRPC subprocess)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

import invoicesync_dagster.definitions
from invoicesync_dagster.defs.customers.assets import customer_tax_profiles
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster_tests.defs.buyers import DAY, STRIPE_ASSETS, Buyers, cui

QUERY = """
query ($day: String!) {
  assetNodeOrError(assetKey: {path: ["customer_tax_profiles"]}) {
    ... on AssetNode {
      assetChecksOrError { ... on AssetChecks { checks {
        name blocking
        partitionStatuses { ... on AssetCheckTimePartitionStatuses {
          ranges { startKey endKey status } } }
      } } }
    }
  }
  missing: assetCheckExecutions(assetKey: {path: ["customer_tax_profiles"]},
                                checkName: "missing_cui", partition: $day, limit: 1) {
    ...execution }
  invalid: assetCheckExecutions(assetKey: {path: ["customer_tax_profiles"]},
                                checkName: "invalid_cui", partition: $day, limit: 1) {
    ...execution }
}
fragment execution on AssetCheckExecution {
  status partition
  evaluation { success severity
    metadataEntries { label ... on MarkdownMetadataEntry { mdStr } } }
}
"""


@pytest.mark.slow
def test_a_day_with_a_missing_and_an_invalid_cui_shows_both_checks_and_the_customers(
    materialize: Callable[..., dg.ExecuteInProcessResult],
    sandbox: SandboxServer,
) -> None:
    buyers = Buyers(sandbox)
    buyers.buyer("Fără Cod S.R.L.", "office@faracod.ro")
    buyers.buyer("Cod Greșit S.R.L.", "office@codgresit.ro", cui="12345678")
    buyers.buyer("Corectă S.R.L.", "office@corecta.ro", cui=cui(8_000_001))

    with dg.instance_for_test() as instance:
        assert materialize(STRIPE_ASSETS, instance=instance).success
        assert materialize([customer_tax_profiles], instance=instance).success
        definitions = str(Path(invoicesync_dagster.definitions.__file__))
        with define_out_of_process_context(definitions, "defs", instance) as context:
            result = execute_dagster_graphql(context, QUERY, {"day": DAY.isoformat()})

    assert result.errors is None
    checks = result.data["assetNodeOrError"]["assetChecksOrError"]["checks"]
    statuses = {c["name"]: c["partitionStatuses"]["ranges"] for c in checks}
    day = DAY.isoformat()
    assert statuses == {
        "missing_cui": [{"startKey": day, "endKey": day, "status": "FAILED"}],
        "invalid_cui": [{"startKey": day, "endKey": day, "status": "FAILED"}],
        "inactive_buyer": [{"startKey": day, "endKey": day, "status": "SUCCEEDED"}],
    }
    assert not any(c["blocking"] for c in checks)  # blocking is per customer, in the table

    def customers_table(execution: list[dict[str, Any]]) -> str:
        (latest,) = execution
        assert latest["partition"] == day and latest["status"] == "FAILED"
        entries = {e["label"]: e.get("mdStr") for e in latest["evaluation"]["metadataEntries"]}
        return entries["customers"]

    missing = customers_table(result.data["missing"])
    invalid = customers_table(result.data["invalid"])
    assert result.data["missing"][0]["evaluation"]["severity"] == "WARN"
    assert result.data["invalid"][0]["evaluation"]["severity"] == "ERROR"
    assert "Fără Cod S.R.L." in missing and "office@faracod.ro" in missing
    assert "Cod Greșit S.R.L." in invalid and "fails the check digit" in invalid
    assert "Corectă" not in missing + invalid
