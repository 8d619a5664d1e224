"""Every knob of Omnify, read from the environment (prefix ``OMNIFY_``).

Defaults are chosen so that ``omnify up`` works on a bare laptop (SQLite, in-process
cache and rate limits, local file storage). ``OMNIFY_ENV=production`` turns on
:meth:`Settings.assert_production_safe`, which refuses to boot with a setting that is
only acceptable on a developer machine.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SECRET_KEY = "dev-insecure-change-me-0123456789abcdef"  # the test suite's key, nothing else's
#: Signing keys anyone can read in this repository: refused outside the test suite.
KNOWN_PUBLIC_SECRET_KEYS = frozenset({DEFAULT_SECRET_KEY, "local-compose-secret-key-change-me-0123456789"})

#: Each platform's app identity, by ``Platform`` value: the settings without which its OAuth
#: flow cannot start (connections/connectors.py refuses it) and production refuses to boot.
#: A platform added to ``integrations.base.Platform`` without an entry here is itself a
#: production error, so the deploy manifests' test (tests/ops) follows new platforms.
PLATFORM_APP_SETTINGS: dict[str, tuple[str, ...]] = {
    "meta_ads": ("meta_app_id", "meta_app_secret"),
    "google_ads": ("google_client_id", "google_client_secret", "google_developer_token"),
    "tiktok_ads": ("tiktok_app_id", "tiktok_app_secret"),
    "linkedin_ads": ("linkedin_client_id", "linkedin_client_secret"),
    "shopify": ("shopify_api_key", "shopify_api_secret"),
}
#: Sender domains that no mail provider accepts (SES refuses an unverified identity).
PLACEHOLDER_EMAIL_DOMAINS = ("omnify.local", "localhost", "example.com", "example.org", "example.net")


class InsecureSettingError(RuntimeError):
    """Raised at start-up when production runs with a development-only setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OMNIFY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["development", "test", "staging", "production"] = "development"
    debug: bool = False
    log_level: str = "INFO"
    #: JSON lines (what log collectors parse) or human-readable console lines. Unset: JSON,
    #: except on a terminal outside production (`omnify up` in a shell reads like a log,
    #: not like a wall of JSON).
    log_json: bool | None = None
    data_dir: Path = Path(".omnify")
    public_base_url: str = "http://127.0.0.1:8000"

    # Database
    database_url: str | None = None
    migration_database_url: str | None = None
    db_app_role: str = "omnify_app"
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(20, ge=0)
    db_pool_timeout: float = Field(30.0, gt=0)
    db_pool_recycle: int = Field(1800, ge=-1)
    db_pool_pre_ping: bool = False  # a round trip per checkout; RetryingSession recovers instead
    db_echo: bool = False

    # Redis / broker
    redis_url: str | None = None
    broker_url: str | None = None
    result_backend_url: str | None = None

    # Security
    # Signs access tokens, sessions, CSRF tokens and signed links. Empty: generated once per data
    # directory in development (``<data_dir>/secret-key``), the published test value in tests,
    # refused in staging and production (see _signing_secret).
    secret_key: SecretStr = SecretStr("")
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "omnify"
    access_token_ttl_seconds: int = Field(900, ge=60)
    refresh_token_ttl_seconds: int = Field(30 * 24 * 3600, ge=3600)
    invitation_ttl_seconds: int = Field(7 * 24 * 3600, ge=3600)
    password_reset_ttl_seconds: int = Field(3600, ge=300)
    password_min_length: int = Field(10, ge=8)
    # Failed logins (auth/throttle.py): free tries per (e-mail, client address) within the
    # window, then a doubling delay capped at the window; the account-wide threshold slows
    # guessing from many addresses without locking the owner out of a known address.
    login_max_failures: int = Field(5, ge=1)
    login_lockout_seconds: int = Field(900, ge=1)
    login_account_max_failures: int = Field(50, ge=1)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["http://127.0.0.1:8000", "http://localhost:8000"])
    max_request_body_bytes: int = Field(1 * 1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    https_only: bool = False
    # Addresses or networks of the reverse proxies in front of the API (comma-separated
    # IPs/CIDRs). X-Forwarded-For/-Proto are believed only from these, by uvicorn and the
    # app alike; empty = no proxy, the socket peer is the client.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How long the server keeps an idle keep-alive connection open. Longer than the proxy's own
    # upstream idle timeout (ingress-nginx and AWS ALB: 60 s), so the proxy, not the app, closes
    # idle connections: otherwise it may send a request on a connection the app is closing and
    # answer 502. uvicorn's default, 5 s, also reset clients whose next request met the close.
    http_keep_alive_seconds: int = Field(75, ge=1, le=3600)
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)  # dev-only SSRF allow-list

    # Rate limits (the `limits` library's notation)
    rate_limit_enabled: bool = True
    rate_limit_auth: str = "10/minute"
    rate_limit_user: str = "600/minute"
    rate_limit_api_key: str = "1200/minute"
    rate_limit_org: str = "3000/minute"

    # Storage
    storage_backend: Literal["local", "s3"] = "local"
    storage_local_path: Path | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    s3_endpoint_url: str | None = None
    s3_sse: Literal["", "AES256", "aws:kms"] = "AES256"
    s3_kms_key_id: str | None = None
    cdn_base_url: str | None = None
    signed_url_ttl_seconds: int = Field(300, ge=10)
    # An upload writes its object before its row; an object without a row older than this
    # (a process that died in between) is deleted by the orphan sweep. Longer than any upload.
    storage_orphan_grace_seconds: int = Field(3600, ge=0)

    # Secrets backend (master keys for envelope encryption)
    secrets_backend: Literal["env", "file", "vault", "aws"] = "env"
    master_keys: SecretStr | None = None
    master_key_file: Path | None = None
    vault_url: str | None = None
    vault_token: SecretStr | None = None
    vault_mount: str = "secret"
    vault_path: str = "omnify/master-keys"
    aws_secret_id: str | None = None
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None

    # Ad platforms (point the base URLs at `omnify sandbox` for offline runs)
    meta_app_id: str = ""
    meta_app_secret: SecretStr | None = None
    meta_graph_url: str = "https://graph.facebook.com"
    meta_dialog_url: str = "https://www.facebook.com"
    meta_api_version: str = ""  # empty: the pinned version, integrations/meta/version.py
    google_client_id: str = ""
    google_client_secret: SecretStr | None = None
    google_developer_token: SecretStr | None = None
    google_login_customer_id: str | None = None
    google_ads_url: str = "https://googleads.googleapis.com"
    google_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"
    google_revoke_url: str = "https://oauth2.googleapis.com/revoke"
    google_ads_api_version: str = ""  # empty: the pinned version, integrations/google/version.py

    tiktok_app_id: str | None = None
    tiktok_app_secret: SecretStr | None = None
    tiktok_base_url: str = "https://business-api.tiktok.com"
    tiktok_auth_url: str = "https://business-api.tiktok.com/portal/auth"
    shopify_api_key: str | None = None
    shopify_api_secret: SecretStr | None = None
    shopify_shop_url_template: str = "https://{shop}"
    shopify_api_version: str = ""  # empty: the pinned version, integrations/shopify/version.py

    # Connections and sync
    connections_state_ttl_seconds: float = Field(600.0, ge=60)
    connections_refresh_skew_seconds: float = Field(300.0, ge=0)
    connections_refresh_windows: dict[str, float] = Field(default_factory=dict)  # over meta 7d/google 15m/tiktok 2h
    sync_backfill_days: int = Field(365, ge=1)
    sync_lookback_days: int = Field(28, ge=1)
    sync_interval_seconds: float = Field(3600.0, gt=0)
    sync_max_backoff_seconds: float = Field(21600.0, gt=0)
    # One run per connection holds a lease on it, renewed by a heartbeat every third of
    # the lease while the run works: a worker that dies (SIGKILL, OOM, lost node) stops
    # renewing, so its lease lapses within this many seconds and the redelivered task
    # resumes the run from its cursors (docs/operations.md, "Sync leases").
    sync_lock_lease_seconds: float = Field(60.0, ge=1)
    # A brain run holds a lease on its client, renewed by a heartbeat every third of the
    # lease while it works: a run whose worker died (SIGKILL, OOM) stops renewing, so the
    # redelivered task takes over once this many seconds passed since the last beat,
    # closing the dead run as abandoned (docs/operations.md, "Brain run leases").
    brain_run_lease_seconds: float = Field(60.0, ge=1)
    # Test only: seconds a brain run sleeps between its load and its merge, so a test can
    # kill its worker mid-run. 0 (the default) everywhere else.
    brain_run_test_pause_seconds: float = Field(0.0, ge=0)
    # A rule evaluation still 'running' this many seconds after it started was left by a
    # worker that died: the redelivered task closes it as abandoned and redoes the slot
    # (docs/operations.md, "Rule evaluations whose worker died"). Longer than any evaluation.
    rule_evaluation_lease_seconds: float = Field(600.0, ge=1)
    # An action still 'applying' or 'undoing' this many seconds after its claim was left by a
    # worker that died mid-apply: the beat sweep reads each planned entity on the platform
    # and settles it (applied/failed, undone/applied; docs/operations.md, "Actions
    # interrupted mid-apply"). Far longer than any apply (a few platform calls).
    action_reconcile_after_seconds: float = Field(600.0, ge=1)
    # Test only: seconds a rule evaluation sleeps after acting, before it records its
    # result, so a test can kill its worker mid-run. 0 (the default) everywhere else.
    rule_evaluation_test_pause_seconds: float = Field(0.0, ge=0)
    # Test only: seconds the rules beat job sleeps between recording the due slots (and
    # advancing next_run_at) and evaluating them. 0 (the default) everywhere else.
    rule_schedule_test_pause_seconds: float = Field(0.0, ge=0)
    sync_batch_size: int = Field(1000, ge=1)
    sync_metrics_chunk_days: int = Field(30, ge=1)
    sync_shop_overlap_seconds: float = Field(3600.0, ge=0)
    sync_retry_max_attempts: int = Field(5, ge=1)
    sync_retry_base_delay: float = 0.5
    sync_retry_max_delay: float = 30.0
    sync_retry_max_retry_after: float = 120.0
    demo_backfill_days: int = Field(60, ge=1)  # `omnify up` syncs this much inline; the worker does the rest

    # Email
    email_backend: Literal["console", "file", "smtp", "ses", "resend"] = "console"
    email_from: str = "Omnify <no-reply@omnify.local>"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    resend_api_key: SecretStr | None = None

    # Webhooks
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    webhook_timeout_seconds: float = Field(15.0, gt=0)
    #: How long an attempt holds its delivery; past it the attempt is taken as lost (its
    #: worker died) and the delivery is tried again. None: twice the timeout + 30 s.
    webhook_lease_seconds: float | None = Field(None, gt=0)
    webhook_disable_after_seconds: float = Field(5 * 24 * 3600, gt=0)
    webhook_secret_overlap_seconds: float = Field(24 * 3600, ge=0)
    shopify_previous_api_secret: SecretStr | None = None
    inbound_shopify_max_age_seconds: float = Field(48 * 3600, gt=0)

    # Email delivery details
    email_reply_to: str | None = None
    email_file_dir: Path | None = None
    email_max_attempts: int = Field(8, ge=1)
    email_retry_base_seconds: float = 30.0
    email_retry_max_seconds: float = 3600.0
    smtp_use_ssl: bool = False
    smtp_timeout_seconds: float = 20.0
    ses_region: str | None = None
    ses_endpoint_url: str | None = None
    ses_configuration_set: str | None = None
    resend_api_url: str = "https://api.resend.com"

    # Campaign idea assistant: an OpenAI-compatible chat endpoint (OpenAI, Azure OpenAI,
    # vLLM, Ollama, LiteLLM). Off while the base URL is unset: ideas then come from the
    # deterministic offline generator. When on, each brain run sends the client's profile
    # and a performance summary (aggregates, no shopper data) to that endpoint.
    ideas_llm_base_url: str | None = None
    ideas_llm_api_key: SecretStr | None = None
    ideas_llm_model: str = "gpt-4o-mini"
    ideas_llm_timeout_seconds: float = Field(20.0, gt=0)

    # Observability
    otel_enabled: bool = False
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "omnify"
    metrics_enabled: bool = True
    # Where Prometheus scrapes the API (core/metrics.py): never publicly on the API port.
    # A separate listener (0 = none; in Kubernetes 9464 on 0.0.0.0, reachable only from the
    # monitoring namespace), and/or GET /metrics on the API port with this bearer token.
    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_token: SecretStr | None = None

    # Audit
    audit_retention_days: int = Field(7 * 365, ge=1)
    # Scheduled jobs of issue 14 item 3 (ops). Cold storage of the audit trail (file:///dir or
    # s3://bucket/prefix; empty: <data dir>/audit-export), and the backup store that
    # `omnify.backup.check` watches (the same OMNIFY_BACKUP_URL the backup commands write to).
    audit_export_url: str | None = None
    backup_url: str | None = None
    backup_max_age_hours: float = Field(26.0, gt=0)  # base/SQLite backups: daily, plus slack
    backup_wal_max_age_minutes: float = Field(60.0, gt=0)  # the RPO

    # Plans / quotas (defaults for the "free" plan)
    default_plan: str = "free"

    # Web app (issue 15): browser sessions in an HttpOnly cookie, stored server-side so a
    # log-out, a password change or a removed member ends them at once. Cookies are
    # Secure (and use the __Host- prefix) in production or with OMNIFY_HTTPS_ONLY.
    web_session_ttl_seconds: int = Field(14 * 24 * 3600, ge=300)
    web_session_idle_seconds: int = Field(2 * 24 * 3600, ge=300)

    # LinkedIn Ads (Marketing API). An empty version is the connector's pin
    # (integrations/linkedin/version.py); set it only to move ahead of (or hold back) a release.
    linkedin_client_id: str | None = None
    linkedin_client_secret: SecretStr | None = None
    linkedin_api_url: str = "https://api.linkedin.com"
    linkedin_oauth_url: str = "https://www.linkedin.com/oauth/v2"
    linkedin_api_version: str = ""  # empty: the pinned version, integrations/linkedin/version.py

    # Request budget (issue 16): API keys, users, roles and plan limits are cached in each
    # process this long; a revoke, a role or plan change drops them everywhere at once
    # (Redis pub/sub), the TTL bounds staleness if that message is lost. 0 disables.
    auth_cache_ttl_seconds: float = Field(15.0, ge=0, le=300)

    # Automation alerts and client reports (issue 19, the `rules` helper): the Slack app
    # (OAuth install, channel picker, signed Apply/Dismiss buttons) and the report renderer.
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api"
    slack_authorize_url: str = "https://slack.com/oauth/v2/authorize"
    #: Signed chart and report links stay valid this long (Slack fetches images later).
    chart_link_ttl_seconds: int = Field(30 * 24 * 3600, ge=60)

    @field_validator("cors_origins", "webhook_allowed_hosts", "webhook_retry_schedule", "trusted_proxies",
                     mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                import json

                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        """Each entry must be an IP address or network: a typo would silently trust nobody
        (uvicorn treats an unparsable entry as a literal host name)."""
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"OMNIFY_TRUSTED_PROXIES: {entry!r} is not an IP address or network") from exc
        if "0.0.0.0/0" in value or "::/0" in value:
            raise ValueError("OMNIFY_TRUSTED_PROXIES must name the proxies, not every address")
        return value

    # Derived values -----------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'omnify.db').resolve()}"

    @property
    def resolved_migration_database_url(self) -> str:
        return self.migration_database_url or self.resolved_database_url

    @model_validator(mode="after")
    def _signing_secret(self) -> Settings:
        """A key that sits in the source signs nothing outside the test suite: a token forged
        with it would be accepted by every ``omnify up`` and staging deployment (issue 14 item 9)."""
        secret = self.secret_key.get_secret_value()
        if secret in KNOWN_PUBLIC_SECRET_KEYS and self.env != "test":
            raise InsecureSettingError(
                "OMNIFY_SECRET_KEY is a value published in Omnify's source; unset it (development "
                "generates one per data directory) or set a random one of 32+ characters")
        if not secret and self.env == "test":
            self.secret_key = SecretStr(DEFAULT_SECRET_KEY)
        elif not secret and self.env == "development":
            self.secret_key = SecretStr(data_dir_secret(self.data_dir))
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    # Connectors: API versions (issue 18). One place per platform: integrations/<platform>/version.py.
    @model_validator(mode="after")
    def _pinned_api_versions(self) -> Settings:
        """An empty ``*_API_VERSION`` means the version the connector pins, so upgrading the
        pin (and its sunset table) upgrades every deployment that did not override it."""
        from omnify.integrations.versions import pinned_version  # lazy: keeps settings import-light

        self.meta_api_version = self.meta_api_version or pinned_version("meta_ads")
        self.google_ads_api_version = self.google_ads_api_version or pinned_version("google_ads")
        self.shopify_api_version = self.shopify_api_version or pinned_version("shopify")
        self.linkedin_api_version = self.linkedin_api_version or pinned_version("linkedin_ads")
        return self

    def configured_api_versions(self) -> list[tuple[str, str]]:
        return [("meta_ads", self.meta_api_version), ("google_ads", self.google_ads_api_version),
                ("shopify", self.shopify_api_version), ("linkedin_ads", self.linkedin_api_version)]

    @property
    def resolved_audit_export_url(self) -> str:
        return self.audit_export_url or f"file://{(self.data_dir / 'audit-export').resolve()}"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def insecure_settings(self) -> list[str]:
        """Name every development-only setting in force; empty when production-safe."""
        problems: list[str] = []
        secret = self.secret_key.get_secret_value()
        if not secret or secret in KNOWN_PUBLIC_SECRET_KEYS or len(secret) < 32:
            problems.append("OMNIFY_SECRET_KEY is unset, a published value or shorter than 32 characters")
        if self.debug:
            problems.append("OMNIFY_DEBUG must be false")
        if self.is_sqlite:
            problems.append("OMNIFY_DATABASE_URL must point at PostgreSQL, not SQLite")
        if "*" in self.cors_origins:
            problems.append("OMNIFY_CORS_ORIGINS must not contain '*'")
        from omnify.integrations.versions import expired_versions, pinned_version

        # Overrides only: the pinned versions are guarded by the suite's version gate.
        overrides = [(p, v) for p, v in self.configured_api_versions() if v != pinned_version(p)]
        problems += [f"API version no longer served: {p}" for p in expired_versions(overrides)]
        problems += self._deployment_problems()
        return problems

    def missing_platform_settings(self) -> dict[str, list[str]]:
        """``platform -> [OMNIFY_* names unset]`` for every platform the build supports."""
        from omnify.integrations.base import Platform

        missing: dict[str, list[str]] = {}
        for platform in Platform:
            fields = PLATFORM_APP_SETTINGS.get(platform.value)
            if fields is None:
                missing[platform.value] = ["(no entry in settings.PLATFORM_APP_SETTINGS)"]
                continue
            unset = [f"OMNIFY_{f.upper()}" for f in fields if not _present(getattr(self, f, None))]
            if unset:
                missing[platform.value] = unset
        return missing

    def _deployment_problems(self) -> list[str]:
        """What a real deployment needs to work at all (issue 14 item 6): each platform's
        app identity, a sender mail providers accept, the proxies to trust, public HTTPS."""
        problems = [f"{platform} app credentials are missing: {', '.join(names)}"
                    for platform, names in self.missing_platform_settings().items()]
        sender = self.email_from.rsplit("<", 1)[-1].rstrip(">").strip().lower()
        if "@" not in sender or sender.rsplit("@", 1)[1].endswith(PLACEHOLDER_EMAIL_DOMAINS):
            problems.append(f"OMNIFY_EMAIL_FROM must be a verified sender address, not {self.email_from!r}")
        if self.email_backend in ("console", "file"):
            problems.append("OMNIFY_EMAIL_BACKEND must deliver mail (smtp, ses or resend)")
        if not self.trusted_proxies:
            problems.append("OMNIFY_TRUSTED_PROXIES must name the ingress/load balancer addresses")
        if not self.public_base_url.startswith("https://"):
            problems.append("OMNIFY_PUBLIC_BASE_URL must be https://")
        return problems

    def assert_production_safe(self) -> None:
        if self.env == "staging" and len(self.secret_key.get_secret_value()) < 32:
            # Staging serves real sign-ins: it needs its own signing key, not a generated one per
            # replica (tokens would not verify across pods) and never an empty one.
            raise InsecureSettingError("refusing to start in staging: OMNIFY_SECRET_KEY is unset or "
                                       "shorter than 32 characters")
        if not self.is_production:
            return
        problems = self.insecure_settings()
        if problems:
            raise InsecureSettingError("refusing to start in production: " + "; ".join(problems))


SECRET_KEY_FILE_NAME = "secret-key"


def data_dir_secret(data_dir: Path) -> str:
    """The development signing key of ``data_dir``, written once (mode 0600) on first use.

    The API, the worker and the beat of one ``omnify up`` start at the same moment and must
    agree: the first process to write wins and the others read its key."""
    from omnify.core.private_files import create_private_once

    path = data_dir / SECRET_KEY_FILE_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        create_private_once(path, secrets.token_urlsafe(48))
    return path.read_text().strip()


def _present(value: object) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return bool(value)


@lru_cache
def get_settings() -> Settings:
    return Settings()
