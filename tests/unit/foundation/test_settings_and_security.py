from __future__ import annotations

import pytest

from omnify.core.pagination import decode_cursor, encode_cursor
from omnify.core.security import (
    InvalidToken,
    create_access_token,
    decode_access_token,
    hash_password,
    invitation_org,
    new_invitation_token,
    password_problems,
    verify_password,
)
from omnify.settings import PLATFORM_APP_SETTINGS, InsecureSettingError, Settings
from tests.factories import production_safe

SAFE = production_safe()


def test_production_accepts_safe_settings() -> None:
    Settings(**SAFE).assert_production_safe()


@pytest.mark.parametrize(("override", "named"), [
    ({"secret_key": "dev-insecure-change-me-0123456789abcdef"}, "OMNIFY_SECRET_KEY"),
    ({"debug": True}, "OMNIFY_DEBUG"),
    ({"database_url": None}, "OMNIFY_DATABASE_URL"),
    ({"cors_origins": ["*"]}, "OMNIFY_CORS_ORIGINS"),
    ({"email_from": "Omnify <no-reply@omnify.local>"}, "OMNIFY_EMAIL_FROM"),
    ({"email_backend": "console"}, "OMNIFY_EMAIL_BACKEND"),
    ({"trusted_proxies": []}, "OMNIFY_TRUSTED_PROXIES"),
    ({"public_base_url": "http://app.omnify.dev"}, "OMNIFY_PUBLIC_BASE_URL"),
    ({"meta_app_secret": None}, "OMNIFY_META_APP_SECRET"),
    ({"google_developer_token": None}, "OMNIFY_GOOGLE_DEVELOPER_TOKEN"),
    ({"tiktok_app_id": ""}, "OMNIFY_TIKTOK_APP_ID"),
    ({"shopify_api_key": None}, "OMNIFY_SHOPIFY_API_KEY"),
])
def test_production_refuses_insecure_setting(override: dict[str, object], named: str) -> None:
    with pytest.raises(InsecureSettingError) as err:
        Settings(**{**SAFE, **override}).assert_production_safe()
    message = str(err.value)
    assert named in message and "\n" not in message


def test_cli_refuses_to_serve_insecure_production(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMNIFY_ENV": "production", "OMNIFY_DATA_DIR": str(tmp_path)}
    env.pop("OMNIFY_DATABASE_URL", None)
    res = subprocess.run([sys.executable, "-m", "omnify.cli", "serve"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1
    assert "OMNIFY_SECRET_KEY" in res.stderr and "Traceback" not in res.stderr


def test_cors_origins_from_comma_list(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OMNIFY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OMNIFY_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings().cors_origins == ["https://a.example", "https://b.example"]


def test_production_password_hasher_parameters() -> None:
    """The suite hashes with argon2id at its smallest cost (tests/conftest.py); production keeps
    argon2-cffi's RFC 9106 low-memory profile, above OWASP's minimum (19 MiB, 2 passes)."""
    from argon2 import Type

    from tests.conftest import PRODUCTION_PASSWORD_HASHER as h

    assert h.type is Type.ID and h.memory_cost >= 19 * 1024 and h.time_cost >= 2 and h.parallelism >= 1
    assert h.hash("correct-horse-battery-staple-42").startswith(f"$argon2id$v=19$m={h.memory_cost},t={h.time_cost},")


def test_password_hashing_and_policy() -> None:
    s = Settings(env="test")
    h = hash_password("correct-horse-battery-staple-42")
    assert h.startswith("$argon2id$")
    assert verify_password("correct-horse-battery-staple-42", h)
    assert not verify_password("wrong", h)
    assert not verify_password("anything", None)
    assert password_problems("short", s)
    assert password_problems("password1234", s)  # common/breached
    assert password_problems("alice@example.com1", s, ["alice@example.com"])
    assert password_problems("correct-horse-battery-staple-42", s) == []


def test_access_tokens() -> None:
    import uuid

    s = Settings(secret_key="k" * 40)
    uid = uuid.uuid4()
    token, _ = create_access_token(s, uid, 3)
    claims = decode_access_token(s, token)
    assert claims.user_id == uid and claims.session_version == 3
    with pytest.raises(InvalidToken):
        decode_access_token(Settings(secret_key="other" * 10), token)
    with pytest.raises(InvalidToken):
        decode_access_token(s, token[:-2] + "xx")


def test_invitation_token_carries_org_and_cursor_roundtrip() -> None:
    import uuid
    from datetime import UTC, datetime

    org = uuid.uuid4()
    assert invitation_org(new_invitation_token(org)) == org
    assert invitation_org("oinv_nothex_abc") is None
    now = datetime.now(UTC)
    rid = uuid.uuid4()
    assert decode_cursor(encode_cursor(now, rid)) == (now, rid)


def test_every_platform_declares_its_app_settings() -> None:
    """A new ``Platform`` must say which settings identify its app, or production refuses it."""
    from omnify.integrations.base import Platform

    for platform in Platform:
        fields = PLATFORM_APP_SETTINGS.get(platform.value)
        assert fields, f"{platform.value}: add its app settings to settings.PLATFORM_APP_SETTINGS"
        assert all(f in Settings.model_fields for f in fields), (platform.value, fields)


def test_signing_key_is_generated_per_data_directory_and_published_keys_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 14 item 9: a token forged with the key in the source must not verify anywhere."""
    import os
    import uuid

    from omnify.settings import DEFAULT_SECRET_KEY, KNOWN_PUBLIC_SECRET_KEYS

    first = Settings(env="development", data_dir=tmp_path / "a")
    key = first.secret_key.get_secret_value()
    assert len(key) >= 48 and key not in KNOWN_PUBLIC_SECRET_KEYS
    assert (tmp_path / "a" / "secret-key").stat().st_mode & 0o777 == 0o600
    # The worker and the beat of the same data directory sign with the same key ...
    assert Settings(env="development", data_dir=tmp_path / "a").secret_key.get_secret_value() == key
    # ... another data directory with its own.
    assert Settings(env="development", data_dir=tmp_path / "b").secret_key.get_secret_value() != key
    assert not [p for p in os.listdir(tmp_path / "a") if p.startswith(".")], "temporary key files left behind"

    forged = create_access_token(Settings(env="test"), uuid.uuid4(), 0)[0]
    with pytest.raises(InvalidToken):
        decode_access_token(first, forged)
    for env in ("development", "staging", "production"):
        for published in KNOWN_PUBLIC_SECRET_KEYS:
            with pytest.raises(InsecureSettingError, match="OMNIFY_SECRET_KEY"):
                Settings(env=env, data_dir=tmp_path / "c", secret_key=published)
    with pytest.raises(InsecureSettingError, match="staging: OMNIFY_SECRET_KEY"):
        Settings(env="staging", data_dir=tmp_path / "d").assert_production_safe()
    assert not (tmp_path / "d").exists(), "staging must not generate a per-replica key"
    assert Settings(env="test").secret_key.get_secret_value() == DEFAULT_SECRET_KEY
