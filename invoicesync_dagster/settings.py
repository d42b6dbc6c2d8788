"""The configuration contract (ARCHITECTURE.md §3), read from the environment and `.env`.

Every setting is validated when present; which settings must be present depends on what is being
run (listing Stripe invoices needs no company identity), so presence is checked per group by
`load_settings(need=...)`. Errors name the environment variable and say how to fix it. Secrets are
`SecretStr`: they print as `**********`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from invoicesync_dagster.efactura.counties import COUNTY_NAMES
from invoicesync_dagster.efactura.from_stripe import DocumentPolicy, NonEuTreatment
from invoicesync_dagster.efactura.identifiers import InvalidCui, validate_cui
from invoicesync_dagster.efactura.model import Address, Party

STRIPE_API_BASE = "https://api.stripe.com"
ANAF_API_BASE = "https://api.anaf.ro"
ANAF_PUBLIC_API_BASE = "https://webservicesp.anaf.ro"
ANAF_OAUTH_BASE = "https://logincert.anaf.ro"
# The callback registered with the ANAF app; nothing needs to listen there: `invoicesync anaf
# login` takes the code pasted from the browser's address bar.
ANAF_REDIRECT_URI = "https://localhost:8443/anaf/callback"
SMARTBILL_API_BASE = "https://ws.smartbill.ro"
BNR_RATES_URL = "https://curs.bnr.ro/nbrfxrates.xml"

# Settings that must be present for each kind of work.
REQUIRED: dict[str, tuple[str, ...]] = {
    "stripe": ("stripe_api_key",),
    "company": (
        "company_name",
        "company_cui",
        "company_address_street",
        "company_address_city",
        "company_address_county",
    ),
    "anaf": ("anaf_client_id", "anaf_client_secret"),
    "smartbill": ("smartbill_username", "smartbill_token", "smartbill_series"),
}


class SettingsError(Exception):
    """One or more settings are missing or malformed; `problems` maps env var → what to do."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        lines = [f"  {name}: {message}" for name, message in problems.items()]
        super().__init__(
            "invoicesync is not configured correctly (set these in the environment or in .env; "
            "see .env.example):\n" + "\n".join(lines)
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
    )

    stripe_api_key: SecretStr | None = None
    stripe_api_base: str = STRIPE_API_BASE
    stripe_fetch_concurrency: int = Field(default=8, ge=1, le=64)

    company_name: str | None = None
    company_cui: str | None = None
    company_registration: str | None = None
    company_address_street: str | None = None
    company_address_city: str | None = None
    company_address_county: str | None = None
    company_address_postal: str | None = None
    company_iban: str | None = None

    default_invoice_series: str = "INV"
    default_currency: str = "RON"
    default_tax_rate: Decimal | None = Field(default=None, gt=0, lt=100)
    invoice_on: Literal["paid", "finalized"] = "paid"
    # Sales to buyers outside the EU: not subject to Romanian VAT (O, services supplied abroad)
    # or export (G, goods leaving the EU).
    non_eu_vat_treatment: Literal["not_subject", "export"] = "not_subject"

    anaf_enabled: bool = False
    anaf_client_id: str | None = None
    anaf_client_secret: SecretStr | None = None
    anaf_use_staging: bool = True
    anaf_api_base: str = ANAF_API_BASE
    anaf_public_api_base: str = ANAF_PUBLIC_API_BASE
    anaf_oauth_base: str = ANAF_OAUTH_BASE
    anaf_redirect_uri: str = ANAF_REDIRECT_URI
    # A cached registry answer is reused for this many days before ANAF is asked again.
    anaf_registry_max_age_days: int = Field(default=7, ge=0, le=365)
    # The accountant's `email,cui` file; default $INVOICESYNC_HOME/customers.csv.
    customer_mappings_csv: Path | None = None

    smartbill_enabled: bool = False
    smartbill_username: str | None = None
    smartbill_token: SecretStr | None = None
    smartbill_api_base: str = SMARTBILL_API_BASE
    smartbill_series: str | None = None

    bnr_rates_url: str = BNR_RATES_URL
    invoicesync_home: Path = Path(".invoicesync")
    dagster_home: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("stripe_api_key")
    @classmethod
    def _stripe_key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(
            r"^(sk|rk)_(test|live)_\w+$", value.get_secret_value()
        ):
            raise ValueError(
                "must be a Stripe secret or restricted key (sk_live_…, rk_live_…, sk_test_…); "
                "copy it from Stripe Dashboard → Developers → API keys"
            )
        return value

    @field_validator("anaf_redirect_uri", mode="before")
    @classmethod
    def _redirect_uri(cls, value: object) -> object:
        if value is None:  # load_settings rebuilds with None in place of a malformed value
            return ANAF_REDIRECT_URI
        if not isinstance(value, str) or not value.startswith("https://"):
            raise ValueError(
                f"{value!r} must be an https:// address (ANAF's portal refuses http:// "
                "callbacks), exactly the callback registered for your ANAF app"
            )
        return value

    @field_validator("company_cui")
    @classmethod
    def _company_cui(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_cui(value)
        except InvalidCui as error:
            raise ValueError(str(error)) from None

    @field_validator("company_address_county")
    @classmethod
    def _county(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if code in COUNTY_NAMES:
            return code
        hint = f" (did you mean RO-{code}?)" if f"RO-{code}" in COUNTY_NAMES else ""
        raise ValueError(
            f"{value!r} is not an ISO 3166-2:RO county code{hint}; use RO-B for Bucharest, "
            "RO-CJ for Cluj, … (the 42 codes are listed in .env.example)"
        )

    @field_validator("company_iban")
    @classmethod
    def _iban(cls, value: str | None) -> str | None:
        if not value:
            return None
        iban = value.replace(" ", "").upper()
        rearranged = iban[4:] + iban[:4]
        digits = "".join(str(int(ch, 36)) for ch in rearranged if ch.isalnum())
        if not re.match(r"^[A-Z]{2}\d{2}[A-Z0-9]{10,30}$", iban) or int(digits) % 97 != 1:
            raise ValueError(f"{value!r} is not a valid IBAN (checksum or format)")
        return iban

    @field_validator("default_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z]{3}$", value):
            raise ValueError(f"{value!r} is not a 3-letter ISO 4217 currency code (e.g. RON)")
        return value.upper()

    @field_validator("default_invoice_series", "smartbill_series")
    @classmethod
    def _series(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9]{1,20}$", value):
            raise ValueError(f"{value!r} must be 1-20 letters or digits, e.g. INV")
        return value

    @cached_property
    def duckdb_path(self) -> Path:
        return self.invoicesync_home / "invoicesync.duckdb"

    @property
    def anaf_token_store_path(self) -> Path:
        """ANAF's OAuth tokens (mode 0600; they rotate on every refresh)."""
        return self.invoicesync_home / "anaf_tokens.json"

    @property
    def mappings_csv_path(self) -> Path:
        """The customer mappings CSV (absent file: no mappings)."""
        return self.customer_mappings_csv or self.invoicesync_home / "customers.csv"

    def document_policy(self) -> DocumentPolicy:
        """The seller and numbering the documents are built with (needs the company group)."""
        problems = self.missing(["company"])
        if problems:
            raise SettingsError(problems)
        cui = self.company_cui or ""
        seller = Party(
            name=self.company_name or "",
            vat_id=f"RO{cui}",
            trade_register_number=self.company_registration,
            address=Address(
                street=self.company_address_street or "",
                city=self.company_address_city or "",
                postal_code=self.company_address_postal,
                county=self.company_address_county,
                country="RO",
            ),
        )
        return DocumentPolicy(
            seller=seller,
            series=self.default_invoice_series,
            non_eu=NonEuTreatment(self.non_eu_vat_treatment),
            iban=self.company_iban,
            standard_rate=self.default_tax_rate,
        )

    def missing(self, groups: Iterable[str]) -> dict[str, str]:
        """Required-but-unset settings of the given groups, by environment variable name."""
        problems: dict[str, str] = {}
        for group in groups:
            for field in REQUIRED[group]:
                if getattr(self, field) in (None, ""):
                    problems[field.upper()] = f"is required for {group}; it is not set"
        return problems


def load_settings(need: Iterable[str] = (), **overrides: object) -> Settings:
    """Settings from the environment and `.env`, or SettingsError listing every problem."""
    groups = list(need)
    problems: dict[str, str] = {}
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        bad = {
            str(item["loc"][0]): item["msg"].removeprefix("Value error, ")
            for item in error.errors()
        }
        problems = {name.upper(): message for name, message in bad.items()}
        # Rebuild without the malformed values so that missing ones are reported in the same pass.
        defaults = {name: Settings.model_fields[name].default for name in bad}
        settings = Settings(**{**overrides, **defaults})  # type: ignore[arg-type]
    if settings.anaf_enabled:
        groups.append("anaf")
    if settings.smartbill_enabled:
        groups.append("smartbill")
    for name, message in settings.missing(dict.fromkeys(groups)).items():
        problems.setdefault(name, message)
    if problems:
        raise SettingsError(problems)
    return settings
