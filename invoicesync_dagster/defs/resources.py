"""Resources: they own every connection to the outside world (Stripe, ANAF's registry, BNR, the
DuckDB file, the customer mappings file).

No secret is a resource field: fields show in the UI and in run config, so keys are read from
the settings (environment or .env) when a run starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from invoicesync_dagster.clients.anaf.efactura import EfacturaClient
from invoicesync_dagster.clients.anaf.oauth import AnafOAuthClient, TokenProvider, TokenStore
from invoicesync_dagster.clients.anaf_registry import AnafRegistryClient
from invoicesync_dagster.clients.bnr import BnrClient
from invoicesync_dagster.clients.smartbill import SmartBillClient
from invoicesync_dagster.clients.stripe import StripeReader
from invoicesync_dagster.efactura.from_stripe import DocumentPolicy, NonEuTreatment
from invoicesync_dagster.efactura.mappings import Mappings, parse_mappings
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


class AnafRegistryResource(dg.ConfigurableResource):
    """ANAF's public VAT registry (PlatitorTvaRest v9): at most 100 CUIs per request and one
    request per second, answers cached in the warehouse for `max_age_days`."""

    api_base: str | None = None  # default: ANAF_PUBLIC_API_BASE
    max_age_days: int | None = None  # default: ANAF_REGISTRY_MAX_AGE_DAYS

    def client(self) -> AnafRegistryClient:
        return AnafRegistryClient(self.api_base or load_settings().anaf_public_api_base)

    @property
    def cache_max_age_days(self) -> int:
        if self.max_age_days is not None:
            return self.max_age_days
        return load_settings().anaf_registry_max_age_days


class BnrResource(dg.ConfigurableResource):
    """BNR's reference exchange rates (public XML files, no key)."""

    rates_url: str | None = None  # default: BNR_RATES_URL; the other files are found next to it
    max_retries: int = 2  # for connection errors, timeouts, 429 and 5xx

    def client(self) -> BnrClient:
        return BnrClient(
            self.rates_url or load_settings().bnr_rates_url, max_retries=self.max_retries
        )


class CustomerMappingsResource(dg.ConfigurableResource):
    """The accountant's `email,cui` CSV; a missing file means no mappings."""

    path: str | None = None  # default: CUSTOMER_MAPPINGS_CSV, else $INVOICESYNC_HOME/customers.csv

    @property
    def file(self) -> Path:
        return Path(self.path) if self.path else load_settings().mappings_csv_path

    def load(self) -> Mappings:
        """The usable mappings and the problems of the lines that are not (file, line, fix)."""
        file = self.file
        if not file.exists():
            return Mappings.empty(str(file))
        return parse_mappings(file.read_bytes(), str(file))


class CompanyResource(dg.ConfigurableResource):
    """The selling company and how it documents its sales (COMPANY_*, DEFAULT_INVOICE_SERIES,
    INVOICE_ON, NON_EU_VAT_TREATMENT); each field set here overrides its setting."""

    series: str | None = None
    invoice_on: str | None = None  # paid | finalized
    non_eu_vat_treatment: str | None = None  # not_subject | export

    def policy(self) -> DocumentPolicy:
        policy = load_settings(need=["company"]).document_policy()
        update: dict[str, object] = {}
        if self.series:
            update["series"] = self.series
        if self.non_eu_vat_treatment:
            update["non_eu"] = NonEuTreatment(self.non_eu_vat_treatment)
        return policy.model_copy(update=update) if update else policy

    @property
    def invoice_trigger(self) -> str:
        """`paid` or `finalized`: when a Stripe invoice becomes a document."""
        return self.invoice_on or load_settings().invoice_on


class AnafResource(dg.ConfigurableResource):
    """ANAF e-Factura: OAuth tokens from the token store (refreshed and rotated unattended), the
    test or production API by ANAF_USE_STAGING. Fields override the settings (the sandbox)."""

    api_base: str | None = None  # default ANAF_API_BASE
    public_base: str | None = None  # default ANAF_PUBLIC_API_BASE (validare, transformare)
    oauth_base: str | None = None  # default ANAF_OAUTH_BASE
    staging: bool | None = None  # default ANAF_USE_STAGING
    timeout_s: float = 60.0

    def client(self) -> EfacturaClient:
        settings = load_settings(need=["anaf", "company"])
        assert settings.anaf_client_secret is not None  # checked by load_settings
        oauth = AnafOAuthClient(
            self.oauth_base or settings.anaf_oauth_base,
            settings.anaf_client_id or "",
            settings.anaf_client_secret.get_secret_value(),
            settings.anaf_redirect_uri,
        )
        tokens = TokenProvider(oauth, TokenStore(settings.anaf_token_store_path))
        return EfacturaClient(
            self.api_base or settings.anaf_api_base,
            self.public_base or settings.anaf_public_api_base,
            tokens.access_token,
            staging=settings.anaf_use_staging if self.staging is None else self.staging,
            timeout=self.timeout_s,
        )

    @property
    def company_cif(self) -> str:
        """The seller's CIF as ANAF's `cif` parameter wants it: digits, no RO."""
        return load_settings(need=["company"]).company_cui or ""


class SmartBillResource(dg.ConfigurableResource):
    """SmartBill Cloud: the account of SMARTBILL_USERNAME / SMARTBILL_TOKEN for COMPANY_CUI."""

    api_base: str | None = None  # default SMARTBILL_API_BASE
    timeout_s: float = 60.0

    def client(self) -> SmartBillClient:
        settings = load_settings(need=["smartbill", "company"])
        assert settings.smartbill_token is not None  # checked by load_settings
        return SmartBillClient(
            self.api_base or settings.smartbill_api_base,
            settings.smartbill_username or "",
            settings.smartbill_token,
            settings.company_cui or "",
            timeout_s=self.timeout_s,
        )

    @property
    def series(self) -> str:
        return load_settings(need=["smartbill"]).smartbill_series or ""


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "stripe": StripeResource(),
            "warehouse": WarehouseResource(),
            "anaf_registry": AnafRegistryResource(),
            "customer_mappings": CustomerMappingsResource(),
            "bnr": BnrResource(),
            "company": CompanyResource(),
            "anaf": AnafResource(),
            "smartbill": SmartBillResource(),
        }
    )
