"""ANAF OAuth client, token store and provider against the sandbox's OAuth fake, over HTTP."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from invoicesync_dagster.clients.anaf.oauth import (
    AnafOAuthClient,
    AnafOAuthError,
    InvalidClient,
    InvalidGrant,
    LoginExpired,
    NotLoggedIn,
    OAuthUnavailable,
    TokenPair,
    TokenProvider,
    TokenStore,
    jwt_expiry,
)
from invoicesync_dagster.sandbox.anaf_oauth_fake import SANDBOX_CLIENT, AnafOAuthFake
from invoicesync_dagster.sandbox.server import SandboxServer

NOW = 1_780_000_000
DAY = 86_400


@pytest.fixture
def fake(sandbox: SandboxServer) -> AnafOAuthFake:
    sandbox.clock.set(NOW)
    oauth = AnafOAuthFake(clock=sandbox.clock)
    sandbox.mount(oauth)
    return oauth


def sandbox_now(sandbox: SandboxServer) -> datetime:
    return datetime.fromtimestamp(sandbox.clock.now(), UTC)


@pytest.fixture
def client(sandbox: SandboxServer, fake: AnafOAuthFake) -> AnafOAuthClient:
    return AnafOAuthClient(
        sandbox.url,
        SANDBOX_CLIENT.client_id,
        SANDBOX_CLIENT.client_secret,
        SANDBOX_CLIENT.redirect_uri,
        now=lambda: sandbox_now(sandbox),
    )


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "home" / "anaf_tokens.json")


def login(client: AnafOAuthClient) -> TokenPair:
    """What the human does: open the address, let ANAF redirect, hand the code over."""
    response = httpx.get(client.authorize_url("st4te"))
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["state"] == ["st4te"]
    return client.exchange_code(query["code"][0])


def provider_at(
    sandbox: SandboxServer, client: AnafOAuthClient, store: TokenStore
) -> TokenProvider:
    return TokenProvider(client, store, now=lambda: sandbox_now(sandbox))


def test_authorize_url_carries_anaf_parameters(client: AnafOAuthClient) -> None:
    url = urlsplit(client.authorize_url("abc"))
    assert url.path == "/anaf-oauth2/v1/authorize"
    assert parse_qs(url.query) == {
        "response_type": ["code"],
        "client_id": [SANDBOX_CLIENT.client_id],
        "redirect_uri": [SANDBOX_CLIENT.redirect_uri],
        "token_content_type": ["jwt"],
        "state": ["abc"],
    }


def test_full_login_gives_a_pair_with_expiry_from_the_jwts(
    client: AnafOAuthClient, fake: AnafOAuthFake
) -> None:
    pair = login(client)
    assert fake.is_valid_access_token(pair.access_token)
    assert pair.access_expires_at == datetime.fromtimestamp(NOW + 90 * DAY, UTC)
    assert pair.refresh_expires_at == datetime.fromtimestamp(NOW + 365 * DAY, UTC)
    assert pair.obtained_at == datetime.fromtimestamp(NOW, UTC)
    assert jwt_expiry(pair.access_token) == pair.access_expires_at
    assert pair.access_token not in repr(pair) and pair.refresh_token not in repr(pair)


def test_store_is_0600_atomic_and_round_trips(
    client: AnafOAuthClient, store: TokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = login(client)
    previous = os.umask(0)  # a careless open() would now create a world-readable file
    try:
        store.save(pair)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load() == pair
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["anaf_tokens.json"]

    # A crash while writing leaves the previous pair intact and no temporary file behind.
    second = login(client)
    monkeypatch.setattr(os, "fsync", _raise_os_error)
    with pytest.raises(OSError):
        store.save(second)
    monkeypatch.undo()
    assert store.load() == pair
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["anaf_tokens.json"]


def _raise_os_error(_fd: int) -> None:
    raise OSError("disk gone")


def test_damaged_store_names_the_file_and_the_fix(store: TokenStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text('{"access_token": "x"')
    with pytest.raises(AnafOAuthError, match=r"anaf_tokens\.json is damaged.*anaf login"):
        store.load()


def test_refresh_rotates_and_the_old_refresh_token_is_refused(
    client: AnafOAuthClient, fake: AnafOAuthFake
) -> None:
    first = login(client)
    second = client.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert fake.is_valid_access_token(second.access_token)
    with pytest.raises(InvalidGrant) as refused:
        client.refresh(first.refresh_token)
    assert first.refresh_token not in str(refused.value)


def test_provider_returns_the_stored_token_while_far_from_expiry(
    sandbox: SandboxServer, client: AnafOAuthClient, store: TokenStore, fake: AnafOAuthFake
) -> None:
    pair = login(client)
    store.save(pair)
    sandbox.clock.set(NOW + 80 * DAY)
    assert provider_at(sandbox, client, store).access_token() == pair.access_token
    assert [c["grant_type"] for c in fake.calls if c["endpoint"] == "token"] == [
        "authorization_code"
    ]


def test_expiring_token_is_refreshed_and_saved_before_it_is_returned(
    sandbox: SandboxServer, client: AnafOAuthClient, store: TokenStore, fake: AnafOAuthFake
) -> None:
    old = login(client)
    store.save(old)
    sandbox.clock.set(NOW + 84 * DAY)  # 6 days left: inside the 7-day margin
    saved: list[TokenPair] = []
    real_save = store.save

    def save(pair: TokenPair) -> None:
        real_save(pair)
        saved.append(TokenStore(store.path).load())  # what is on disk at that moment

    store.save = save  # type: ignore[method-assign]
    token = provider_at(sandbox, client, store).access_token()

    assert token != old.access_token and fake.is_valid_access_token(token)
    assert len(saved) == 1 and saved[0] is not None and saved[0].access_token == token
    on_disk = TokenStore(store.path).load()
    assert on_disk is not None and on_disk.access_token == token
    assert on_disk.access_expires_at == datetime.fromtimestamp(NOW + 174 * DAY, UTC)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    with pytest.raises(InvalidGrant):
        client.refresh(old.refresh_token)  # rotated: the old one is dead at ANAF


def test_a_token_that_cannot_be_saved_is_never_used(
    sandbox: SandboxServer, client: AnafOAuthClient, store: TokenStore
) -> None:
    store.save(login(client))
    sandbox.clock.set(NOW + 89 * DAY)

    def broken_save(pair: TokenPair) -> None:
        raise OSError("read-only file system")

    store.save = broken_save  # type: ignore[method-assign]
    with pytest.raises(OSError):
        provider_at(sandbox, client, store).access_token()


def test_concurrent_callers_refresh_once(
    sandbox: SandboxServer, client: AnafOAuthClient, store: TokenStore, fake: AnafOAuthFake
) -> None:
    store.save(login(client))
    sandbox.clock.set(NOW + 89 * DAY)
    # Two providers on the same file (as two processes would have) and four threads each.
    providers = [provider_at(sandbox, client, TokenStore(store.path)) for _ in range(2)]
    start = threading.Barrier(8)
    tokens: list[str] = []

    def call(provider: TokenProvider) -> None:
        start.wait()
        tokens.append(provider.access_token())

    threads = [threading.Thread(target=call, args=(providers[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    refreshes = [c for c in fake.calls if c.get("grant_type") == "refresh_token"]
    assert len(refreshes) == 1 and refreshes[0]["status"] == 200
    assert len(tokens) == 8 and len(set(tokens)) == 1


def test_no_tokens_says_to_log_in(
    sandbox: SandboxServer, client: AnafOAuthClient, store: TokenStore
) -> None:
    with pytest.raises(NotLoggedIn, match="invoicesync anaf login"):
        provider_at(sandbox, client, store).access_token()


def test_expired_refresh_token_asks_for_a_human_without_calling_anaf(
    sandbox: SandboxServer, client: AnafOAuthClient, store: TokenStore, fake: AnafOAuthFake
) -> None:
    store.save(login(client))
    sandbox.clock.set(NOW + 366 * DAY)
    with pytest.raises(LoginExpired, match=r"expired on .*invoicesync anaf login.*once a year"):
        provider_at(sandbox, client, store).access_token()
    assert not [c for c in fake.calls if c.get("grant_type") == "refresh_token"]


def test_refused_refresh_token_asks_for_a_new_login(
    sandbox: SandboxServer, client: AnafOAuthClient, store: TokenStore
) -> None:
    pair = login(client)
    store.save(pair)
    client.refresh(pair.refresh_token)  # spent elsewhere, the new pair not saved here
    sandbox.clock.set(NOW + 89 * DAY)
    with pytest.raises(LoginExpired, match="invoicesync anaf login") as error:
        provider_at(sandbox, client, store).access_token()
    assert pair.refresh_token not in str(error.value)


def test_anaf_down_keeps_a_still_valid_token_and_fails_once_it_expired(
    sandbox: SandboxServer, client: AnafOAuthClient, store: TokenStore
) -> None:
    pair = login(client)
    store.save(pair)
    sandbox.faults.configure({"rules": [{"path_prefix": "/anaf-oauth2/", "status": 503}]})
    sandbox.clock.set(NOW + 85 * DAY)
    assert provider_at(sandbox, client, store).access_token() == pair.access_token
    sandbox.clock.set(NOW + 90 * DAY)
    with pytest.raises(OAuthUnavailable) as error:
        provider_at(sandbox, client, store).access_token()
    assert error.value.status == 503
    assert store.load() == pair


def test_secrets_never_appear_in_errors_reprs_or_logs(
    sandbox: SandboxServer,
    client: AnafOAuthClient,
    store: TokenStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    pair = login(client)
    store.save(pair)
    sandbox.clock.set(NOW + 89 * DAY)
    fresh_token = provider_at(sandbox, client, store).access_token()
    assert "ANAF tokens refreshed" in caplog.text

    wrong = AnafOAuthClient(
        sandbox.url, SANDBOX_CLIENT.client_id, "wrong-secret-123", SANDBOX_CLIENT.redirect_uri
    )
    with pytest.raises(InvalidClient) as bad_client:
        wrong.refresh(pair.refresh_token)
    with pytest.raises(InvalidGrant) as bad_grant:
        client.exchange_code("one-time-code-456")

    fresh = store.load()
    assert fresh is not None
    shown = "\n".join(
        [
            caplog.text,
            str(bad_client.value),
            repr(bad_client.value),
            str(bad_grant.value),
            repr(client),
            repr(wrong),
            repr(store),
            repr(fresh),
        ]
    )
    assert "ANAF_CLIENT_SECRET" in str(bad_client.value)
    for secret in (
        SANDBOX_CLIENT.client_secret,
        "wrong-secret-123",
        "one-time-code-456",
        pair.access_token,
        pair.refresh_token,
        fresh_token,
        fresh.refresh_token,
    ):
        assert secret not in shown
    assert json.loads(store.path.read_text())["access_token"] == fresh_token


def test_unreachable_server_is_oauth_unavailable(client: AnafOAuthClient) -> None:
    closed = AnafOAuthClient(
        "http://127.0.0.1:9", "id", "s3cret-value", SANDBOX_CLIENT.redirect_uri, timeout=2
    )
    with pytest.raises(OAuthUnavailable) as error:
        closed.refresh("refresh-value")
    assert "s3cret-value" not in str(error.value) and "refresh-value" not in str(error.value)


def test_not_json_answer_is_oauth_unavailable(sandbox: SandboxServer) -> None:
    # The BNR fake answers HTML 404s: the shape of a proxy or firewall page at the wrong URL.
    lost = AnafOAuthClient(f"{sandbox.url}/bnr", "id", "secret", SANDBOX_CLIENT.redirect_uri)
    with pytest.raises(OAuthUnavailable, match="not OAuth JSON"):
        lost.refresh("x")


def test_expiry_falls_back_to_expires_in_for_opaque_tokens() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "access_token": "opaque",
                "refresh_token": "opaque2",
                "token_type": "Bearer",
                "expires_in": 3600,
            },
        )

    at = datetime(2026, 1, 1, tzinfo=UTC)
    opaque = AnafOAuthClient(
        "https://oauth.test",
        "id",
        "secret",
        SANDBOX_CLIENT.redirect_uri,
        now=lambda: at,
        transport=httpx.MockTransport(answer),
    )
    pair = opaque.refresh("r")
    assert pair.access_expires_at == at + timedelta(hours=1)
    assert pair.refresh_expires_at == at + timedelta(days=365)
