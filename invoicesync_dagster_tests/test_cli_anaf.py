"""`invoicesync anaf login` and `anaf token` against the sandbox's ANAF OAuth fake."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from click.testing import CliRunner

from invoicesync_dagster.cli import cli
from invoicesync_dagster.clients.anaf.oauth import TokenPair, TokenStore
from invoicesync_dagster.sandbox.anaf_oauth_fake import SANDBOX_CLIENT, AnafOAuthFake
from invoicesync_dagster.sandbox.server import SandboxServer

BUCHAREST = ZoneInfo("Europe/Bucharest")


@pytest.fixture
def fake(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AnafOAuthFake:
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    monkeypatch.setenv("INVOICESYNC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ANAF_OAUTH_BASE", sandbox.url)
    monkeypatch.setenv("ANAF_CLIENT_ID", SANDBOX_CLIENT.client_id)
    monkeypatch.setenv("ANAF_CLIENT_SECRET", SANDBOX_CLIENT.client_secret)
    monkeypatch.setenv("ANAF_REDIRECT_URI", SANDBOX_CLIENT.redirect_uri)
    oauth = AnafOAuthFake(clock=sandbox.clock)
    sandbox.mount(oauth)
    return oauth


def store_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "anaf_tokens.json"


def invoke(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.output


def callback_address(sandbox: SandboxServer, state: str = "s") -> str:
    """What the browser's address bar shows after ANAF's authorize step."""
    response = httpx.get(
        f"{sandbox.url}/anaf-oauth2/v1/authorize",
        params={
            "response_type": "code",
            "client_id": SANDBOX_CLIENT.client_id,
            "redirect_uri": SANDBOX_CLIENT.redirect_uri,
            "token_content_type": "jwt",
            "state": state,
        },
    )
    assert response.status_code == 302
    return response.headers["location"]


def code_of(address: str) -> str:
    return parse_qs(urlsplit(address).query)["code"][0]


def stored(tmp_path: Path) -> TokenPair:
    pair = TokenStore(store_path(tmp_path)).load()
    assert pair is not None
    return pair


def assert_no_secret(text: str, tmp_path: Path) -> None:
    assert SANDBOX_CLIENT.client_secret not in text
    pair = TokenStore(store_path(tmp_path)).load()
    if pair is not None:
        assert pair.access_token not in text and pair.refresh_token not in text


def test_login_with_code_stores_the_pair_and_prints_only_dates(
    sandbox: SandboxServer, fake: AnafOAuthFake, tmp_path: Path
) -> None:
    code, out = invoke("anaf", "login", "--code", code_of(callback_address(sandbox)))
    assert code == 0, out
    pair = stored(tmp_path)
    assert fake.is_valid_access_token(pair.access_token)
    assert stat.S_IMODE(store_path(tmp_path).stat().st_mode) == 0o600
    assert "Logged in to ANAF" in out
    assert f"{pair.access_expires_at.astimezone(BUCHAREST):%Y-%m-%d %H:%M}" in out
    assert f"{pair.refresh_expires_at.astimezone(BUCHAREST):%Y-%m-%d %H:%M}" in out
    assert_no_secret(out, tmp_path)


def test_login_prints_the_authorize_url_and_takes_the_pasted_code(
    sandbox: SandboxServer, fake: AnafOAuthFake, tmp_path: Path
) -> None:
    code, out = invoke("anaf", "login", input=code_of(callback_address(sandbox)) + "\n")
    assert code == 0, out
    url = next(line.strip() for line in out.splitlines() if "/anaf-oauth2/v1/authorize" in line)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{sandbox.url}/anaf-oauth2/v1/authorize?")
    assert query["client_id"] == [SANDBOX_CLIENT.client_id]
    assert query["token_content_type"] == ["jwt"] and query["state"][0]
    assert fake.is_valid_access_token(stored(tmp_path).access_token)
    assert_no_secret(out, tmp_path)


def test_login_refuses_a_callback_address_from_another_attempt(
    sandbox: SandboxServer, fake: AnafOAuthFake, tmp_path: Path
) -> None:
    code, out = invoke("anaf", "login", input=callback_address(sandbox, state="old") + "\n")
    assert code == 1
    assert "another login attempt" in out
    assert not store_path(tmp_path).exists()


def test_login_with_the_whole_callback_address_as_code(
    sandbox: SandboxServer, fake: AnafOAuthFake, tmp_path: Path
) -> None:
    code, out = invoke("anaf", "login", "--code", callback_address(sandbox))
    assert code == 0, out
    assert stored(tmp_path)


def test_login_with_a_used_code_fails_clearly(
    sandbox: SandboxServer, fake: AnafOAuthFake, tmp_path: Path
) -> None:
    used = code_of(callback_address(sandbox))
    assert invoke("anaf", "login", "--code", used)[0] == 0
    code, out = invoke("anaf", "login", "--code", used)
    assert code == 1
    assert "ANAF login failed" in out and "invalid_grant" in out and "anaf login" in out
    assert used not in out
    assert_no_secret(out, tmp_path)


def test_login_with_a_wrong_secret_names_the_setting_not_the_secret(
    sandbox: SandboxServer, fake: AnafOAuthFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANAF_CLIENT_SECRET", "wrong-secret-789")
    code, out = invoke("anaf", "login", "--code", code_of(callback_address(sandbox)))
    assert code == 1
    assert "ANAF_CLIENT_SECRET" in out and "wrong-secret-789" not in out


def test_login_needs_the_client_settings(
    fake: AnafOAuthFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANAF_CLIENT_SECRET")
    code, out = invoke("anaf", "login", "--code", "x")
    assert code == 1 and "ANAF_CLIENT_SECRET" in out


def test_token_lists_expiry_dates_and_days_left_never_the_tokens(
    sandbox: SandboxServer, fake: AnafOAuthFake, tmp_path: Path
) -> None:
    assert invoke("anaf", "login", "--code", code_of(callback_address(sandbox)))[0] == 0
    code, out = invoke("anaf", "token")
    assert code == 0, out
    assert "access" in out and "refresh" in out and "2 ANAF tokens in" in out
    assert_no_secret(out, tmp_path)

    code, out = invoke("anaf", "token", "-o", str(tmp_path / "tokens.json"))
    assert code == 0
    rows = json.loads((tmp_path / "tokens.json").read_text())
    assert [(r["token"], r["state"]) for r in rows] == [("access", "valid"), ("refresh", "valid")]
    assert rows[0]["days_left"] in (89, 90) and rows[1]["days_left"] in (364, 365)
    assert_no_secret((tmp_path / "tokens.json").read_text(), tmp_path)

    assert invoke("anaf", "token", "-o", str(tmp_path / "tokens.csv"))[0] == 0
    with (tmp_path / "tokens.csv").open() as source:
        assert [row["token"] for row in csv.DictReader(source)] == ["access", "refresh"]


def test_token_without_login_fails_with_the_fix(fake: AnafOAuthFake) -> None:
    code, out = invoke("anaf", "token")
    assert code == 1 and "invoicesync anaf login" in out


def test_token_with_an_expired_refresh_token_exits_non_zero(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INVOICESYNC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ANAF_OAUTH_BASE", sandbox.url)
    monkeypatch.setenv("ANAF_CLIENT_ID", SANDBOX_CLIENT.client_id)
    monkeypatch.setenv("ANAF_CLIENT_SECRET", SANDBOX_CLIENT.client_secret)
    sandbox.clock.set(1_600_000_000)  # tokens issued in 2020 are long dead by real time
    sandbox.mount(AnafOAuthFake(clock=sandbox.clock))
    assert invoke("anaf", "login", "--code", code_of(callback_address(sandbox)))[0] == 0
    code, out = invoke("anaf", "token")
    assert code == 1
    assert "expired" in out and "invoicesync anaf login" in out


def test_an_http_callback_is_refused_with_the_setting_named(
    fake: AnafOAuthFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANAF_REDIRECT_URI", "http://localhost:8080/cb")
    code, out = invoke("anaf", "login", "--code", "x")
    assert code == 1 and "ANAF_REDIRECT_URI" in out and "https://" in out


def test_sandbox_login_stores_tokens_without_a_certificate(
    fake: AnafOAuthFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = invoke("sandbox", "anaf-login")
    assert code == 0, output
    assert "Logged in to the sandbox's ANAF" in output
    assert store_path(tmp_path).stat().st_mode & 0o777 == 0o600
    assert SANDBOX_CLIENT.client_secret not in output

    monkeypatch.setenv("ANAF_OAUTH_BASE", "https://logincert.anaf.ro")
    code, output = invoke("sandbox", "anaf-login")
    assert code == 1 and "not the local sandbox" in output
