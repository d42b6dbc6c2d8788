"""ANAF OAuth2 (EFACTURA.md §2, §8.8): log in once with the certificate, then refresh unattended.

- `AnafOAuthClient` speaks to `{oauth_base}/anaf-oauth2/v1/`: the authorize URL a human opens in
  a browser holding the company's qualified certificate, the code exchange, and the refresh.
  Client authentication is HTTP Basic (ANAF accepts it, and the form-body style too).
- `TokenStore` keeps the current pair in one JSON file (mode 0600, replaced atomically) under
  INVOICESYNC_HOME: refresh tokens ROTATE, so the new pair must reach the disk before it is used;
  losing it would mean a trip to the certificate holder.
- `TokenProvider.access_token()` is what API clients call: it refreshes when the access token
  expires within `refresh_margin` (7 days), saves, then answers.

Expiry dates come from the JWTs' `exp` claim, read without verifying the signature (ANAF's public
key is not needed to know when a token we were just given expires). Tokens and the client secret
never appear in messages, reprs or logs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx

OAUTH_PATH = "/anaf-oauth2/v1/"
TOKEN_STORE_NAME = "anaf_tokens.json"
REFRESH_MARGIN = timedelta(days=7)
# Used only when a refresh token is not a JWT with `exp`: ANAF's documented lifetime.
REFRESH_LIFETIME = timedelta(days=365)
LOGIN_HINT = "run `invoicesync anaf login` with the company's certificate at hand"

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- errors -----------------------------------------------------------------------------------


class AnafOAuthError(Exception):
    """Logging in to ANAF or refreshing the token failed; the message says why and what to do."""


class InvalidGrant(AnafOAuthError):
    """ANAF refused the code or refresh token (`invalid_grant`): expired, used, or not ours."""


class InvalidClient(AnafOAuthError):
    """ANAF does not know this client id/secret (`invalid_client`)."""


class OAuthUnavailable(AnafOAuthError):
    """ANAF's OAuth server could not be reached or answered something unexpected."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotLoggedIn(AnafOAuthError):
    """The token store holds no tokens yet."""


class LoginExpired(AnafOAuthError):
    """The refresh token expired or was refused: a human must log in again with the certificate."""


# -- tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPair:
    """ANAF's access + refresh tokens and when they expire (UTC). The tokens are not in the repr."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_expires_at: datetime
    refresh_expires_at: datetime
    obtained_at: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "access_expires_at": self.access_expires_at.isoformat(),
            "refresh_expires_at": self.refresh_expires_at.isoformat(),
            "obtained_at": self.obtained_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenPair:
        return cls(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]),
            access_expires_at=datetime.fromisoformat(data["access_expires_at"]),
            refresh_expires_at=datetime.fromisoformat(data["refresh_expires_at"]),
            obtained_at=datetime.fromisoformat(data["obtained_at"]),
        )


def jwt_expiry(token: str) -> datetime | None:
    """The `exp` claim of a JWT, unverified; None if the token is not a JWT with one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        return datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError):
        return None


# -- the client -------------------------------------------------------------------------------


class AnafOAuthClient:
    """ANAF's authorize URL, code exchange and refresh, for one registered application."""

    def __init__(
        self,
        oauth_base: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        *,
        timeout: float = 30.0,
        now: Callable[[], datetime] = _utcnow,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base = oauth_base.rstrip("/") + OAUTH_PATH
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_uri = redirect_uri
        self._timeout = timeout
        self._now = now
        self._transport = transport

    def __repr__(self) -> str:
        return f"AnafOAuthClient(base={self.base!r}, client_id={self.client_id!r})"

    def authorize_url(self, state: str | None = None) -> str:
        """The address to open in a browser holding the company's certificate."""
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "token_content_type": "jwt",
        }
        if state:
            params["state"] = state
        return f"{self.base}authorize?{urlencode(params)}"

    def exchange_code(self, code: str) -> TokenPair:
        """The first pair, from the code ANAF put on the callback (valid ~60 seconds)."""
        return self._token(
            {
                "grant_type": "authorization_code",
                "code": code.strip(),
                "redirect_uri": self.redirect_uri,
                "token_content_type": "jwt",
            },
            secrets=(code,),
            what="exchanging the authorization code",
        )

    def refresh(self, refresh_token: str) -> TokenPair:
        """A NEW pair; `refresh_token` no longer works afterwards (ANAF rotates it)."""
        return self._token(
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            secrets=(refresh_token,),
            what="refreshing the access token",
        )

    def _token(self, form: dict[str, str], *, secrets: tuple[str, ...], what: str) -> TokenPair:
        url = f"{self.base}token"
        hidden = (*secrets, self._client_secret)
        # RFC 6749 §2.3.1: id and secret are form-url-encoded before the Basic encoding.
        basic = f"{quote_plus(self.client_id)}:{quote_plus(self._client_secret)}"
        headers = {
            "Authorization": "Basic " + base64.b64encode(basic.encode()).decode("ascii"),
            "Accept": "application/json",
        }
        try:
            with httpx.Client(timeout=self._timeout, transport=self._transport) as http:
                response = http.post(url, data=form, headers=headers)
        except httpx.HTTPError as error:
            raise OAuthUnavailable(
                _redact(f"{what}: {url} could not be reached ({error!r})", hidden)
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise OAuthUnavailable(
                f"{what}: {url} answered HTTP {response.status_code} with "
                f"{response.headers.get('content-type', 'no content type')}, not OAuth JSON",
                response.status_code,
            )
        if response.status_code != 200 or "error" in body:
            raise _oauth_error(body, response.status_code, what, hidden)
        return self._pair(body, what)

    def _pair(self, body: dict[str, Any], what: str) -> TokenPair:
        access, refresh = body.get("access_token"), body.get("refresh_token")
        if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
            raise OAuthUnavailable(f"{what}: ANAF's answer lacks access_token or refresh_token")
        obtained = self._now()
        access_expires = jwt_expiry(access)
        if access_expires is None:
            expires_in = body.get("expires_in")
            if not isinstance(expires_in, int) or isinstance(expires_in, bool):
                raise OAuthUnavailable(
                    f"{what}: the access token has no `exp` and the answer no expires_in"
                )
            access_expires = obtained + timedelta(seconds=expires_in)
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            access_expires_at=access_expires,
            refresh_expires_at=jwt_expiry(refresh) or obtained + REFRESH_LIFETIME,
            obtained_at=obtained,
        )


def _oauth_error(
    body: dict[str, Any], status: int, what: str, hidden: tuple[str, ...]
) -> AnafOAuthError:
    code = str(body.get("error") or "")
    description = _redact(str(body.get("error_description") or ""), hidden)
    said = f"HTTP {status} {code}" + (f": {description}" if description else "")
    if code == "invalid_grant":
        return InvalidGrant(f"{what}: ANAF refused the grant ({said})")
    if code in ("invalid_client", "unauthorized_client"):
        return InvalidClient(
            f"{what}: ANAF does not accept this application ({said}); check ANAF_CLIENT_ID and "
            "ANAF_CLIENT_SECRET against the app registered in ANAF's portal"
        )
    if status >= 500 or status == 429:
        return OAuthUnavailable(f"{what}: ANAF's OAuth server is in trouble ({said})", status)
    return AnafOAuthError(f"{what}: ANAF answered {said}")


def _redact(text: str, hidden: tuple[str, ...]) -> str:
    for value in hidden:
        if value:
            text = text.replace(value, "[redacted]")
    return text


# -- the token store --------------------------------------------------------------------------


class TokenStore:
    """The current pair in one JSON file, mode 0600, replaced atomically (write a temporary file
    in the same folder, fsync, rename over): a crash leaves the old pair or the new, never half."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r})"

    def load(self) -> TokenPair | None:
        """The stored pair, or None when there is no store yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return TokenPair.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as error:
            raise AnafOAuthError(
                f"the ANAF token store {self.path} is damaged ({error.__class__.__name__}); "
                f"delete it and {LOGIN_HINT}"
            ) from None

    def save(self, pair: TokenPair) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600 whatever the umask.
        handle, temporary = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as sink:
                json.dump(pair.to_json(), sink, indent=2)
                sink.flush()
                os.fsync(sink.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        _fsync_folder(self.path.parent)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Held while refreshing, so that two processes never spend the same refresh token."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)  # releases the lock


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


# -- the provider -----------------------------------------------------------------------------


class TokenProvider:
    """A valid access token on demand, refreshed (and the new pair saved) before it runs out."""

    def __init__(
        self,
        client: AnafOAuthClient,
        store: TokenStore,
        *,
        refresh_margin: timedelta = REFRESH_MARGIN,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.client = client
        self.store = store
        self.refresh_margin = refresh_margin
        self._now = now
        self._lock = threading.Lock()

    def access_token(self) -> str:
        with self._lock, self.store.locked():
            # Read every time: another process may have rotated the pair since.
            pair = self.store.load()
            if pair is None:
                raise NotLoggedIn(f"no ANAF tokens in {self.store.path}: {LOGIN_HINT}")
            now = self._now()
            if pair.access_expires_at - now > self.refresh_margin:
                return pair.access_token
            if pair.refresh_expires_at <= now:
                raise LoginExpired(
                    f"the ANAF refresh token expired on {pair.refresh_expires_at:%Y-%m-%d}: "
                    f"{LOGIN_HINT} (needed once a year)"
                )
            try:
                fresh = self.client.refresh(pair.refresh_token)
            except InvalidGrant as error:
                raise LoginExpired(
                    f"ANAF refused the stored refresh token ({error}); it was revoked in the "
                    f"portal or already used elsewhere: {LOGIN_HINT}"
                ) from None
            except OAuthUnavailable as error:
                if pair.access_expires_at > now:
                    # Refreshing early is a courtesy: the current token still works.
                    log.warning(
                        "ANAF token refresh postponed, the current one still works: %s", error
                    )
                    return pair.access_token
                raise
            # Saved before it is used: the old refresh token is dead from now on.
            self.store.save(fresh)
            log.info(
                "ANAF tokens refreshed; access valid until %s, refresh until %s",
                fresh.access_expires_at.isoformat(),
                fresh.refresh_expires_at.isoformat(),
            )
            return fresh.access_token
