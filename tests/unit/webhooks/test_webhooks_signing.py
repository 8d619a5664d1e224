"""Our Standard Webhooks signer, checked by the official ``standardwebhooks`` library."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from omnify.webhooks import events, signing
from omnify.webhooks.config import DEFAULT_RETRY_SCHEDULE, WebhookConfig
from omnify.webhooks.transport import excerpt


def test_generated_secrets_follow_the_spec() -> None:
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 32
    assert signing.generate_secret() != secret


def test_signature_verifies_with_the_official_library() -> None:
    secret = signing.generate_secret()
    body = events.encode({"type": "sync.failed", "data": {"é": "ü", "n": 1}})
    now = int(time.time())
    headers = signing.headers([secret], "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, body)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers) == {"type": "sync.failed", "data": {"é": "ü", "n": 1}}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(body, headers)


def test_matches_the_official_signer_byte_for_byte() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    ts = 1614265330
    official = Webhook(secret).sign("msg_p5jXN8AQM9LWM0D4loKWxJek", datetime.fromtimestamp(ts, tz=UTC),
                                    body.decode())
    assert signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", ts, body) == official


def test_two_secrets_during_rotation_each_verify() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    body = b'{"a":1}'
    headers = signing.headers([new, old], "msg_1", int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


def test_invalid_secrets_are_refused() -> None:
    with pytest.raises(signing.InvalidSecret):
        signing.secret_key("whsec_!!!")
    with pytest.raises(signing.InvalidSecret):
        signing.secret_key("whsec_" + base64.b64encode(b"short").decode())
    with pytest.raises(signing.InvalidSecret):
        signing.signature_header([], "m", 1, b"")


def test_envelope_is_versioned_and_stable() -> None:
    import uuid

    event_id, org_id = uuid.uuid4(), uuid.uuid4()
    created = datetime(2026, 3, 2, 10, 15, tzinfo=UTC)
    body = events.envelope("client.created", event_id=event_id, org_id=org_id, created_at=created,
                           data={"client_id": uuid.UUID(int=1), "at": created})
    assert body == {"type": "client.created", "version": 1, "id": str(event_id), "created_at": "2026-03-02T10:15:00Z",
                    "org_id": str(org_id), "data": {"client_id": str(uuid.UUID(int=1)),
                                                    "at": "2026-03-02 10:15:00+00:00"}}
    assert events.encode(body) == events.encode(dict(reversed(list(body.items()))))
    with pytest.raises(events.UnknownEventType):
        events.event_type("client.exploded")
    assert {"client.created", "client.onboarding_completed", "credential.expiring", "connection.failed",
            "sync.completed", "sync.failed", "recommendation.created", "action.applied"} <= events.SUBSCRIBABLE


def test_config_defaults_and_settings() -> None:
    from omnify.settings import Settings

    config = WebhookConfig.from_settings(Settings(env="production", secret_key="x" * 40,
                                                  database_url="postgresql+asyncpg://h/db"))
    assert config.production and config.retry_schedule == DEFAULT_RETRY_SCHEDULE
    assert DEFAULT_RETRY_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert config.max_attempts == 8 and config.disable_after == 5 * 24 * 3600 and config.secret_overlap == 86400
    assert not config.host_allowed("localhost")
    with pytest.raises(ValueError):
        WebhookConfig(retry_schedule=())
    with pytest.raises(ValueError):
        WebhookConfig(retry_schedule=(0, -1))


def test_response_excerpt_is_at_most_1_kb_of_utf8() -> None:
    assert excerpt(b"ok") == "ok"
    text = excerpt(("é" * 2000).encode())
    assert len(text.encode()) <= 1024 and set(text) == {"é"}
    assert len(excerpt(b"\xff" * 5000).encode()) <= 1024


def test_docs_list_every_event_type_with_its_version() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "webhooks.md").read_text()
    for name, spec in events.CATALOGUE.items():
        assert f"### `{name}` (version {spec.version})" in doc, name
