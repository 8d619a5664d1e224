"""LinkedIn OAuth 2.0, 3-legged: member authorization, code exchange, refresh, revocation.

What is LinkedIn-specific:

* ``/oauth/v2/authorization`` takes the scopes space-separated; the member comes back with
  ``code`` and ``state``, or ``error=user_cancelled_authorize`` (or ``user_cancelled_login``).
* The token endpoint takes a form with the client credentials in the body (not HTTP Basic) and
  answers ``access_token``/``expires_in`` (60 days) plus, for apps LinkedIn enabled for it,
  ``refresh_token``/``refresh_token_expires_in``. A refresh returns a *new access token and the
  same refresh token*, whose lifetime keeps counting down from the original grant (365 days):
  after that the member must authorize again, which is why the credential's expiry is the
  refresh token's.
* No PKCE for server-side (confidential) web apps: the signed, single-use ``state`` of the
  Omnify flow is the CSRF protection; ``code_verifier`` is accepted and ignored.
* A refused refresh answers 400 ``invalid_request``/``invalid_grant`` ("... invalid, expired
  or revoked"): the grant is gone, so it becomes :class:`AuthRevoked`.

The exchange is never retried (a code is single-use).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from omnify.integrations.base import AuthRevoked, InvalidRequest, OAuthStart, TokenSet
from omnify.integrations.http import ConnectorHttp

DEFAULT_OAUTH_URL = "https://www.linkedin.com/oauth/v2"


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def token_set_from(body: Any, *, previous: TokenSet | None = None, now: datetime | None = None) -> TokenSet:
    """A TokenSet from a token-endpoint answer; a refresh without a refresh token keeps ours."""
    if not isinstance(body, Mapping) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise InvalidRequest("LinkedIn token endpoint answered without an access_token")
    moment = now or datetime.now(UTC)
    expires_in = _int_or_none(body.get("expires_in"))
    refresh_in = _int_or_none(body.get("refresh_token_expires_in"))
    refresh = body.get("refresh_token") or (previous.refresh_token if previous else None)
    extra: dict[str, Any] = dict(previous.extra) if previous else {}
    if refresh_in is not None:
        extra["refresh_token_expires_at"] = (moment + timedelta(seconds=refresh_in)).isoformat()
    raw_scope = body.get("scope")
    if isinstance(raw_scope, str) and raw_scope:
        scopes = [s for s in raw_scope.replace(",", " ").split() if s]
    else:
        scopes = list(previous.scopes) if previous else []
    return TokenSet(
        access_token=body["access_token"],
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_at=moment + timedelta(seconds=expires_in) if expires_in else None,
        scopes=scopes,
        extra=extra,
    )


class LinkedInOAuth:
    """Implements :class:`omnify.integrations.http.OAuthFlow` through the connector's HTTP stack."""

    def __init__(self, http: ConnectorHttp, *, client_id: str, client_secret: str, oauth_url: str,
                 scopes: tuple[str, ...]) -> None:
        self.http = http
        self.client_id = client_id
        self.client_secret = client_secret
        self.oauth_url = oauth_url.rstrip("/")
        self.scopes = scopes
        http.add_secret(client_secret)

    def authorize_url(self, *, redirect_uri: str, state: str) -> OAuthStart:
        query = urlencode({"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                           "state": state, "scope": " ".join(self.scopes)}, quote_via=quote)
        return OAuthStart(url=f"{self.oauth_url}/authorization?{query}", state=state, code_verifier=None)

    async def _token(self, form: dict[str, str], *, retry: bool, previous: TokenSet | None) -> TokenSet:
        body = await self.http.post_json(f"{self.oauth_url}/accessToken", data=form, retry=retry)
        tokens = token_set_from(body, previous=previous)
        self.http.add_secret(tokens.access_token)
        self.http.add_secret(tokens.refresh_token)
        return tokens

    async def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str | None = None) -> TokenSet:
        self.http.add_secret(code)
        return await self._token({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                                  "client_id": self.client_id, "client_secret": self.client_secret},
                                 retry=False, previous=None)

    async def refresh(self, tokens: TokenSet) -> TokenSet:
        if not tokens.refresh_token:
            raise AuthRevoked("this LinkedIn connection has no refresh token: the member must authorize again")
        self.http.add_secret(tokens.refresh_token)
        try:
            return await self._token({"grant_type": "refresh_token", "refresh_token": tokens.refresh_token,
                                      "client_id": self.client_id, "client_secret": self.client_secret},
                                     retry=True, previous=tokens)
        except InvalidRequest as exc:
            if exc.platform_code in ("invalid_grant", "invalid_request"):
                raise AuthRevoked(str(exc), status=exc.status, platform_code=exc.platform_code) from None
            raise

    async def revoke(self, tokens: TokenSet) -> None:
        """Revoking the access token ends the member's grant to the app (its refresh token too)."""
        self.http.add_secret(tokens.access_token)
        try:
            await self.http.request("POST", f"{self.oauth_url}/revoke",
                                    data={"client_id": self.client_id, "client_secret": self.client_secret,
                                          "token": tokens.access_token})
        except InvalidRequest as exc:
            if exc.platform_code not in ("invalid_token", "invalid_request"):  # already gone: goal reached
                raise
