"""Google OAuth 2.0 for the Google Ads API: authorization code + PKCE (S256), offline access.

Why PKCE even though we are a confidential client: it binds the code to the browser session
that started the flow, so a code intercepted on the redirect (logs, referrers) is useless
without the verifier, which never leaves our server (``OAuthStart.code_verifier`` is stored
server-side next to the signed state). ``access_type=offline`` + ``prompt=consent`` make
Google issue a refresh token every time, so a reconnect always yields one.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from omnify.integrations.base import AuthRevoked, InvalidRequest, OAuthStart, TokenSet
from omnify.integrations.google.mapping import ADWORDS_SCOPE, API_VERSION
from omnify.integrations.http import ConnectorHttp


@dataclass(frozen=True, slots=True)
class GoogleConfig:
    client_id: str
    client_secret: str
    developer_token: str
    login_customer_id: str | None = None  # default manager; discovered per account otherwise
    ads_url: str = "https://googleads.googleapis.com"
    auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    token_url: str = "https://oauth2.googleapis.com/token"
    revoke_url: str = "https://oauth2.googleapis.com/revoke"
    api_version: str = API_VERSION
    scopes: tuple[str, ...] = (ADWORDS_SCOPE,)
    metrics_window_days: int = 31

    def path(self, tail: str) -> str:
        return f"/{self.api_version}/{tail}"


def new_code_verifier() -> str:
    """RFC 7636: 43-128 chars from the unreserved set; 64 random bytes -> 86 chars."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


class GoogleOAuth:
    def __init__(self, config: GoogleConfig, http: ConnectorHttp) -> None:
        self.config = config
        self.http = http
        http.add_secret(config.client_secret)
        http.add_secret(config.developer_token)

    def authorize_url(self, *, redirect_uri: str, state: str) -> OAuthStart:
        verifier = new_code_verifier()
        query = urlencode({
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(self.config.scopes),
            "state": state,
            "access_type": "offline",
            "prompt": "consent",
            "include_granted_scopes": "true",
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        })
        return OAuthStart(url=f"{self.config.auth_url}?{query}", state=state, code_verifier=verifier)

    async def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str | None = None) -> TokenSet:
        if not code_verifier:
            raise InvalidRequest("the PKCE code_verifier from authorize_url() is required")
        self.http.add_secret(code)
        self.http.add_secret(code_verifier)
        body = await self.http.post_json(
            self.config.token_url,
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                  "client_id": self.config.client_id, "client_secret": self.config.client_secret,
                  "code_verifier": code_verifier},
            retry=False,
        )
        tokens = self._tokens_from(body, previous_refresh=None)
        if tokens.refresh_token is None:
            raise InvalidRequest("Google returned no refresh token (offline access not granted)")
        return tokens

    async def refresh(self, tokens: TokenSet) -> TokenSet:
        if not tokens.refresh_token:
            raise AuthRevoked("no refresh token stored for this Google connection; re-authorize")
        self.http.add_secret(tokens.refresh_token)
        try:
            body = await self.http.post_json(
                self.config.token_url,
                data={"grant_type": "refresh_token", "refresh_token": tokens.refresh_token,
                      "client_id": self.config.client_id, "client_secret": self.config.client_secret},
            )
        except InvalidRequest as exc:
            if exc.platform_code == "invalid_grant":  # revoked, expired (6 months unused), password change
                raise AuthRevoked(str(exc), status=exc.status, platform_code=exc.platform_code) from None
            raise
        return self._tokens_from(body, previous_refresh=tokens.refresh_token)

    async def revoke(self, tokens: TokenSet) -> None:
        """Revoking the refresh token revokes the whole grant (its access tokens too)."""
        token = tokens.refresh_token or tokens.access_token
        self.http.add_secret(token)
        try:
            await self.http.request("POST", self.config.revoke_url, data={"token": token})
        except InvalidRequest as exc:
            if exc.platform_code != "invalid_token":  # already revoked is fine: the goal is reached
                raise

    def _tokens_from(self, body: Any, *, previous_refresh: str | None) -> TokenSet:
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise InvalidRequest("Google token endpoint answered without an access_token")
        access = body["access_token"]
        refresh = body.get("refresh_token") or previous_refresh
        self.http.add_secret(access)
        self.http.add_secret(refresh)
        expires_in = body.get("expires_in")
        return TokenSet(
            access_token=access,
            refresh_token=refresh,
            expires_at=datetime.now(UTC) + timedelta(seconds=int(expires_in)) if expires_in else None,
            scopes=str(body.get("scope") or "").split(),
        )
