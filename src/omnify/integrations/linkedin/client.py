"""LinkedIn Marketing API connector (implements :class:`omnify.integrations.base.AdConnector`).

Every call goes to ``{api_url}/rest/...`` with the headers LinkedIn's versioned APIs require:
``LinkedIn-Version: YYYYMM`` (pinned in :mod:`omnify.integrations.linkedin.version`),
``X-Restli-Protocol-Version: 2.0.0`` and the member's bearer token. What else is
LinkedIn-specific, and why the code looks the way it does:

* Query strings are Rest.li 2.0 (:mod:`.restli`), built here and sent verbatim.
* Object finders (ad accounts, campaign groups, campaigns, creatives) page with
  ``pageSize``/``pageToken`` and answer ``metadata.nextPageToken`` until the last page;
  ``adAccountUsers`` still pages with ``start``/``count`` and ``paging.total``.
* ``adAnalytics`` (the ``analytics`` finder, ``pivot=CREATIVE``, ``timeGranularity=DAILY``)
  has no paging: it takes at most 20 ``fields`` per call and cuts its answer at 15,000
  elements. So metrics are requested in chunks that fit (merged on creative and day), and a
  window whose answer reaches the cap is split in two and read again until every part fits.
* Writes are Rest.li ``PARTIAL_UPDATE``: ``POST`` with ``X-RestLi-Method: PARTIAL_UPDATE`` and
  ``{"patch": {"$set": {...}}}``, answered 204. Campaign status and daily budget, creative
  ``intendedStatus``.
* An expired access token (401 ``EXPIRED_ACCESS_TOKEN``) is refreshed once and the call
  replayed; the fresh TokenSet goes to ``on_tokens`` so the caller stores it. Tokens are also
  refreshed ``refresh_skew`` seconds before they expire.
* Daily quotas (429 "... DAY limit ...") come back as :class:`RateLimited` waiting until
  midnight UTC, so the sync defers itself instead of hammering a closed quota.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from omnify.integrations.base import (
    ActionResult,
    Ad,
    AdAccount,
    AdGroup,
    Campaign,
    DailyMetric,
    EntityStatus,
    InvalidRequest,
    Level,
    Platform,
    TokenSet,
)
from omnify.integrations.http import (
    CircuitBreakers,
    ConnectorHttp,
    HttpObserver,
    OAuthConnector,
    RetryPolicy,
    TokenCallback,
    TokenKeeper,
)
from omnify.integrations.linkedin import mapping, restli, version
from omnify.integrations.linkedin.oauth import DEFAULT_OAUTH_URL, LinkedInOAuth

DEFAULT_API_URL = "https://api.linkedin.com"
RESTLI_PROTOCOL = "2.0.0"
#: Everything but REMOVED (deleted drafts): archived and completed entities keep their history.
CAMPAIGN_STATUSES = ("ACTIVE", "PAUSED", "ARCHIVED", "COMPLETED", "CANCELED", "DRAFT", "PENDING_DELETION")
GROUP_STATUSES = ("ACTIVE", "PAUSED", "ARCHIVED", "CANCELED", "DRAFT", "PENDING_DELETION")
ACCOUNT_STATUSES = ("ACTIVE", "DRAFT", "CANCELED")


@dataclass(frozen=True, slots=True)
class LinkedInConfig:
    """App credentials and endpoints. Point ``api_url``/``oauth_url`` at the sandbox to run offline."""

    client_id: str
    client_secret: str
    api_url: str = DEFAULT_API_URL
    oauth_url: str = DEFAULT_OAUTH_URL
    api_version: str = version.PINNED
    scopes: tuple[str, ...] = mapping.SCOPES
    page_size: int = 100  # finders: creatives accept at most 100, the others 1000
    metrics: tuple[str, ...] = mapping.ANALYTICS_METRICS
    fields_per_call: int = mapping.MAX_ANALYTICS_FIELDS
    max_elements: int = mapping.MAX_ANALYTICS_ELEMENTS
    analytics_window_days: int = 31
    refresh_skew: float = 300.0
    timeout: float = 60.0


class LinkedInAdsConnector(OAuthConnector):
    """One LinkedIn app, bound to one member authorization (TokenSet) at a time."""

    platform = Platform.LINKEDIN_ADS

    def __init__(
        self,
        config: LinkedInConfig,
        tokens: TokenSet | None = None,
        *,
        on_tokens: TokenCallback | None = None,
        retry: RetryPolicy | None = None,
        breakers: CircuitBreakers | None = None,
        observer: HttpObserver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._http = ConnectorHttp(
            platform=self.platform.value,
            base_url=config.api_url,
            error_mapper=mapping.error_for_response,
            retry=retry,
            breakers=breakers,
            observer=observer,
            timeout=config.timeout,
            transport=transport,
        )
        self.oauth = LinkedInOAuth(self._http, client_id=config.client_id, client_secret=config.client_secret,
                                   oauth_url=config.oauth_url, scopes=config.scopes)
        self._tokens: TokenSet | None = None
        self._keeper = TokenKeeper(platform="LinkedIn", current=lambda: self._tokens, refresh=self.oauth.refresh,
                                   bind=self.with_tokens, on_tokens=on_tokens, skew=config.refresh_skew)
        self._accounts: dict[str, AdAccount] = {}
        self._raw_campaigns: dict[str, list[Mapping[str, Any]]] = {}
        self._campaign_of: dict[str, dict[str, str]] = {}  # account -> creative id -> campaign id
        if tokens is not None:
            self.with_tokens(tokens)

    def with_tokens(self, tokens: TokenSet) -> LinkedInAdsConnector:
        self._tokens = tokens
        self._http.add_secret(tokens.access_token)
        self._http.add_secret(tokens.refresh_token)
        return self

    def _headers(self, tokens: TokenSet, method: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {tokens.access_token}", "LinkedIn-Version": self.config.api_version,
                   "X-Restli-Protocol-Version": RESTLI_PROTOCOL}
        if method:
            headers["X-RestLi-Method"] = method
        return headers

    async def _call(self, http_method: str, path: str, *, query: str = "", body: Any = None,
                    restli_method: str | None = None, circuit: str | None = None) -> httpx.Response:
        url = f"/rest/{path}" + (f"?{query}" if query else "")

        async def send(tokens: TokenSet) -> httpx.Response:
            return await self._http.request(http_method, url, json=body, headers=self._headers(tokens, restli_method),
                                            circuit=circuit)

        return await self._keeper.call(send)

    async def _get(self, path: str, params: Mapping[str, restli.Value] | None = None, *,
                   fields: list[str] | None = None, circuit: str | None = None,
                   restli_method: str | None = None) -> Mapping[str, Any]:
        response = await self._call("GET", path, query=restli.query(params or {}, fields=fields),
                                    restli_method=restli_method, circuit=circuit)
        try:
            body = response.json()
        except ValueError:
            raise InvalidRequest(f"GET /rest/{path}: LinkedIn answered something that is not JSON") from None
        if not isinstance(body, Mapping):
            raise InvalidRequest(f"GET /rest/{path}: LinkedIn answered {type(body).__name__}, not an object")
        return body

    async def _finder(self, path: str, params: Mapping[str, restli.Value], *, circuit: str | None,
                      page_size: int | None = None) -> AsyncIterator[Mapping[str, Any]]:
        """A cursor-paged finder: every element of every page."""
        token: str | None = None
        size = page_size or self.config.page_size
        while True:
            body = await self._get(path, {**params, "pageSize": size, "pageToken": token}, circuit=circuit,
                                   restli_method="FINDER")
            for element in body.get("elements") or []:
                if isinstance(element, Mapping):
                    yield element
            next_token = mapping.obj(body.get("metadata")).get("nextPageToken")
            if not next_token or next_token == token:
                return
            token = str(next_token)

    async def _offset_finder(self, path: str, params: Mapping[str, restli.Value], *,
                             circuit: str | None) -> AsyncIterator[Mapping[str, Any]]:
        """A ``start``/``count`` paged finder (``adAccountUsers``): pages until ``paging.total``."""
        start, count = 0, max(self.config.page_size, 100)
        while True:
            body = await self._get(path, {**params, "start": start, "count": count}, circuit=circuit,
                                   restli_method="FINDER")
            elements = [e for e in body.get("elements") or [] if isinstance(e, Mapping)]
            for element in elements:
                yield element
            start += len(elements)
            total = mapping.obj(body.get("paging")).get("total")
            if not elements or not isinstance(total, int) or start >= total:
                return

    # -- reads -----------------------------------------------------------------------------
    async def verify(self) -> dict[str, Any]:
        """Who authorized, and on which ad accounts with which role (``adAccountUsers``)."""
        roles: dict[str, str] = {}
        user: str | None = None
        async for element in self._offset_finder("adAccountUsers", {"q": "authenticatedUser"}, circuit=None):
            roles[restli.urn_id(element.get("account"), restli.URN_ACCOUNT)] = str(element.get("role") or "")
            user = user or (restli.urn_id(element["user"]) if element.get("user") else None)
        return {"ok": True, "platform": self.platform.value, "user_id": user, "accounts": sorted(roles),
                "roles": [f"{a}:{r}" for a, r in sorted(roles.items())], "api_version": self.config.api_version}

    async def list_ad_accounts(self) -> list[AdAccount]:
        accounts: list[AdAccount] = []
        search = {"status": {"values": list(ACCOUNT_STATUSES)}}
        async for element in self._finder("adAccounts", {"q": "search", "search": search}, circuit=None,
                                          page_size=max(self.config.page_size, 100)):
            account = mapping.account_from(element)
            self._accounts[account.external_id] = account
            accounts.append(account)
        return accounts

    async def _account(self, account_id: str) -> AdAccount:
        cached = self._accounts.get(account_id)
        if cached is None:
            cached = mapping.account_from(await self._get(f"adAccounts/{_digits(account_id)}", circuit=account_id))
            self._accounts[account_id] = cached
        return cached

    async def campaign_groups(self, account_id: str) -> dict[str, Mapping[str, Any]]:
        """Campaign groups by id (names and statuses for the campaigns' ``targeting``)."""
        aid = _digits(account_id)
        search = {"status": {"values": list(GROUP_STATUSES)}}
        return {str(g["id"]): g async for g in self._finder(f"adAccounts/{aid}/adCampaignGroups",
                                                            {"q": "search", "search": search}, circuit=aid)}

    async def _campaigns_raw(self, account_id: str) -> list[Mapping[str, Any]]:
        aid = _digits(account_id)
        search = {"status": {"values": list(CAMPAIGN_STATUSES)}}
        items = [c async for c in self._finder(f"adAccounts/{aid}/adCampaigns", {"q": "search", "search": search},
                                               circuit=aid)]
        self._raw_campaigns[aid] = items
        return items

    async def campaigns(self, account_id: str) -> AsyncIterator[Campaign]:
        account = await self._account(account_id)
        for item in await self._campaigns_raw(account_id):
            yield mapping.campaign_from(item, account_id=account.external_id, currency=account.currency)

    async def ad_groups(self, account_id: str) -> AsyncIterator[AdGroup]:
        aid = _digits(account_id)
        items = self._raw_campaigns.pop(aid, None)  # the campaigns() just read, not a second fetch
        if items is None:
            items = await self._campaigns_raw(aid)
            self._raw_campaigns.pop(aid, None)
        groups = await self.campaign_groups(aid)
        for item in items:
            yield mapping.ad_group_from(item, account_id=aid, groups=groups)

    async def ads(self, account_id: str) -> AsyncIterator[Ad]:
        aid = _digits(account_id)
        campaign_of: dict[str, str] = {}
        async for item in self._finder(f"adAccounts/{aid}/creatives", {"q": "criteria"}, circuit=aid,
                                       page_size=min(self.config.page_size, 100)):
            ad = mapping.ad_from(item, account_id=aid)
            campaign_of[ad.external_id] = ad.campaign_external_id
            yield ad
        self._campaign_of[aid] = campaign_of

    async def daily_metrics(self, account_id: str, since: date, until: date) -> AsyncIterator[DailyMetric]:
        if until < since:
            raise InvalidRequest(f"until ({until}) is before since ({since})")
        account = await self._account(account_id)
        aid = account.external_id
        step = timedelta(days=max(self.config.analytics_window_days, 1) - 1)
        start = since
        while start <= until:
            end = min(start + step, until)
            for element in await self._analytics(aid, start, end):
                yield mapping.metric_from(element, account_id=aid, currency=account.currency,
                                          campaign_of=self._campaign_of.get(aid))
            start = end + timedelta(days=1)

    async def _analytics(self, account_id: str, since: date, until: date) -> list[dict[str, Any]]:
        """One window, every metric: a call per chunk of fields; a window whose answer hit the
        element cap is read again in two halves (LinkedIn truncates instead of paging)."""
        chunks: list[list[Mapping[str, Any]]] = []
        for metrics in mapping.metric_chunks(self.config.metrics, self.config.fields_per_call):
            params: dict[str, restli.Value] = {
                "q": "analytics", "pivot": "CREATIVE", "timeGranularity": "DAILY",
                "dateRange": restli.date_range(since, until),
                "accounts": [f"{restli.URN_ACCOUNT}{account_id}"],
            }
            body = await self._get("adAnalytics", params, fields=[*mapping.ANALYTICS_KEYS, *metrics],
                                   circuit=account_id)
            elements = [e for e in body.get("elements") or [] if isinstance(e, Mapping)]
            if len(elements) >= self.config.max_elements:
                if since == until:
                    raise InvalidRequest(f"LinkedIn analytics for account {account_id} on {since} exceed "
                                         f"{self.config.max_elements} creatives; the answer would be incomplete")
                middle = since + timedelta(days=(until - since).days // 2)
                return [*await self._analytics(account_id, since, middle),
                        *await self._analytics(account_id, middle + timedelta(days=1), until)]
            chunks.append(elements)
        return mapping.merge_elements(chunks)

    # -- writes ----------------------------------------------------------------------------
    def _entity_path(self, account_id: str, level: Level, entity_id: str) -> str:
        aid = _digits(account_id)
        if level is Level.AD:
            creative = restli.urn_id(entity_id, restli.URN_CREATIVE)
            if not creative.isdigit():
                raise InvalidRequest(f"not a LinkedIn creative id: {entity_id!r}")
            return f"adAccounts/{aid}/creatives/{quote(restli.URN_CREATIVE + creative, safe='')}"
        campaign = restli.urn_id(entity_id, restli.URN_CAMPAIGN)
        if not campaign.isdigit():
            raise InvalidRequest(f"not a LinkedIn campaign id: {entity_id!r}")
        return f"adAccounts/{aid}/adCampaigns/{campaign}"

    async def _patch(self, path: str, changes: Mapping[str, Any], circuit: str) -> None:
        await self._call("POST", path, body={"patch": {"$set": dict(changes)}}, restli_method="PARTIAL_UPDATE",
                         circuit=circuit)
        self._raw_campaigns.clear()

    async def read_entity(self, account_id: str, level: Level, entity_id: str) -> dict[str, Any]:
        """Campaign ``status`` and daily budget, or a creative's ``intendedStatus`` (no budget)."""
        aid = _digits(account_id)
        current = await self._get(self._entity_path(aid, level, entity_id), circuit=aid)
        if level is Level.AD:
            return {"status": mapping.entity_status(current.get("intendedStatus")).value, "daily_budget_minor": None}
        account = await self._account(aid)
        return {"status": mapping.entity_status(current.get("status")).value,
                "daily_budget_minor": mapping.money_minor(current.get("dailyBudget"), account.currency)}

    async def set_status(self, account_id: str, level: Level, entity_id: str, status: EntityStatus) -> ActionResult:
        """Campaign ``status`` (campaign and ad-group level: the same LinkedIn campaign) or
        creative ``intendedStatus``."""
        wanted = mapping.WRITABLE_STATUS.get(status)
        if wanted is None:
            raise InvalidRequest(f"cannot set status {status.value} on LinkedIn (ACTIVE, PAUSED or ARCHIVED)")
        aid = _digits(account_id)
        path = self._entity_path(aid, level, entity_id)
        current = await self._get(path, circuit=aid)
        key = "intendedStatus" if level is Level.AD else "status"
        before = mapping.entity_status(current.get(key))
        if before in (EntityStatus.DELETED,):
            raise InvalidRequest(f"LinkedIn {level.value} {entity_id} is deleted and cannot change status")
        await self._patch(path, {key: wanted}, aid)
        return ActionResult(level, restli.urn_id(entity_id), {"status": before.value}, {"status": status.value})

    async def set_daily_budget(self, account_id: str, level: Level, entity_id: str, amount_minor: int) -> ActionResult:
        if level is Level.AD:
            raise InvalidRequest("LinkedIn creatives have no budget: set it on the campaign")
        if amount_minor <= 0:
            raise InvalidRequest("a daily budget must be a positive amount of minor units")
        aid = _digits(account_id)
        account = await self._account(aid)
        path = self._entity_path(aid, level, entity_id)
        current = await self._get(path, circuit=aid)
        before = mapping.money_minor(current.get("dailyBudget"), account.currency)
        if before is None:
            raise InvalidRequest(f"LinkedIn campaign {entity_id} has no daily budget (only a lifetime one)")
        budget_currency = str(mapping.obj(current.get("dailyBudget")).get("currencyCode") or account.currency)
        await self._patch(path, {"dailyBudget": mapping.money_object(amount_minor, budget_currency)}, aid)
        return ActionResult(level, restli.urn_id(entity_id),
                            {"daily_budget_minor": before, "currency": budget_currency},
                            {"daily_budget_minor": amount_minor, "currency": budget_currency})


def _digits(account_id: str) -> str:
    """Account ids arrive bare (``507404993``) or as URNs; the paths want the digits."""
    value = restli.urn_id(str(account_id).strip(), restli.URN_ACCOUNT)
    if not value.isdigit():
        raise InvalidRequest(f"not a LinkedIn ad account id: {account_id!r}")
    return value
