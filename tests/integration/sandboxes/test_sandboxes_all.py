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
        s = Settings()
        assert s.meta_graph_url == running.url(Platform.META_ADS)
        assert s.tiktok_auth_url.endswith("/portal/auth")
        # Each server speaks its platform's error shape to an unauthenticated call.
        meta = httpx.get(f"{s.meta_graph_url}/v21.0/me/adaccounts", timeout=10)
        assert meta.status_code in (400, 401) and "error" in meta.json()
        tiktok = httpx.get(f"{s.tiktok_base_url}/open_api/v1.3/advertiser/info/", timeout=10)
        assert "code" in tiktok.json() and tiktok.json()["code"] != 0
        shop = httpx.get(s.shopify_shop_url_template.format(shop="demo-store.myshopify.com")
                         + "/admin/api/2024-10/orders.json", timeout=10)
        assert shop.status_code in (401, 404)
    finally:
        running.stop()
