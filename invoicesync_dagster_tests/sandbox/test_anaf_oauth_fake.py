"""The ANAF OAuth fake over real HTTP: authorize, code exchange, rotation, expiry, errors."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from invoicesync_dagster.sandbox.anaf_oauth_fake import (
    SANDBOX_CLIENT,
    AnafOAuthFake,
    RegisteredClient,
)
from invoicesync_dagster.sandbox.server import SandboxServer

NOW = 1_780_000_000
CLIENT = SANDBOX_CLIENT
OTHER = RegisteredClient("other-app", "other-secret", "https://example.test/cb")


@pytest.fixture
def fake(sandbox: SandboxServer) -> AnafOAuthFake:
    sandbox.clock.set(NOW)
    oauth = AnafOAuthFake(clock=sandbox.clock, clients=(CLIENT, OTHER))
    sandbox.mount(oauth)
    return oauth


def authorize(sandbox: SandboxServer, **params: str) -> httpx.Response:
    query = {
        "response_type": "code",
        "client_id": CLIENT.client_id,
        "redirect_uri": CLIENT.redirect_uri,
        "token_content_type": "jwt",
        **params,
    }
    return httpx.get(f"{sandbox.url}/anaf-oauth2/v1/authorize", params=query)


def code_for(sandbox: SandboxServer, **params: str) -> str:
    response = authorize(sandbox, **params)
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


def token(
    sandbox: SandboxServer, form: dict[str, str], client: RegisteredClient = CLIENT
) -> httpx.Response:
    return httpx.post(
        f"{sandbox.url}/anaf-oauth2/v1/token",
        data=form,
        auth=(client.client_id, client.client_secret),
    )


def exchange(sandbox: SandboxServer, code: str) -> httpx.Response:
    return token(
        sandbox,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": CLIENT.redirect_uri},
    )


def claims(jwt: str) -> tuple[dict[str, object], dict[str, object]]:
    header, payload, signature = jwt.split(".")
    assert signature

    def decode(part: str) -> dict[str, object]:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    return decode(header), decode(payload)


def test_authorize_auto_approves_and_redirects_with_code_and_state(
    sandbox: SandboxServer, fake: AnafOAuthFake
) -> None:
    response = authorize(sandbox, state="xyz 1")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CLIENT.redirect_uri
    query = parse_qs(location.query)
    assert query["state"] == ["xyz 1"] and len(query["code"][0]) >= 20


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"client_id": "nobody"}, "invalid_client"),
        ({"redirect_uri": CLIENT.redirect_uri + "/"}, "invalid_request"),
        ({"redirect_uri": OTHER.redirect_uri}, "invalid_request"),
    ],
)
def test_authorize_never_redirects_to_an_unregistered_callback(
    sandbox: SandboxServer, fake: AnafOAuthFake, params: dict[str, str], error: str
) -> None:
    response = authorize(sandbox, **params)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert "location" not in response.headers


def test_authorize_redirects_other_faults_back_to_the_client(
    sandbox: SandboxServer, fake: AnafOAuthFake
) -> None:
    response = authorize(sandbox, response_type="token", state="s")
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query == {"error": ["unsupported_response_type"], "state": ["s"]}


def test_code_exchange_returns_anaf_shaped_jwts(
    sandbox: SandboxServer, fake: AnafOAuthFake
) -> None:
    response = exchange(sandbox, code_for(sandbox))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 90 * 86_400
    header, access = claims(body["access_token"])
    assert header == {"alg": "RS512", "typ": "JWT"}
    assert access["iss"] == "https://logincert.anaf.ro"
    assert access["iat"] == NOW and access["exp"] == NOW + 90 * 86_400
    assert claims(body["refresh_token"])[1]["exp"] == NOW + 365 * 86_400
    assert fake.is_valid_access_token(body["access_token"])
    assert not fake.is_valid_access_token(body["refresh_token"])


def test_client_credentials_in_the_form_body_work_too(
    sandbox: SandboxServer, fake: AnafOAuthFake
) -> None:
    response = httpx.post(
        f"{sandbox.url}/anaf-oauth2/v1/token",
        data={
            "grant_type": "authorization_code",
            "code": code_for(sandbox),
            "redirect_uri": CLIENT.redirect_uri,
            "client_id": CLIENT.client_id,
            "client_secret": CLIENT.client_secret,
        },
    )
    assert response.status_code == 200, response.text


def test_a_code_works_once_and_for_sixty_seconds(
    sandbox: SandboxServer, fake: AnafOAuthFake
) -> None:
    code = code_for(sandbox)
    assert exchange(sandbox, code).status_code == 200
    reused = exchange(sandbox, code)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    late = code_for(sandbox)
    sandbox.clock.set(NOW + 60)
    expired = exchange(sandbox, late)
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"

    sandbox.clock.set(NOW + 100)
    fresh = code_for(sandbox)
    sandbox.clock.set(NOW + 159)
    assert exchange(sandbox, fresh).status_code == 200


def test_a_code_is_bound_to_its_client_and_callback(
    sandbox: SandboxServer, fake: AnafOAuthFake
) -> None:
    foreign = token(
        sandbox,
        {
            "grant_type": "authorization_code",
            "code": code_for(sandbox),
            "redirect_uri": CLIENT.redirect_uri,
        },
        client=OTHER,
    )
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_grant"
    elsewhere = token(
        sandbox,
        {
            "grant_type": "authorization_code",
            "code": code_for(sandbox),
            "redirect_uri": OTHER.redirect_uri,
        },
    )
    assert elsewhere.status_code == 400 and elsewhere.json()["error"] == "invalid_grant"


def test_refresh_rotates_and_keeps_old_access_tokens_until_they_expire(
    sandbox: SandboxServer, fake: AnafOAuthFake
) -> None:
    first = exchange(sandbox, code_for(sandbox)).json()
    sandbox.clock.set(NOW + 3600)
    second = token(
        sandbox, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    ).json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert claims(second["access_token"])[1]["exp"] == NOW + 3600 + 90 * 86_400

    again = token(sandbox, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert fake.is_valid_access_token(first["access_token"])
    assert fake.is_valid_refresh_token(second["refresh_token"])
    assert not fake.is_valid_refresh_token(first["refresh_token"])

    sandbox.clock.set(NOW + 90 * 86_400)
    assert not fake.is_valid_access_token(first["access_token"])
    assert fake.is_valid_access_token(second["access_token"])


def test_expired_refresh_token_is_refused(sandbox: SandboxServer) -> None:
    server = sandbox
    server.clock.set(NOW)
    fake = AnafOAuthFake(clock=server.clock, access_lifetime_s=60, refresh_lifetime_s=120)
    server.mount(fake)
    pair = exchange(server, code_for(server)).json()
    assert pair["expires_in"] == 60
    server.clock.set(NOW + 120)
    refused = token(server, {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "invalid_grant",
        "error_description": "Refresh token expired",
    }
    assert not fake.is_valid_access_token(pair["access_token"])


def test_bad_client_credentials_answer_401(sandbox: SandboxServer, fake: AnafOAuthFake) -> None:
    wrong = RegisteredClient(CLIENT.client_id, "not-the-secret", CLIENT.redirect_uri)
    response = token(
        sandbox,
        {"grant_type": "authorization_code", "code": code_for(sandbox)},
        client=wrong,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    anonymous = httpx.post(f"{sandbox.url}/anaf-oauth2/v1/token", data={"grant_type": "x"})
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({}, "invalid_request"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "abc.def.ghi"}, "invalid_grant"),
        ({"grant_type": "authorization_code", "code": "made-up"}, "invalid_grant"),
    ],
)
def test_token_errors_are_oauth_json(
    sandbox: SandboxServer, fake: AnafOAuthFake, form: dict[str, str], error: str
) -> None:
    response = token(sandbox, form)
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_calls_are_recorded_without_secrets_and_reset_forgets_tokens(
    sandbox: SandboxServer, fake: AnafOAuthFake
) -> None:
    pair = exchange(sandbox, code_for(sandbox)).json()
    token(sandbox, {"grant_type": "refresh_token", "refresh_token": "nope"})
    listed = httpx.get(f"{sandbox.url}/_sandbox/anaf-oauth/calls").json()["calls"]
    assert [(c["endpoint"], c["grant_type"], c["status"]) for c in listed] == [
        ("authorize", None, 302),
        ("token", "authorization_code", 200),
        ("token", "refresh_token", 400),
    ]
    text = json.dumps(listed)
    for secret in (CLIENT.client_secret, pair["access_token"], pair["refresh_token"]):
        assert secret not in text

    httpx.post(f"{sandbox.url}/_sandbox/reset")
    assert fake.calls == []
    assert not fake.is_valid_access_token(pair["access_token"])
