"""Facebook Login for the Marketing API: dialog, code exchange, long-lived token, revocation.

Meta has no refresh tokens. The dance is: the dialog returns a ``code``; the code buys a
short-lived user token (hours); ``grant_type=fb_exchange_token`` turns a *still valid* token
into a long-lived one (about 60 days). "Refresh" is therefore that same exchange done before
expiry (the scheduled refresh task runs well ahead of ``expires_at``); once a token has
expired, Meta refuses the exchange and only a new login helps, which is why :meth:`refresh`
turns an expired-token refusal into :class:`AuthRevoked` (connection needs re-auth).

Meta does not support PKCE for server-side web login; ``state`` carries the CSRF
protection and is the caller's (Omnify's signed state).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from omnify.integrations.base import AuthExpired, AuthRevoked, InvalidRequest, OAuthStart, TokenSet
from omnify.integrations.http import ConnectorHttp
from omnify.integrations.meta.mapping import API_VERSION, DEFAULT_CONVERSION_ACTIONS

DEFAULT_SCOPES = ("ads_read", "ads_management", "business_management")


@dataclass(frozen=True, slots=True)
class MetaConfig:
    """Where Meta lives and who we are to it. Production values come from settings;
    tests and the demo point ``graph_url``/``dialog_url`` at the sandbox."""

    app_id: str
    app_secret: str
    graph_url: str = "https://graph.facebook.com"
    dialog_url: str = "https://www.facebook.com"
    api_version: str = API_VERSION
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    conversion_actions: tuple[str, ...] = DEFAULT_CONVERSION_ACTIONS
    page_size: int = 100
    insights_page_size: int = 500
    insights_window_days: int = 31  # Meta rejects huge level=ad daily requests; chunk by month
    throttle_soft_limit_pct: float = 90.0  # start pacing above this BUC usage
    throttle_max_pause: float = 60.0  # pause at 100% usage when Meta gives no regain estimate
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, *parts: str) -> str:
        return "/" + "/".join((self.api_version, *parts))


def appsecret_proof(app_secret: str, access_token: str) -> str:
    """HMAC-SHA256(token, key=app secret): proves a call comes from our server, so a leaked
    token alone cannot be used by someone else against our app."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


class MetaOAuth:
    def __init__(self, config: MetaConfig, http: ConnectorHttp) -> None:
        self.config = config
        self.http = http
        http.add_secret(config.app_secret)

    def authorize_url(self, *, redirect_uri: str, state: str) -> OAuthStart:
        query = urlencode({
            "client_id": self.config.app_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "scope": ",".join(self.config.scopes),
            "response_type": "code",
        })
        return OAuthStart(url=f"{self.config.dialog_url}{self.config.path('dialog', 'oauth')}?{query}", state=state)

    async def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str | None = None) -> TokenSet:
        """Code -> short-lived token -> long-lived token. Not retried: a code is single-use."""
        if code_verifier is not None:
            raise InvalidRequest("Meta login does not use PKCE; do not send a code_verifier")
        self.http.add_secret(code)
        short = await self.http.get_json(
            self.config.path("oauth", "access_token"),
            params={"client_id": self.config.app_id, "client_secret": self.config.app_secret,
                    "redirect_uri": redirect_uri, "code": code},
            retry=False,
        )
        short_token = self._token_from(short)
        tokens = await self._exchange(short_token)
        tokens.scopes = await self._granted_scopes(tokens.access_token)
        return tokens

    async def refresh(self, tokens: TokenSet) -> TokenSet:
        try:
            fresh = await self._exchange(tokens.access_token)
        except AuthExpired as exc:
            raise AuthRevoked(
                "Meta token expired before it was refreshed; the user must log in again",
                status=exc.status, platform_code=exc.platform_code,
            ) from None
        fresh.scopes = list(tokens.scopes)
        return fresh

    async def revoke(self, tokens: TokenSet) -> None:
        """DELETE /me/permissions de-authorizes the app for that user (all their tokens)."""
        self.http.add_secret(tokens.access_token)
        await self.http.request(
            "DELETE", self.config.path("me", "permissions"),
            headers={"Authorization": f"Bearer {tokens.access_token}"},
            params={"appsecret_proof": appsecret_proof(self.config.app_secret, tokens.access_token)},
        )

    async def _exchange(self, access_token: str) -> TokenSet:
        self.http.add_secret(access_token)
        body = await self.http.get_json(
            self.config.path("oauth", "access_token"),
            params={"grant_type": "fb_exchange_token", "client_id": self.config.app_id,
                    "client_secret": self.config.app_secret, "fb_exchange_token": access_token},
        )
        token = self._token_from(body)
        expires_in = body.get("expires_in")
        expires_at = (
            datetime.now(UTC) + timedelta(seconds=int(expires_in)) if isinstance(expires_in, int | str) and
            str(expires_in).isdigit() else None
        )
        return TokenSet(access_token=token, expires_at=expires_at, extra={"token_type": body.get("token_type")})

    async def _granted_scopes(self, access_token: str) -> list[str]:
        body = await self.http.get_json(
            self.config.path("me", "permissions"),
            headers={"Authorization": f"Bearer {access_token}"},
            params={"appsecret_proof": appsecret_proof(self.config.app_secret, access_token)},
        )
        data = body.get("data") if isinstance(body, dict) else None
        return [str(p["permission"]) for p in data or [] if isinstance(p, dict) and p.get("status") == "granted"]

    def _token_from(self, body: Any) -> str:
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise InvalidRequest("Meta token endpoint answered without an access_token")
        self.http.add_secret(token)
        return token
