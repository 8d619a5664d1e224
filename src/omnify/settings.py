"""Every knob of Omnify, read from the environment (prefix ``OMNIFY_``).

Defaults are chosen so that ``omnify up`` works on a bare laptop (SQLite, in-process
cache and rate limits, local file storage). ``OMNIFY_ENV=production`` turns on
:meth:`Settings.assert_production_safe`, which refuses to boot with a setting that is
only acceptable on a developer machine.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SECRET_KEY = "dev-insecure-change-me-0123456789abcdef"


class InsecureSettingError(RuntimeError):
    """Raised at start-up when production runs with a development-only setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OMNIFY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["development", "test", "staging", "production"] = "development"
    debug: bool = False
    log_level: str = "INFO"
    log_json: bool = True
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
    db_pool_pre_ping: bool = True
    db_echo: bool = False

    # Redis / broker
    redis_url: str | None = None
    broker_url: str | None = None
    result_backend_url: str | None = None

    # Security
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "omnify"
    access_token_ttl_seconds: int = Field(900, ge=60)
    refresh_token_ttl_seconds: int = Field(30 * 24 * 3600, ge=3600)
    invitation_ttl_seconds: int = Field(7 * 24 * 3600, ge=3600)
    password_reset_ttl_seconds: int = Field(3600, ge=300)
    password_min_length: int = Field(10, ge=8)
    login_max_failures: int = Field(5, ge=1)
    login_lockout_seconds: int = Field(900, ge=1)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["http://127.0.0.1:8000", "http://localhost:8000"])
    max_request_body_bytes: int = Field(1 * 1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    https_only: bool = False
    trust_forwarded_for: bool = False  # only behind a proxy that overwrites X-Forwarded-For
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
    meta_api_version: str = "v21.0"
    google_client_id: str = ""
    google_client_secret: SecretStr | None = None
    google_developer_token: SecretStr | None = None
    google_login_customer_id: str | None = None
    google_ads_url: str = "https://googleads.googleapis.com"
    google_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"
    google_revoke_url: str = "https://oauth2.googleapis.com/revoke"
    google_ads_api_version: str = "v20"

    tiktok_app_id: str | None = None
    tiktok_app_secret: SecretStr | None = None
    tiktok_base_url: str = "https://business-api.tiktok.com"
    tiktok_auth_url: str = "https://business-api.tiktok.com/portal/auth"
    shopify_api_key: str | None = None
    shopify_api_secret: SecretStr | None = None
    shopify_shop_url_template: str = "https://{shop}"
    shopify_api_version: str = "2024-10"

    # Connections and sync
    connections_state_ttl_seconds: float = Field(600.0, ge=60)
    connections_refresh_skew_seconds: float = Field(300.0, ge=0)
    connections_refresh_windows: dict[str, float] = Field(default_factory=dict)  # over meta 7d/google 15m/tiktok 2h
    sync_backfill_days: int = Field(365, ge=1)
    sync_lookback_days: int = Field(28, ge=1)
    sync_interval_seconds: float = Field(3600.0, gt=0)
    sync_max_backoff_seconds: float = Field(21600.0, gt=0)
    sync_lock_lease_seconds: float = Field(900.0, gt=0)
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

    # Audit
    audit_retention_days: int = Field(7 * 365, ge=1)

    # Plans / quotas (defaults for the "free" plan)
    default_plan: str = "free"

    @field_validator("cors_origins", "webhook_allowed_hosts", "webhook_retry_schedule", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                import json

                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
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

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def insecure_settings(self) -> list[str]:
        """Name every development-only setting in force; empty when production-safe."""
        problems: list[str] = []
        secret = self.secret_key.get_secret_value()
        if secret == DEFAULT_SECRET_KEY or len(secret) < 32:
            problems.append("OMNIFY_SECRET_KEY is the default or shorter than 32 characters")
        if self.debug:
            problems.append("OMNIFY_DEBUG must be false")
        if self.is_sqlite:
            problems.append("OMNIFY_DATABASE_URL must point at PostgreSQL, not SQLite")
        if "*" in self.cors_origins:
            problems.append("OMNIFY_CORS_ORIGINS must not contain '*'")
        return problems

    def assert_production_safe(self) -> None:
        if not self.is_production:
            return
        problems = self.insecure_settings()
        if problems:
            raise InsecureSettingError("refusing to start in production: " + "; ".join(problems))


@lru_cache
def get_settings() -> Settings:
    return Settings()
