"""Every spelling of a private address is refused when a webhook or chat URL is saved.

The probe of issue 20: ``http://2852039166/`` (169.254.169.254, the cloud metadata service,
as one decimal number) was accepted on save and only refused at send time. The save-time and
send-time checks now share one parser (:func:`omnify.webhooks.ssrf._literal_ip`).
"""

from __future__ import annotations

import httpx
import pytest

from omnify.webhooks.config import WebhookConfig
from omnify.webhooks.ssrf import BlockedDestination, resolve_targets
from tests.factories import Account

METADATA_SPELLINGS = ["2852039166", "0xA9FEA9FE", "0xa9.0xfe.0xa9.0xfe", "169.254.43518", "169.16689662",
                      "0251.0376.0251.0376"]
LOOPBACK_SPELLINGS = ["127.1", "0x7f.1", "017700000001", "2130706433"]


@pytest.mark.parametrize("host", METADATA_SPELLINGS + LOOPBACK_SPELLINGS)
async def test_saving_a_numeric_private_host_is_422(client: httpx.AsyncClient, owner: Account, host: str) -> None:
    org = f"/api/v1/orgs/{owner.org_id}"
    for scheme in ("http", "https"):
        resp = await client.post(f"{org}/webhook-endpoints", headers=owner.headers,
                                 json={"url": f"{scheme}://{host}/latest/meta-data/"})
        assert resp.status_code == 422, (host, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    resp = await client.post(f"{org}/chat/connections", headers=owner.headers,
                             json={"kind": "slack_webhook", "name": "#x", "url": f"https://{host}/services/T/B/x"})
    assert resp.status_code == 422, (host, resp.text)
    listed = await client.get(f"{org}/webhook-endpoints", headers=owner.headers)
    assert listed.json()["items"] == []


@pytest.mark.parametrize("host", METADATA_SPELLINGS)
async def test_send_time_check_agrees(host: str) -> None:
    """The same parser at send time: no DNS look-up is even attempted for these hosts."""

    async def resolver(name: str, port: int) -> list[str]:
        raise AssertionError(f"{name} must not reach DNS")

    with pytest.raises(BlockedDestination, match=r"169\.254\.169\.254|not valid"):
        await resolve_targets(f"https://{host}/x", WebhookConfig(production=True), resolver)
