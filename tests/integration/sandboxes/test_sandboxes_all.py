from __future__ import annotations

import httpx

from omnify.integrations.base import Platform
from omnify.integrations.sandboxes import start_all
from omnify.settings import Settings


def test_all_sandboxes_serve_and_settings_point_at_them(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    running = start_all(ports=dict.fromkeys(Platform, 0))
    try:
        env = running.env_for()
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        s = Settings(env="test")
        assert s.meta_graph_url == running.url(Platform.META_ADS)
        assert s.tiktok_auth_url.endswith("/portal/auth")
        # Each server speaks its platform's error shape to an unauthenticated call.
        meta = httpx.get(f"{s.meta_graph_url}/v26.0/me/adaccounts", timeout=10)
        assert meta.status_code in (400, 401) and "error" in meta.json()
        tiktok = httpx.get(f"{s.tiktok_base_url}/open_api/v1.3/advertiser/info/", timeout=10)
        assert "code" in tiktok.json() and tiktok.json()["code"] != 0
        shop = httpx.get(s.shopify_shop_url_template.format(shop="demo-store.myshopify.com")
                         + "/admin/api/2026-10/orders.json", timeout=10)
        assert shop.status_code in (401, 404)
        linkedin = httpx.get(f"{s.linkedin_api_url}/rest/adAccounts?q=search", timeout=10,
                             headers={"LinkedIn-Version": "202607"})
        assert linkedin.status_code == 401 and linkedin.json()["code"] == "EMPTY_ACCESS_TOKEN"
        assert s.linkedin_oauth_url == f"{s.linkedin_api_url}/oauth/v2"
    finally:
        running.stop()
