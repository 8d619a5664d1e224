"""TikTok API for Business OAuth: advertiser authorization URL, auth_code exchange, refresh, revoke.

TikTok's flavour of OAuth differs from RFC 6749 in ways that matter to the code:

* the authorization page is ``/portal/auth?app_id=..&state=..&redirect_uri=..`` and the
  callback carries ``auth_code`` (and the same value again as ``code``) plus ``state``;
* token endpoints take a JSON body ``{app_id, secret, auth_code | refresh_token}`` instead of
  a form with client credentials, and answer in the usual ``{code, message, data}`` envelope;
* there is no PKCE, so the state (signed and bound to user/org/client by the Omnify OAuth
  flow) is the only CSRF protection; ``code_verifier`` is accepted and ignored to satisfy the
  connector protocol.

The exchange is never retried (an auth_code is single-use: a retry after a lost response can
only fail and would hide the real error).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from omnify.integrations.base import AuthRevoked, InvalidRequest, OAuthStart, TokenSet
from omnify.integrations.http import ConnectorHttp
from omnify.integrations.tiktok.mapping import API_PREFIX

ACCESS_TOKEN_PATH = f"{API_PREFIX}/oauth2/access_token/"
REFRESH_TOKEN_PATH = f"{API_PREFIX}/oauth2/refresh_token/"
REVOKE_TOKEN_PATH = f"{API_PREFIX}/oauth2/revoke_token/"


def authorize_url(*, auth_url: str, app_id: str, redirect_uri: str, state: str) -> OAuthStart:
    query = urlencode({"app_id": app_id, "state": state, "redirect_uri": redirect_uri})
    sep = "&" if "?" in auth_url else "?"
    return OAuthStart(url=f"{auth_url}{sep}{query}", state=state, code_verifier=None)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def token_set_from(
    data: Mapping[str, Any], *, now: datetime | None = None, previous: TokenSet | None = None
) -> TokenSet:
    """Build a TokenSet from a token-endpoint ``data`` object.

    Field names differ between TikTok's doc pages and SDK versions (``expires_in`` vs
    ``access_token_expire_in``, ``refresh_token_expires_in`` vs ``refresh_token_expire_in``);
    both are read. A response without a new refresh token keeps the previous one.
    """
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise InvalidRequest("TikTok token response has no access_token")
    now = now or datetime.now(UTC)
    expires_in = _int_or_none(data.get("expires_in", data.get("access_token_expire_in")))
    refresh_in = _int_or_none(data.get("refresh_token_expires_in", data.get("refresh_token_expire_in")))
    refresh = data.get("refresh_token") or (previous.refresh_token if previous else None)
    extra: dict[str, Any] = dict(previous.extra) if previous else {}
    if data.get("advertiser_ids") is not None:
        extra["advertiser_ids"] = [str(a) for a in data["advertiser_ids"]]
    if refresh_in is not None:
        extra["refresh_token_expires_at"] = (now + timedelta(seconds=refresh_in)).isoformat()
    if data.get("open_id"):
        extra["open_id"] = data["open_id"]
    scopes_raw = data.get("scope")
    if isinstance(scopes_raw, list):
        scopes = [str(s) for s in scopes_raw]
    elif isinstance(scopes_raw, str) and scopes_raw:
        scopes = [s for s in scopes_raw.replace(" ", ",").split(",") if s]
    else:
        scopes = list(previous.scopes) if previous else []
    return TokenSet(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
        scopes=scopes,
        extra=extra,
    )


class TikTokOAuth:
    """Token endpoint calls, through the connector's HTTP stack (retries, breaker, redaction)."""

    def __init__(self, http: ConnectorHttp, *, app_id: str, secret: str) -> None:
        self._http = http
        self._app_id = app_id
        self._secret = secret
        http.add_secret(secret)

    async def _post(self, path: str, body: dict[str, Any], *, retry: bool) -> Mapping[str, Any]:
        payload = await self._http.post_json(path, json=body, retry=retry)
        data = payload.get("data") if isinstance(payload, Mapping) else None
        if not isinstance(data, Mapping):
            raise InvalidRequest(f"POST {path}: response has no data object")
        return data

    async def exchange(self, auth_code: str) -> TokenSet:
        self._http.add_secret(auth_code)
        data = await self._post(
            ACCESS_TOKEN_PATH,
            {"app_id": self._app_id, "secret": self._secret, "auth_code": auth_code},
            retry=False,
        )
        tokens = token_set_from(data)
        self._http.add_secret(tokens.access_token)
        self._http.add_secret(tokens.refresh_token)
        return tokens

    async def refresh(self, tokens: TokenSet) -> TokenSet:
        if not tokens.refresh_token:
            raise AuthRevoked("TikTok connection has no refresh token: the advertiser must authorize again")
        self._http.add_secret(tokens.refresh_token)
        data = await self._post(
            REFRESH_TOKEN_PATH,
            {
                "app_id": self._app_id,
                "secret": self._secret,
                "refresh_token": tokens.refresh_token,
                "grant_type": "refresh_token",
            },
            retry=True,  # refreshing twice is harmless: TikTok keeps the refresh token valid
        )
        fresh = token_set_from(data, previous=tokens)
        self._http.add_secret(fresh.access_token)
        self._http.add_secret(fresh.refresh_token)
        return fresh

    async def revoke(self, tokens: TokenSet) -> None:
        self._http.add_secret(tokens.access_token)
        await self._post(
            REVOKE_TOKEN_PATH,
            {"app_id": self._app_id, "secret": self._secret, "access_token": tokens.access_token},
            retry=True,
        )
