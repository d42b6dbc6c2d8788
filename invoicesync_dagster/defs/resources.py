"""Resources: they own every connection to the outside world (Stripe, the DuckDB file).

No secret is a resource field: fields show in the UI and in run config, so keys are read from
the settings (environment or .env) when a run starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from invoicesync_dagster.clients.stripe import StripeReader
from invoicesync_dagster.settings import load_settings
from invoicesync_dagster.warehouse.database import connect


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file. Connections are short and never held across HTTP calls."""

    database: str | None = None  # default: $INVOICESYNC_HOME/invoicesync.duckdb

    @property
    def path(self) -> Path:
        return Path(self.database) if self.database else load_settings().duckdb_path

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with connect(self.path, read_only=read_only) as connection:
            yield connection


class StripeResource(dg.ConfigurableResource):
    """Reads Stripe through the official SDK; the key comes from STRIPE_API_KEY."""

    api_base: str | None = None  # default: STRIPE_API_BASE
    concurrency: int | None = None  # default: STRIPE_FETCH_CONCURRENCY
    # How far back a day older than Stripe's 30-day event retention looks for objects that
    # changed state that day (e.g. an invoice paid weeks after it was created).
    lookback_days: int = 60

    def reader(self) -> StripeReader:
        settings = load_settings(need=["stripe"])
        assert settings.stripe_api_key is not None  # checked by load_settings
        return StripeReader(
            settings.stripe_api_key.get_secret_value(),
            self.api_base or settings.stripe_api_base,
            concurrency=self.concurrency or settings.stripe_fetch_concurrency,
        )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"stripe": StripeResource(), "warehouse": WarehouseResource()})
