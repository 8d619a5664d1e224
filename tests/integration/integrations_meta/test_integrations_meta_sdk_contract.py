"""Contract: facebook-business (the official SDK, current major) drives the Meta sandbox for every
Graph call our connector makes and for each fault the sandbox injects.

The SDK is used unchanged: only ``FacebookSession.GRAPH`` (the base URL) and the app
credentials differ from production. If the sandbox's shapes drift from Graph's, the SDK -
written by Meta against the real API - is what notices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from omnify.integrations.base import TokenSet
from omnify.integrations.meta.sandbox import MetaSandbox
from omnify.integrations.meta.version import POLICY
from omnify.integrations.sandbox_common import SandboxServer

fb = pytest.importorskip("facebook_business", reason="facebook-business (dev extra) not installed")
from facebook_business.adobjects.adaccount import AdAccount  # noqa: E402
from facebook_business.adobjects.adset import AdSet  # noqa: E402
from facebook_business.adobjects.campaign import Campaign  # noqa: E402
from facebook_business.adobjects.user import User  # noqa: E402
from facebook_business.api import FacebookAdsApi  # noqa: E402
from facebook_business.exceptions import FacebookRequestError  # noqa: E402
from facebook_business.session import FacebookSession  # noqa: E402

Env = tuple[MetaSandbox, SandboxServer]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def sdk_api(env: Env, token: str, version: str = POLICY.pinned) -> Any:
    sandbox, server = env
    session = FacebookSession(sandbox.config.app_id, sandbox.config.app_secret, token)  # sends appsecret_proof
    session.GRAPH = server.url
    return FacebookAdsApi(session, api_version=version)


@pytest.fixture
def api(meta_sandbox: Env, meta_tokens: TokenSet) -> Iterator[Any]:
    yield sdk_api(meta_sandbox, meta_tokens.access_token)
    meta_sandbox[0].world.reset()


def test_sdk_major_is_the_pinned_graph_version() -> None:
    assert fb.__version__.split(".")[0] == POLICY.pinned.removeprefix("v").split(".")[0]
    assert POLICY.pinned == FacebookAdsApi.API_VERSION


def test_every_read_the_connector_makes(meta_sandbox: Env, api: Any) -> None:
    sandbox, _ = meta_sandbox
    me = User(fbid="me", api=api).api_get(fields=["id", "name"])  # verify()
    assert me["id"] and me["name"]
    perms = User(fbid="me", api=api).get_permissions()  # verify(): granted scopes
    assert {p["permission"] for p in perms if p["status"] == "granted"} >= {"ads_read", "ads_management"}
    accounts = list(User(fbid="me", api=api).get_ad_accounts(  # list_ad_accounts()
        fields=["account_id", "name", "currency", "timezone_name", "account_status"], params={"limit": 2}))
    assert [a["account_id"] for a in accounts] == sorted(sandbox.world.accounts)

    account = AdAccount("act_1000001", api=api)
    truth = sandbox.world.account("1000001")
    assert account.api_get(fields=["currency"])["currency"] == truth.currency  # account_currency()
    campaigns = list(account.get_campaigns(fields=["name", "status", "objective", "daily_budget", "updated_time"],
                                           params={"limit": 2}))
    adsets = list(account.get_ad_sets(fields=["name", "campaign_id", "status", "daily_budget", "targeting"],
                                      params={"limit": 3}))
    ads = list(account.get_ads(fields=["name", "adset_id", "campaign_id", "status", "creative{id,title,body}"],
                               params={"limit": 50}))
    assert (len(campaigns), len(adsets), len(ads)) == (len(truth.campaigns), len(truth.ad_groups), len(truth.ads))
    assert ads[0]["creative"]["title"] == truth.ads[ads[0]["id"]].creative.title

    day = truth.metrics.end - timedelta(days=2)
    rows = list(account.get_insights(  # daily_metrics(): level=ad, daily, one window
        fields=["ad_id", "adset_id", "campaign_id", "spend", "impressions", "clicks", "actions", "action_values",
                "account_currency"],
        params={"level": "ad", "time_increment": 1,
                "time_range": {"since": (day - timedelta(days=1)).isoformat(), "until": day.isoformat()},
                "limit": 100}))
    expected = truth.metric_rows(day - timedelta(days=1), day)
    assert len(rows) == len(expected)
    assert sum(round(float(r["spend"]) * 100) for r in rows) == int(expected.spend_minor.sum())


def test_every_write_the_connector_makes(meta_sandbox: Env, api: Any) -> None:
    sandbox, _ = meta_sandbox
    acc = sandbox.world.account("1000003")
    camp_id = next(iter(acc.campaigns))
    node = Campaign(camp_id, api=api).api_get(fields=["id", "account_id", "status", "daily_budget"])  # _owned()
    assert node["account_id"] == "1000003"
    Campaign(camp_id, api=api).api_update(params={"status": "PAUSED"})  # set_status()
    assert acc.campaigns[camp_id].status == "paused"
    Campaign(camp_id, api=api).api_update(params={"daily_budget": "4321"})  # set_daily_budget()
    assert acc.campaigns[camp_id].daily_budget_minor == 4321
    group = next(g for g in acc.ad_groups.values() if g.campaign_id == camp_id)
    with pytest.raises(FacebookRequestError) as cbo:  # the campaign owns the budget (CBO)
        AdSet(group.id, api=api).api_update(params={"daily_budget": "2500"})
    assert (cbo.value.api_error_code(), cbo.value.api_error_subcode()) == (100, 1885621)
    with pytest.raises(FacebookRequestError) as low:
        Campaign(camp_id, api=api).api_update(params={"daily_budget": "5"})
    assert (low.value.api_error_code(), low.value.api_error_subcode()) == (100, 1885272)


@pytest.mark.parametrize(("throttle", "code", "subcode"), [("80004", 80004, 2446079), ("17", 17, 2446079),
                                                          ("613", 613, 1487742)])
def test_each_throttle_reaches_the_sdk_with_usage_headers(
    meta_sandbox: Env, api: Any, throttle: str, code: int, subcode: int
) -> None:
    sandbox, _ = meta_sandbox
    sandbox.injector.configure(rate_limit_next=1, retry_after=90, throttle=throttle, match="/campaigns")
    with pytest.raises(FacebookRequestError) as info:
        list(AdAccount("act_1000001", api=api).get_campaigns(fields=["name"]))
    err = info.value
    assert (err.http_status(), err.api_error_code(), err.api_error_subcode()) == (400, code, subcode)
    usage = json.loads(err.http_headers()["x-business-use-case-usage"])
    assert usage["1000001"][0]["estimated_time_to_regain_access"] == 2  # minutes, rounded up
    assert len(list(AdAccount("act_1000001", api=api).get_campaigns(fields=["name"]))) == 5  # one-shot


def test_server_error_expired_token_and_expired_version(meta_sandbox: Env, api: Any, meta_tokens: TokenSet) -> None:
    sandbox, _ = meta_sandbox
    sandbox.injector.configure(errors_5xx_next=1, error_status=500)
    with pytest.raises(FacebookRequestError) as boom:
        User(fbid="me", api=api).api_get(fields=["id"])
    assert (boom.value.http_status(), boom.value.api_error_code(), boom.value.api_transient_error()) == (500, 2, True)

    expired = sorted(v.name for v in POLICY.versions if POLICY.is_expired(v.name))
    old_api = sdk_api(meta_sandbox, meta_tokens.access_token, version=expired[-1])
    with pytest.raises(FacebookRequestError) as gone:
        User(fbid="me", api=old_api).api_get(fields=["id"])
    assert gone.value.api_error_code() == 2635 and "deprecated version" in gone.value.api_error_message()

    short = sandbox.tokens.issue_tokens(client_id=sandbox.config.app_id, subject="100000000000001",
                                        scopes=["ads_read"], access_ttl=-1, with_refresh=False).access_token
    with pytest.raises(FacebookRequestError) as stale:
        User(fbid="me", api=sdk_api(meta_sandbox, short)).api_get(fields=["id"])
    assert (stale.value.api_error_code(), stale.value.api_error_subcode()) == (190, 463)
