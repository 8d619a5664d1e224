"""Start every platform sandbox at once: `omnify sandbox`, the demo, end-to-end tests.

Each sandbox is a real HTTP server speaking its platform's API shape; pointing Omnify's
platform base URLs at these (``env_for``) is the only switch between offline and live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omnify.integrations.base import Platform
from omnify.integrations.sandbox_common import SandboxServer

DEFAULT_PORTS = {Platform.META_ADS: 8101, Platform.GOOGLE_ADS: 8102, Platform.TIKTOK_ADS: 8103, Platform.SHOPIFY: 8104}


@dataclass
class RunningSandboxes:
    sandboxes: dict[Platform, Any] = field(default_factory=dict)
    servers: dict[Platform, SandboxServer] = field(default_factory=dict)

    def url(self, platform: Platform) -> str:
        return self.servers[platform].url

    def env_for(self) -> dict[str, str]:
        """The settings that point Omnify at these sandboxes."""
        meta, google = self.url(Platform.META_ADS), self.url(Platform.GOOGLE_ADS)
        tiktok = self.url(Platform.TIKTOK_ADS)
        return {
            "OMNIFY_META_GRAPH_URL": meta,
            "OMNIFY_META_DIALOG_URL": meta,
            "OMNIFY_GOOGLE_ADS_URL": google,
            "OMNIFY_GOOGLE_AUTH_URL": f"{google}/o/oauth2/v2/auth",
            "OMNIFY_GOOGLE_TOKEN_URL": f"{google}/token",
            "OMNIFY_GOOGLE_REVOKE_URL": f"{google}/revoke",
            "OMNIFY_TIKTOK_BASE_URL": tiktok,
            "OMNIFY_TIKTOK_AUTH_URL": f"{tiktok}/portal/auth",
            "OMNIFY_SHOPIFY_SHOP_URL_TEMPLATE": f"{self.url(Platform.SHOPIFY)}/shops/{{shop}}",
        }

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def start_all(host: str = "127.0.0.1", ports: dict[Platform, int] | None = None,
              auto_approve: bool = True) -> RunningSandboxes:
    from omnify.integrations.google.sandbox import GoogleSandbox, GoogleSandboxConfig
    from omnify.integrations.meta.sandbox import MetaSandbox, MetaSandboxConfig
    from omnify.integrations.shopify.sandbox import ShopifySandbox
    from omnify.integrations.tiktok.sandbox import TikTokSandbox

    chosen = ports if ports is not None else DEFAULT_PORTS
    running = RunningSandboxes()
    running.sandboxes = {
        Platform.META_ADS: MetaSandbox(MetaSandboxConfig(auto_approve=auto_approve)),
        Platform.GOOGLE_ADS: GoogleSandbox(GoogleSandboxConfig(auto_approve=auto_approve)),
        Platform.TIKTOK_ADS: TikTokSandbox(auto_approve=auto_approve),
        Platform.SHOPIFY: ShopifySandbox(auto_approve=auto_approve),
    }
    try:
        for platform, sandbox in running.sandboxes.items():
            running.servers[platform] = SandboxServer(
                sandbox.app, host=host, port=chosen.get(platform, 0), name=platform.value
            ).start()
    except BaseException:
        running.stop()
        raise
    return running
