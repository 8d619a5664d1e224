"""Start every platform sandbox at once: `omnify sandbox`, the demo, end-to-end tests.

Each sandbox is a real HTTP server speaking its platform's API shape; pointing Omnify's
platform base URLs at these (``env_for``) is the only switch between offline and live.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any

from omnify.integrations.base import Platform
from omnify.integrations.sandbox_common import FaultConfig, SandboxServer

DEFAULT_PORTS = {Platform.META_ADS: 8101, Platform.GOOGLE_ADS: 8102, Platform.TIKTOK_ADS: 8103, Platform.SHOPIFY: 8104,
                 Platform.LINKEDIN_ADS: 8105}


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
            "OMNIFY_LINKEDIN_API_URL": self.url(Platform.LINKEDIN_ADS),
            "OMNIFY_LINKEDIN_OAUTH_URL": f"{self.url(Platform.LINKEDIN_ADS)}/oauth/v2",
        }

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def parse_fault_flags(flags: list[str]) -> dict[Platform, FaultConfig]:
    """``omnify sandbox --fault meta.rate_limit_next=3 --fault meta.throttle=613`` -> configs.

    The platform is a :class:`Platform` value or its short name (``meta``, ``google``,
    ``tiktok``, ``shopify``, ``linkedin``); the key is a :class:`FaultConfig` field, its value
    parsed to the field's type. Raises ValueError with the reason on anything else."""
    by_name = {p.value: p for p in Platform} | {p.value.removesuffix("_ads"): p for p in Platform}
    types = {f.name: f.type for f in fields(FaultConfig)}
    out: dict[Platform, FaultConfig] = {}
    for flag in flags:
        target, sep, raw = flag.partition("=")
        name, dot, key = target.partition(".")
        if not sep or not dot or name not in by_name:
            raise ValueError(f"--fault {flag!r}: expected PLATFORM.SETTING=VALUE, PLATFORM one of "
                             f"{', '.join(sorted(by_name))}")
        if key not in types:
            raise ValueError(f"--fault {flag!r}: unknown setting {key!r} (one of {', '.join(types)})")
        kind = str(types[key])
        value: object
        try:
            if kind.startswith("bool"):
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(raw)
                value = raw.lower() in ("1", "true", "yes")
            elif kind.startswith("int"):
                value = int(raw)
            elif kind.startswith("float"):
                value = float(raw)
            else:
                value = raw or None if "None" in kind else raw
        except ValueError:
            raise ValueError(f"--fault {flag!r}: {raw!r} is not a valid {kind}") from None
        setattr(out.setdefault(by_name[name], FaultConfig()), key, value)
    return out


def start_all(host: str = "127.0.0.1", ports: dict[Platform, int] | None = None,
              auto_approve: bool = True, *, faults: dict[Platform, FaultConfig] | None = None,
              today: date | None = None) -> RunningSandboxes:
    """``faults``: what each sandbox injects from the start; ``today``: the day whose API-version
    table the sandboxes serve (default: the day each table was checked)."""
    from omnify.integrations.google.sandbox import GoogleSandbox, GoogleSandboxConfig
    from omnify.integrations.linkedin.sandbox import LinkedInSandbox, LinkedInSandboxConfig
    from omnify.integrations.meta.sandbox import MetaSandbox, MetaSandboxConfig
    from omnify.integrations.shopify.sandbox import ShopifySandbox
    from omnify.integrations.tiktok.sandbox import TikTokSandbox

    chosen = ports if ports is not None else DEFAULT_PORTS
    f = faults or {}

    def fault(platform: Platform) -> FaultConfig:
        return f.get(platform) or FaultConfig()

    running = RunningSandboxes()
    running.sandboxes = {
        Platform.META_ADS: MetaSandbox(MetaSandboxConfig(auto_approve=auto_approve, faults=fault(Platform.META_ADS),
                                                         today=today)),
        Platform.GOOGLE_ADS: GoogleSandbox(GoogleSandboxConfig(auto_approve=auto_approve,
                                                               faults=fault(Platform.GOOGLE_ADS), today=today)),
        Platform.TIKTOK_ADS: TikTokSandbox(auto_approve=auto_approve, faults=fault(Platform.TIKTOK_ADS), today=today),
        Platform.SHOPIFY: ShopifySandbox(auto_approve=auto_approve, faults=fault(Platform.SHOPIFY), today=today),
        Platform.LINKEDIN_ADS: LinkedInSandbox(LinkedInSandboxConfig(
            auto_approve=auto_approve, faults=fault(Platform.LINKEDIN_ADS), today=today)),
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
