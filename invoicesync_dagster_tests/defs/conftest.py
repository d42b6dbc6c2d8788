"""Fixtures of the asset tests: materializing against the sandbox into a real DuckDB file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from invoicesync_dagster.defs.resources import (
    AnafRegistryResource,
    AnafResource,
    BnrResource,
    CompanyResource,
    CustomerMappingsResource,
    SmartBillResource,
    StripeResource,
    WarehouseResource,
)
from invoicesync_dagster.sandbox.server import SandboxServer
from invoicesync_dagster_tests.defs.buyers import DAY

# The selling company of the asset tests (the demo company of sandbox.dotenv).
SELLER = {
    "COMPANY_NAME": "Exemplu Software S.R.L.",
    "COMPANY_CUI": "RO4221306",
    "COMPANY_REGISTRATION": "J40/1234/2020",
    "COMPANY_ADDRESS_STREET": "Strada Exemplului 10",
    "COMPANY_ADDRESS_CITY": "SECTOR1",
    "COMPANY_ADDRESS_COUNTY": "RO-B",
    "COMPANY_IBAN": "RO49AAAA1B31007593840000",
}


@pytest.fixture
def materialize(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox: SandboxServer
) -> Callable[..., dg.ExecuteInProcessResult]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_customers")
    for name, value in SELLER.items():
        monkeypatch.setenv(name, value)

    def run(
        assets: list[Any],
        day: date = DAY,
        instance: dg.DagsterInstance | None = None,
        company: CompanyResource | None = None,
        anaf: AnafResource | None = None,
        smartbill: SmartBillResource | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            assets,
            partition_key=day.isoformat(),
            resources={
                "stripe": StripeResource(api_base=sandbox.url, concurrency=4),
                "warehouse": WarehouseResource(database=str(tmp_path / "w.duckdb")),
                "anaf_registry": AnafRegistryResource(api_base=sandbox.url, max_age_days=7),
                "customer_mappings": CustomerMappingsResource(path=str(tmp_path / "customers.csv")),
                "bnr": BnrResource(rates_url=f"{sandbox.url}/bnr/nbrfxrates.xml"),
                "company": company or CompanyResource(),
                "smartbill": smartbill or SmartBillResource(api_base=sandbox.url),
                "anaf": anaf
                or AnafResource(
                    api_base=sandbox.url,
                    public_base=sandbox.url,
                    oauth_base=sandbox.url,
                    staging=True,
                ),
            },
            instance=instance,
            raise_on_error=False,
            run_config=run_config,
        )

    return run
