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
from omnify.settings import InsecureSettingError, Settings

SAFE = dict(env="production", secret_key="x" * 48, database_url="postgresql+asyncpg://u@db/omnify",
            cors_origins=["https://app.omnify.dev"])


def test_production_accepts_safe_settings() -> None:
    Settings(**SAFE).assert_production_safe()


@pytest.mark.parametrize(("override", "named"), [
    ({"secret_key": "dev-insecure-change-me-0123456789abcdef"}, "OMNIFY_SECRET_KEY"),
    ({"debug": True}, "OMNIFY_DEBUG"),
    ({"database_url": None}, "OMNIFY_DATABASE_URL"),
    ({"cors_origins": ["*"]}, "OMNIFY_CORS_ORIGINS"),
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


def test_cors_origins_from_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIFY_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings().cors_origins == ["https://a.example", "https://b.example"]


def test_password_hashing_and_policy() -> None:
    s = Settings()
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
