"""A fake of ANAF's OAuth2 server, `https://logincert.anaf.ro/anaf-oauth2/v1/` (EFACTURA.md §2).

Paths (under the sandbox root, as under ANAF's host):

- `GET /anaf-oauth2/v1/authorize?response_type=code&client_id=…&redirect_uri=…
  &token_content_type=jwt[&state=…]`: ANAF asks for the company's qualified certificate here; a
  sandbox has none, so the request is approved at once: HTTP 302 to `redirect_uri?code=…[&state=…]`.
  The code is single-use and must be exchanged within `code_lifetime_s` (60 s, as ANAF's PDF says)
  by the sandbox clock.
  An unknown `client_id`, or a `redirect_uri` that is not exactly the registered one, must not be
  redirected to (RFC 6749 §4.1.2.1): HTTP 400 JSON `{"error": "invalid_client" |
  "invalid_request", "error_description": …}`. ANAF shows an HTML page behind its certificate
  wall, whose text is not documented; the JSON keeps the cause machine-readable. With a good
  client and callback, other faults (a `response_type` other than `code`) are redirected back as
  `?error=unsupported_response_type&state=…`, as RFC 6749 has it.
- `POST /anaf-oauth2/v1/token`, form-encoded; the client authenticates with HTTP Basic
  `client_id:client_secret` or with `client_id`/`client_secret` in the form (ANAF accepts both).
  `grant_type=authorization_code` (`code`, `redirect_uri` equal to the one authorized) or
  `grant_type=refresh_token` (`refresh_token`). Success: HTTP 200
  `{"access_token", "refresh_token", "token_type": "Bearer", "expires_in", "scope"}`.
  A refresh ROTATES: the refresh token used stops working and a new pair comes back. Access tokens
  issued earlier stay valid until they expire (ANAF does not revoke them).
  Errors are OAuth JSON: bad client credentials → 401 `invalid_client` (with `WWW-Authenticate`
  when Basic was used); an unknown, used, expired or foreign code or refresh token → 400
  `invalid_grant`; a missing parameter → 400 `invalid_request`; another grant type → 400
  `unsupported_grant_type`.

Tokens are JWT-shaped like ANAF's: base64url `header.payload.signature`, header
`{"alg": "RS512", "typ": "JWT"}`, claims `iss` (https://logincert.anaf.ro), `iat`, `exp`, `jti`,
`clientappid`, `scope` ("clientappid info issuer role serial"), `role` (["EFACTURA"]) and
`token_use` (access|refresh, the fake's own marker). The signature is an HMAC with a key the fake
keeps: no one verifies it offline (clients read `exp` without verification). Lifetimes: access 90
days, refresh 365 days (ANAF's); both can be shortened for tests.

The registered clients default to one sandbox app, `SANDBOX_CLIENT` (id
`invoicesync-sandbox-client`, secret `invoicesync-sandbox-secret`, callback
`https://localhost:8443/anaf/callback`): set ANAF_CLIENT_ID / ANAF_CLIENT_SECRET /
ANAF_REDIRECT_URI to those to log in against the sandbox. They are not secrets.

The e-Factura fake asks `is_valid_access_token(token)` for each Bearer token it receives. Every
request is recorded in `calls` (endpoint, grant type, client id, HTTP status, error; never a
secret or a token), also at `GET /_sandbox/anaf-oauth/calls`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

from invoicesync_dagster.sandbox.http import Clock, Request, Response

PREFIX = "/anaf-oauth2/v1/"
CONTROL_PATH = "/_sandbox/anaf-oauth/calls"
ISSUER = "https://logincert.anaf.ro"
SCOPE = "clientappid info issuer role serial"
DAY = 86_400
ACCESS_LIFETIME_S = 90 * DAY  # 129 600 minutes
REFRESH_LIFETIME_S = 365 * DAY  # 525 600 minutes
CODE_LIFETIME_S = 60


@dataclass(frozen=True)
class RegisteredClient:
    """An application registered in ANAF's portal (Înregistrare aplicații OAuth)."""

    client_id: str
    client_secret: str
    redirect_uri: str


SANDBOX_CLIENT = RegisteredClient(
    client_id="invoicesync-sandbox-client",
    client_secret="invoicesync-sandbox-secret",
    redirect_uri="https://localhost:8443/anaf/callback",
)


@dataclass(frozen=True)
class _Grant:
    client_id: str
    expires_at: int
    redirect_uri: str = ""


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


class AnafOAuthFake:
    """ANAF's authorize and token endpoints, with rotation and expiry on the sandbox clock."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        clients: tuple[RegisteredClient, ...] = (SANDBOX_CLIENT,),
        access_lifetime_s: int = ACCESS_LIFETIME_S,
        refresh_lifetime_s: int = REFRESH_LIFETIME_S,
        code_lifetime_s: int = CODE_LIFETIME_S,
    ) -> None:
        self.clock = clock or Clock()
        self.clients = {client.client_id: client for client in clients}
        self.access_lifetime_s = access_lifetime_s
        self.refresh_lifetime_s = refresh_lifetime_s
        self.code_lifetime_s = code_lifetime_s
        self._signing_key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._codes: dict[str, _Grant] = {}
            self._access: dict[str, _Grant] = {}
            self._refresh: dict[str, _Grant] = {}
            self.calls: list[dict[str, Any]] = []

    # -- what the other fakes and tests ask --------------------------------------------------

    def is_valid_access_token(self, token: str) -> bool:
        """Issued here and not expired by the sandbox clock (rotation does not revoke it)."""
        with self._lock:
            grant = self._access.get(token)
            return grant is not None and self.clock.now() < grant.expires_at

    def is_valid_refresh_token(self, token: str) -> bool:
        with self._lock:
            grant = self._refresh.get(token)
            return grant is not None and self.clock.now() < grant.expires_at

    # -- HTTP -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response | None:
        if request.path == CONTROL_PATH and request.method == "GET":
            with self._lock:
                return Response.json(200, {"calls": list(self.calls)})
        if not request.path.startswith(PREFIX):
            return None
        endpoint = request.path[len(PREFIX) :]
        if endpoint == "authorize" and request.method == "GET":
            return self._authorize(dict(request.query))
        if endpoint == "token" and request.method == "POST":
            return self._token(request)
        if endpoint in ("authorize", "token"):
            return _error(405, "invalid_request", f"{request.method} is not allowed here")
        return _error(404, "invalid_request", f"no such endpoint: {request.path}")

    def _authorize(self, query: dict[str, str]) -> Response:
        client = self.clients.get(query.get("client_id", ""))
        redirect_uri = query.get("redirect_uri", "")
        if client is None:
            return self._record_error(
                "authorize", query, 400, "invalid_client", "unknown client_id"
            )
        if redirect_uri != client.redirect_uri:
            return self._record_error(
                "authorize",
                query,
                400,
                "invalid_request",
                "redirect_uri does not match the callback registered for this client",
            )
        answer: dict[str, str] = {}
        if query.get("response_type") != "code":
            answer["error"] = "unsupported_response_type"
        else:
            code = secrets.token_hex(20)
            with self._lock:
                expires_at = self.clock.now() + self.code_lifetime_s
                self._codes[code] = _Grant(client.client_id, expires_at, redirect_uri)
            answer["code"] = code
        if "state" in query:
            answer["state"] = query["state"]
        self._record("authorize", None, client.client_id, 302, answer.get("error"))
        location = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(answer)}"
        return Response(302, b"", {"Location": location}, content_type="text/html")

    def _token(self, request: Request) -> Response:
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        grant_type = form.get("grant_type")
        client_id = form.get("client_id")
        basic: tuple[str, str] | None = None
        try:
            basic = _basic_credentials(request.header("Authorization"))
            client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
            client = self.clients.get(client_id or "")
            if client is None or not hmac.compare_digest(
                (secret or "").encode(), client.client_secret.encode()
            ):
                raise _OAuthError(401, "invalid_client", "Bad client credentials")
            with self._lock:
                if grant_type == "authorization_code":
                    self._use_code(client, form)
                elif grant_type == "refresh_token":
                    self._use_refresh_token(client, form)
                elif not grant_type:
                    raise _OAuthError(400, "invalid_request", "grant_type is required")
                else:
                    raise _OAuthError(400, "unsupported_grant_type", f"{grant_type!r}")
                payload = self._issue(client.client_id)
        except _OAuthError as error:
            response = _error(error.status, error.error, error.description)
            if error.status == 401 and basic:
                response.headers["WWW-Authenticate"] = 'Basic realm="anaf-oauth2"'
            self._record("token", grant_type, client_id, error.status, error.error)
            return response
        self._record("token", grant_type, client.client_id, 200, None)
        return Response.json(200, payload, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _use_code(self, client: RegisteredClient, form: dict[str, str]) -> None:
        if not form.get("code"):
            raise _OAuthError(400, "invalid_request", "code is required")
        grant = self._codes.pop(form["code"], None)  # single use, even when it fails below
        if grant is None or grant.client_id != client.client_id:
            raise _OAuthError(400, "invalid_grant", "Invalid authorization code")
        if self.clock.now() >= grant.expires_at:
            raise _OAuthError(400, "invalid_grant", "Authorization code expired")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise _OAuthError(400, "invalid_grant", "redirect_uri does not match the authorize")

    def _use_refresh_token(self, client: RegisteredClient, form: dict[str, str]) -> None:
        token = form.get("refresh_token")
        if not token:
            raise _OAuthError(400, "invalid_request", "refresh_token is required")
        grant = self._refresh.get(token)
        if grant is None or grant.client_id != client.client_id:
            raise _OAuthError(400, "invalid_grant", "Invalid refresh token")
        if self.clock.now() >= grant.expires_at:
            raise _OAuthError(400, "invalid_grant", "Refresh token expired")
        del self._refresh[token]  # rotation: a refresh token works once

    def _issue(self, client_id: str) -> dict[str, Any]:
        """A new access + refresh pair (the caller holds the lock)."""
        now = self.clock.now()
        access = self._jwt(client_id, now, now + self.access_lifetime_s, "access")
        refresh = self._jwt(client_id, now, now + self.refresh_lifetime_s, "refresh")
        self._access[access] = _Grant(client_id, now + self.access_lifetime_s)
        self._refresh[refresh] = _Grant(client_id, now + self.refresh_lifetime_s)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": self.access_lifetime_s,
            "scope": SCOPE,
        }

    def _jwt(self, client_id: str, issued_at: int, expires_at: int, use: str) -> str:
        header = {"alg": "RS512", "typ": "JWT"}
        claims = {
            "iss": ISSUER,
            "iat": issued_at,
            "exp": expires_at,
            "jti": secrets.token_hex(16),
            "clientappid": client_id,
            "scope": SCOPE,
            "role": ["EFACTURA"],
            "token_use": use,
        }
        signing_input = f"{_b64(json.dumps(header))}.{_b64(json.dumps(claims))}"
        signature = hmac.new(self._signing_key, signing_input.encode(), hashlib.sha512).digest()
        return f"{signing_input}.{_b64(signature)}"

    # -- records ----------------------------------------------------------------------------

    def _record(
        self, endpoint: str, grant_type: str | None, client_id: str | None, status: int, error: Any
    ) -> None:
        with self._lock:
            self.calls.append(
                {
                    "endpoint": endpoint,
                    "grant_type": grant_type,
                    "client_id": client_id,
                    "status": status,
                    "error": error,
                    "at": self.clock.now(),
                }
            )

    def _record_error(
        self, endpoint: str, query: dict[str, str], status: int, error: str, description: str
    ) -> Response:
        self._record(endpoint, None, query.get("client_id"), status, error)
        return _error(status, error, description)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _OAuthError(401, "invalid_client", "Malformed Basic credentials") from None
    client_id, _, secret = decoded.partition(":")
    # RFC 6749 §2.3.1: both are form-url-encoded before joining.
    return unquote_plus(client_id), unquote_plus(secret)


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _error(status: int, error: str, description: str) -> Response:
    return Response.json(status, {"error": error, "error_description": description})


def sandbox_login(oauth_base: str, client: RegisteredClient, store_path: Path) -> datetime:
    """Log in to this fake as a person with the certificate would, without one (it approves at
    once), and store the tokens where `invoicesync anaf login` does. Loopback only. Returns the
    refresh token's expiry."""
    from urllib.parse import parse_qs, urlsplit

    import httpx

    from invoicesync_dagster.clients.anaf.oauth import AnafOAuthClient, TokenStore

    if urlsplit(oauth_base).hostname not in ("127.0.0.1", "localhost"):
        raise ValueError(
            f"{oauth_base} is not the local sandbox: a real ANAF login needs the company's "
            "certificate in a browser (`invoicesync anaf login`)"
        )
    oauth = AnafOAuthClient(oauth_base, client.client_id, client.client_secret, client.redirect_uri)
    answer = httpx.get(oauth.authorize_url("sandbox"), follow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(answer.headers.get("location", "")).query).get("code", [""])[0]
    if not code:
        raise ValueError(f"the sandbox's authorize answered {answer.status_code} without a code")
    pair = oauth.exchange_code(code)
    TokenStore(store_path).save(pair)
    return pair.refresh_expires_at
