from __future__ import annotations

from pathlib import Path

import pytest

from invoicesync_dagster.settings import SettingsError, load_settings

COMPANY = {
    "COMPANY_NAME": "Exemplu S.R.L.",
    "COMPANY_CUI": "RO4221306",
    "COMPANY_ADDRESS_STREET": "Strada 1",
    "COMPANY_ADDRESS_CITY": "Cluj-Napoca",
    "COMPANY_ADDRESS_COUNTY": "RO-CJ",
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [*COMPANY, "STRIPE_API_KEY", "ANAF_ENABLED", "SMARTBILL_ENABLED", "COMPANY_IBAN"]:
        monkeypatch.delenv(name, raising=False)


def test_reads_environment_and_normalises(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in COMPANY.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_abc")
    settings = load_settings(need=["stripe", "company"])
    assert settings.company_cui == "4221306"
    assert settings.stripe_api_key is not None
    assert "sk_test_abc" not in repr(settings)


def test_reads_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STRIPE_API_KEY=sk_test_fromfile\nDEFAULT_TAX_RATE=\n")
    settings = load_settings(need=["stripe"])
    assert settings.stripe_api_key is not None
    assert settings.stripe_api_key.get_secret_value() == "sk_test_fromfile"
    assert settings.default_tax_rate is None


def test_every_problem_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPANY_CUI", "RO12345678")
    monkeypatch.setenv("COMPANY_ADDRESS_COUNTY", "CJ")
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_secretvalue1")
    monkeypatch.setenv("COMPANY_IBAN", "RO00XXXX0000000000000000")
    with pytest.raises(SettingsError) as caught:
        load_settings(need=["stripe", "company"])
    problems = caught.value.problems
    assert "check digit" in problems["COMPANY_CUI"]
    assert "RO-CJ" in problems["COMPANY_ADDRESS_COUNTY"]
    assert "IBAN" in problems["COMPANY_IBAN"]
    assert problems["COMPANY_NAME"].startswith("is required")
    assert "STRIPE_API_KEY" not in problems
    assert "sk_live_secretvalue1" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("DEFAULT_CURRENCY", "EURO"), ("DEFAULT_INVOICE_SERIES", "INV/2026"), ("INVOICE_ON", "sent")],
)
def test_a_malformed_setting_with_a_default_is_named_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert list(caught.value.problems) == [name]


def test_enabled_provider_requires_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTBILL_ENABLED", "true")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert set(caught.value.problems) == {
        "SMARTBILL_USERNAME",
        "SMARTBILL_TOKEN",
        "SMARTBILL_SERIES",
    }


def test_malformed_key_is_rejected_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "pk_live_publishable")
    with pytest.raises(SettingsError) as caught:
        load_settings(need=["stripe"])
    assert "pk_live_publishable" not in str(caught.value)
    assert "STRIPE_API_KEY" in caught.value.problems
