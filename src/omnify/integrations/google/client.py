"""Google Ads API (REST) connector (implements :class:`omnify.integrations.base.AdConnector`).

Reads go through ``googleAds:searchStream`` with GAQL (one request per query, no page
tokens; Google streams batches of up to 10,000 rows). Accounts reached through a manager
(MCC) need the manager's id in ``login-customer-id``: :meth:`list_ad_accounts` walks each
accessible manager's ``customer_client`` tree and remembers which manager leads to which
account, and a connector used without listing first discovers it lazily.
"""

from __future__ import annotations

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
from omnify.integrations.google import mapping
from omnify.integrations.google.oauth import GoogleConfig, GoogleOAuth
from omnify.integrations.http import CircuitBreakers, ConnectorHttp, HttpObserver, OAuthConnector, RetryPolicy

_MUTATE_SERVICE = {Level.CAMPAIGN: "campaigns", Level.AD_GROUP: "adGroups", Level.AD: "adGroupAds"}


def _digits(customer_id: str) -> str:
    """Google shows ids as 123-456-7890; the API wants digits only."""
    return customer_id.replace("-", "").strip()


class GoogleAdsConnector(OAuthConnector):
    platform = Platform.GOOGLE_ADS

    def __init__(
        self,
        config: GoogleConfig,
        tokens: TokenSet | None = None,
        *,
        retry: RetryPolicy | None = None,
        breakers: CircuitBreakers | None = None,
        observer: HttpObserver | None = None,
        timeout: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._http = ConnectorHttp(
            platform=self.platform.value,
            base_url=config.ads_url,
            error_mapper=mapping.error_for_response,
            retry=retry,
            breakers=breakers,
            observer=observer,
            timeout=timeout,
            transport=transport,
        )
        self.oauth = GoogleOAuth(config, self.http)
        self._tokens: TokenSet | None = None
        self._login_for: dict[str, str | None] = {}
        self._currency: dict[str, str] = {}
        self._discovered = False
        if tokens is not None:
            self.with_tokens(tokens)

    def with_tokens(self, tokens: TokenSet) -> GoogleAdsConnector:
        self._tokens = tokens
        self.http.add_secret(tokens.access_token)
        self.http.add_secret(tokens.refresh_token)
        return self

    # -- plumbing --------------------------------------------------------------------
    def _headers(self, login_customer_id: str | None) -> dict[str, str]:
        if self.tokens is None:
            raise AuthExpired("no Google token bound to this connector")
        headers = {"Authorization": f"Bearer {self.tokens.access_token}",
                   "developer-token": self.config.developer_token}
        if login_customer_id:
            headers["login-customer-id"] = _digits(login_customer_id)
        return headers

    async def _search(self, customer_id: str, query: str, *, login: str | None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        async for row in self._stream(customer_id, query, login=login):
            rows.append(row)
        return rows

    async def _stream(self, customer_id: str, query: str, *, login: str | None) -> AsyncIterator[dict[str, Any]]:
        cid = _digits(customer_id)
        batches = await self.http.post_json(
            self.config.path(f"customers/{cid}/googleAds:searchStream"),
            json={"query": query}, headers=self._headers(login), circuit=cid,
        )
        if isinstance(batches, Mapping):  # a proxy that unwraps single batches
            batches = [batches]
        for batch in batches or []:
            for row in batch.get("results") or []:
                yield row

    async def _login(self, customer_id: str) -> str | None:
        cid = _digits(customer_id)
        if cid not in self._login_for and not self._discovered:
            if self.config.login_customer_id:
                return _digits(self.config.login_customer_id)
            await self.list_ad_accounts()
        return self._login_for.get(cid, self.config.login_customer_id)

    async def _account_search(self, customer_id: str, query: str) -> list[dict[str, Any]]:
        return await self._search(customer_id, query, login=await self._login(customer_id))

    async def currency(self, customer_id: str) -> str:
        cid = _digits(customer_id)
        if cid not in self._currency:
            rows = await self._account_search(cid, mapping.gaql(["customer.currency_code"], "customer"))
            self._currency[cid] = str(rows[0]["customer"]["currencyCode"]) if rows else "USD"
        return self._currency[cid]

    # -- reads -------------------------------------------------------------------------
    async def verify(self) -> dict[str, Any]:
        body = await self.http.get_json(self.config.path("customers:listAccessibleCustomers"),
                                        headers=self._headers(None))
        names = body.get("resourceNames") or []
        return {"platform": self.platform.value, "accessible_customers": [mapping.last_id(n) for n in names]}

    async def list_ad_accounts(self) -> list[AdAccount]:
        accessible = (await self.verify())["accessible_customers"]
        accounts: dict[str, AdAccount] = {}
        for cid in accessible:
            rows = await self._search(cid, mapping.gaql(mapping.CUSTOMER_FIELDS, "customer"), login=cid)
            if not rows:
                continue
            customer = rows[0]["customer"]
            if customer.get("manager"):
                clients = await self._search(
                    cid,
                    mapping.gaql(mapping.CUSTOMER_CLIENT_FIELDS, "customer_client",
                                 ["customer_client.level <= 1", "customer_client.manager = FALSE"]),
                    login=cid,
                )
                for row in clients:
                    cc = row["customerClient"]
                    client_id = str(cc["id"])
                    self._login_for.setdefault(client_id, cid)
                    accounts.setdefault(client_id, mapping.account_from(cc))
            else:
                self._login_for[cid] = None
                accounts[cid] = mapping.account_from(customer)
        for acc in accounts.values():
            self._currency[acc.external_id] = acc.currency
        self._discovered = True
        return list(accounts.values())

    async def campaigns(self, account_id: str) -> AsyncIterator[Campaign]:
        cid = _digits(account_id)
        currency = await self.currency(cid)
        query = mapping.gaql(mapping.CAMPAIGN_FIELDS, "campaign", ["campaign.status != 'REMOVED'"])
        async for row in self._stream(cid, query, login=await self._login(cid)):
            yield mapping.campaign_from(row, cid, currency)

    async def ad_groups(self, account_id: str) -> AsyncIterator[AdGroup]:
        cid = _digits(account_id)
        query = mapping.gaql(mapping.AD_GROUP_FIELDS, "ad_group", ["ad_group.status != 'REMOVED'"])
        async for row in self._stream(cid, query, login=await self._login(cid)):
            yield mapping.ad_group_from(row, cid)

    async def ads(self, account_id: str) -> AsyncIterator[Ad]:
        cid = _digits(account_id)
        query = mapping.gaql(mapping.AD_FIELDS, "ad_group_ad", ["ad_group_ad.status != 'REMOVED'"])
        async for row in self._stream(cid, query, login=await self._login(cid)):
            yield mapping.ad_from(row, cid)

    async def daily_metrics(self, account_id: str, since: date, until: date) -> AsyncIterator[DailyMetric]:
        if since > until:
            raise InvalidRequest(f"since ({since}) is after until ({until})")
        cid = _digits(account_id)
        currency = await self.currency(cid)
        login = await self._login(cid)
        window = timedelta(days=max(1, self.config.metrics_window_days) - 1)
        start = since
        while start <= until:
            stop = min(start + window, until)
            query = mapping.gaql(mapping.METRIC_FIELDS, "ad_group_ad",
                                 [f"segments.date BETWEEN '{start.isoformat()}' AND '{stop.isoformat()}'"])
            async for row in self._stream(cid, query, login=login):
                yield mapping.metric_from(row, cid, currency)
            start = stop + timedelta(days=1)

    # -- writes ------------------------------------------------------------------------
    async def _current(self, cid: str, level: Level, entity_id: str) -> dict[str, Any]:
        if not entity_id.isdigit():
            raise InvalidRequest(f"not a Google Ads id: {entity_id!r}")
        if level == Level.CAMPAIGN:
            q = mapping.gaql(["campaign.id", "campaign.status", "campaign.campaign_budget",
                              "campaign_budget.amount_micros", "campaign_budget.explicitly_shared"], "campaign",
                             [f"campaign.id = {entity_id}"])
        elif level == Level.AD_GROUP:
            q = mapping.gaql(["ad_group.id", "ad_group.status"], "ad_group", [f"ad_group.id = {entity_id}"])
        else:
            q = mapping.gaql(["ad_group_ad.ad.id", "ad_group_ad.status", "ad_group.id"], "ad_group_ad",
                             [f"ad_group_ad.ad.id = {entity_id}"])
        rows = await self._account_search(cid, q)
        if not rows:
            raise InvalidRequest(f"{level.value} {entity_id} not found in customer {cid}")
        return rows[0]

    async def _mutate(self, cid: str, service: str, update: dict[str, Any], mask: str) -> None:
        await self.http.post_json(
            self.config.path(f"customers/{cid}/{service}:mutate"),
            json={"operations": [{"update": update, "updateMask": mask}], "partialFailure": False},
            headers=self._headers(await self._login(cid)), circuit=cid,
        )

    async def read_entity(self, account_id: str, level: Level, entity_id: str) -> dict[str, Any]:
        """Status now, and the campaign budget's amount (budgets live on campaigns only)."""
        cid = _digits(account_id)
        row = await self._current(cid, level, entity_id)
        budget: int | None = None
        if level == Level.CAMPAIGN:
            status = row["campaign"]["status"]
            amount = (row.get("campaignBudget") or {}).get("amountMicros")
            if amount is not None:
                budget = mapping.micros_to_minor(amount, await self.currency(cid))
        elif level == Level.AD_GROUP:
            status = row["adGroup"]["status"]
        else:
            status = row["adGroupAd"]["status"]
        return {"status": mapping._status(status).value, "daily_budget_minor": budget}

    async def set_status(self, account_id: str, level: Level, entity_id: str, status: EntityStatus) -> ActionResult:
        if status not in mapping.STATUS_TO_GOOGLE:
            raise InvalidRequest(f"cannot set status {status.value} on Google Ads (ENABLED/PAUSED only)")
        cid = _digits(account_id)
        row = await self._current(cid, level, entity_id)
        if level == Level.CAMPAIGN:
            before, rn = row["campaign"]["status"], f"customers/{cid}/campaigns/{entity_id}"
        elif level == Level.AD_GROUP:
            before, rn = row["adGroup"]["status"], f"customers/{cid}/adGroups/{entity_id}"
        else:
            group_id = row["adGroup"]["id"]
            before, rn = row["adGroupAd"]["status"], f"customers/{cid}/adGroupAds/{group_id}~{entity_id}"
        await self._mutate(cid, _MUTATE_SERVICE[level], {"resourceName": rn,
                                                          "status": mapping.STATUS_TO_GOOGLE[status]}, "status")
        return ActionResult(level=level, entity_external_id=entity_id,
                            before={"status": mapping._status(before).value}, after={"status": status.value})

    async def set_daily_budget(
        self, account_id: str, level: Level, entity_id: str, amount_minor: int
    ) -> ActionResult:
        if level != Level.CAMPAIGN:
            raise InvalidRequest("Google Ads budgets live on campaigns (campaign_budget)")
        if amount_minor <= 0:
            raise InvalidRequest("daily budget must be a positive amount of minor units")
        cid = _digits(account_id)
        currency = await self.currency(cid)
        row = await self._current(cid, level, entity_id)
        budget = row.get("campaignBudget") or {}
        if budget.get("explicitlyShared"):
            raise InvalidRequest("this campaign uses a shared budget; changing it would affect other campaigns")
        budget_rn = row["campaign"]["campaignBudget"]
        before = mapping.micros_to_minor(budget.get("amountMicros"), currency)
        await self._mutate(cid, "campaignBudgets",
                           {"resourceName": budget_rn,
                            "amountMicros": str(mapping.minor_to_micros(amount_minor, currency))},
                           "amount_micros")
        return ActionResult(level=level, entity_external_id=entity_id,
                            before={"daily_budget_minor": before}, after={"daily_budget_minor": amount_minor})
