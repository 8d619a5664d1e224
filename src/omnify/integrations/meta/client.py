"""Meta Marketing API connector (implements :class:`omnify.integrations.base.AdConnector`).

Transport choices: the token travels in the ``Authorization`` header, never in the URL
(URLs end up in proxies' and libraries' logs), with ``appsecret_proof`` as a parameter.
Paging follows ``paging.cursors.after`` while ``paging.next`` is present - the same rule as
the official SDK - rather than fetching ``paging.next`` itself, whose URL may embed a token.
Insights are requested per month-sized window (``insights_window_days``) so a year of
``level=ad, time_increment=1`` never becomes one request Meta would refuse as too large.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from datetime import date, timedelta
from typing import Any

import httpx

from omnify.integrations.base import (
    ActionResult,
    Ad,
    AdAccount,
    AdGroup,
    AuthExpired,
    Campaign,
    DailyMetric,
    EntityStatus,
    InvalidRequest,
    Level,
    Platform,
    TokenSet,
)
from omnify.integrations.http import CircuitBreakers, ConnectorHttp, HttpObserver, OAuthConnector, RetryPolicy
from omnify.integrations.meta import mapping
from omnify.integrations.meta.oauth import MetaConfig, MetaOAuth, appsecret_proof

_MAX_PAGES = 100_000  # a cursor that never ends is a platform bug; do not loop forever


class MetaAdsConnector(OAuthConnector):
    platform = Platform.META_ADS

    def __init__(
        self,
        config: MetaConfig,
        tokens: TokenSet | None = None,
        *,
        retry: RetryPolicy | None = None,
        breakers: CircuitBreakers | None = None,
        observer: HttpObserver | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._http = ConnectorHttp(
            platform=self.platform.value,
            base_url=config.graph_url,
            error_mapper=mapping.error_for_response,
            throttle_hint=lambda r: mapping.throttle_hint(
                r, soft_limit_pct=config.throttle_soft_limit_pct, max_pause=config.throttle_max_pause
            ),
            retry=retry,
            breakers=breakers,
            observer=observer,
            timeout=timeout,
            transport=transport,
        )
        self.oauth = MetaOAuth(config, self.http)
        self._tokens: TokenSet | None = None
        if tokens is not None:
            self.with_tokens(tokens)

    def with_tokens(self, tokens: TokenSet) -> MetaAdsConnector:
        self._tokens = tokens
        self.http.add_secret(tokens.access_token)
        return self

    # -- plumbing --------------------------------------------------------------------
    def _auth(self) -> tuple[dict[str, str], dict[str, str]]:
        if self.tokens is None:
            raise AuthExpired("no Meta token bound to this connector")
        token = self.tokens.access_token
        return ({"Authorization": f"Bearer {token}"},
                {"appsecret_proof": appsecret_proof(self.config.app_secret, token)})

    async def _get(self, path: str, params: Mapping[str, Any], circuit: str | None) -> Any:
        headers, auth_params = self._auth()
        return await self.http.get_json(path, params={**params, **auth_params}, headers=headers, circuit=circuit)

    async def _post(self, path: str, data: Mapping[str, Any], circuit: str | None) -> Any:
        headers, auth_params = self._auth()
        return await self.http.post_json(path, data={**data, **auth_params}, headers=headers, circuit=circuit)

    async def _paged(self, path: str, params: Mapping[str, Any], circuit: str | None) -> AsyncIterator[dict[str, Any]]:
        query = dict(params)
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            body = await self._get(path, query, circuit)
            for item in body.get("data") or []:
                yield item
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                return
            if after in seen:
                raise InvalidRequest(f"GET {path}: Graph returned the same paging cursor twice")
            seen.add(after)
            query["after"] = after
        raise InvalidRequest(f"GET {path}: more than {_MAX_PAGES} pages")

    @staticmethod
    def _act(account_id: str) -> str:
        return f"act_{mapping.account_id_bare(account_id)}"

    # -- reads -------------------------------------------------------------------------
    async def verify(self) -> dict[str, Any]:
        me = await self._get(self.config.path("me"), {"fields": "id,name"}, None)
        perms = await self._get(self.config.path("me", "permissions"), {}, None)
        granted = [p["permission"] for p in perms.get("data") or [] if p.get("status") == "granted"]
        missing = sorted(set(self.config.scopes) - set(granted))
        return {"platform": self.platform.value, "user_id": me.get("id"), "name": me.get("name"),
                "scopes": granted, "missing_scopes": missing}

    async def list_ad_accounts(self) -> list[AdAccount]:
        return [mapping.account_from(item) async for item in self._paged(
            self.config.path("me", "adaccounts"),
            {"fields": mapping.ACCOUNT_FIELDS, "limit": self.config.page_size}, None)]

    async def campaigns(self, account_id: str) -> AsyncIterator[Campaign]:
        bare = mapping.account_id_bare(account_id)
        async for item in self._paged(self.config.path(self._act(bare), "campaigns"),
                                      {"fields": mapping.CAMPAIGN_FIELDS, "limit": self.config.page_size}, bare):
            yield mapping.campaign_from(item, bare)

    async def ad_groups(self, account_id: str) -> AsyncIterator[AdGroup]:
        bare = mapping.account_id_bare(account_id)
        async for item in self._paged(self.config.path(self._act(bare), "adsets"),
                                      {"fields": mapping.ADSET_FIELDS, "limit": self.config.page_size}, bare):
            yield mapping.ad_group_from(item, bare)

    async def ads(self, account_id: str) -> AsyncIterator[Ad]:
        bare = mapping.account_id_bare(account_id)
        async for item in self._paged(self.config.path(self._act(bare), "ads"),
                                      {"fields": mapping.AD_FIELDS, "limit": self.config.page_size}, bare):
            yield mapping.ad_from(item, bare)

    async def account_currency(self, account_id: str) -> str:
        bare = mapping.account_id_bare(account_id)
        body = await self._get(self.config.path(self._act(bare)), {"fields": "currency"}, bare)
        return str(body.get("currency") or "USD")

    async def daily_metrics(self, account_id: str, since: date, until: date) -> AsyncIterator[DailyMetric]:
        if since > until:
            raise InvalidRequest(f"since ({since}) is after until ({until})")
        bare = mapping.account_id_bare(account_id)
        currency: str | None = None
        window = timedelta(days=max(1, self.config.insights_window_days) - 1)
        start = since
        while start <= until:
            stop = min(start + window, until)
            params = {
                "level": "ad",
                "time_increment": 1,
                "time_range": json.dumps({"since": start.isoformat(), "until": stop.isoformat()}),
                "fields": mapping.INSIGHTS_FIELDS,
                "limit": self.config.insights_page_size,
            }
            async for row in self._paged(self.config.path(self._act(bare), "insights"), params, bare):
                if not row.get("account_currency") and currency is None:
                    currency = await self.account_currency(bare)
                yield mapping.metric_from(row, account_id=bare, currency=currency or "USD",
                                          conversion_actions=self.config.conversion_actions)
            start = stop + timedelta(days=1)

    # -- writes ------------------------------------------------------------------------
    async def _owned(self, account_id: str, entity_id: str, fields: str) -> dict[str, Any]:
        """Read the entity first: it proves it belongs to this account (a write must never
        cross to another client's account by a mistyped id) and records the `before`."""
        bare = mapping.account_id_bare(account_id)
        node = await self._get(self.config.path(entity_id), {"fields": f"id,account_id,{fields}"}, bare)
        if mapping.account_id_bare(str(node.get("account_id") or "")) != bare:
            raise InvalidRequest(f"{entity_id} does not belong to ad account {bare}")
        return dict(node)

    async def read_entity(self, account_id: str, level: Level, entity_id: str) -> dict[str, Any]:
        """Status and daily budget now (ads have no budget on Meta: ``None``)."""
        node = await self._owned(account_id, entity_id, "status" if level == Level.AD else "status,daily_budget")
        return {"status": mapping.status_from(node).value,
                "daily_budget_minor": None if level == Level.AD else mapping.budget_minor(node.get("daily_budget"))}

    async def set_status(self, account_id: str, level: Level, entity_id: str, status: EntityStatus) -> ActionResult:
        if status not in mapping.STATUS_TO_META:
            raise InvalidRequest(f"cannot set status {status.value} on Meta")
        bare = mapping.account_id_bare(account_id)
        node = await self._owned(bare, entity_id, "status")
        before = mapping.status_from(node)
        await self._post(self.config.path(entity_id), {"status": mapping.STATUS_TO_META[status]}, bare)
        return ActionResult(level=level, entity_external_id=entity_id,
                            before={"status": before.value}, after={"status": status.value})

    async def set_daily_budget(
        self, account_id: str, level: Level, entity_id: str, amount_minor: int
    ) -> ActionResult:
        if level == Level.AD:
            raise InvalidRequest("Meta ads have no budget; set it on the ad set or campaign")
        if amount_minor <= 0:
            raise InvalidRequest("daily budget must be a positive amount of minor units")
        bare = mapping.account_id_bare(account_id)
        node = await self._owned(bare, entity_id, "daily_budget")
        before = mapping.budget_minor(node.get("daily_budget"))
        await self._post(self.config.path(entity_id), {"daily_budget": str(amount_minor)}, bare)
        return ActionResult(level=level, entity_external_id=entity_id,
                            before={"daily_budget_minor": before}, after={"daily_budget_minor": amount_minor})
