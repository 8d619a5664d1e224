"""Settings → Webhooks pages: the secret shown once, CSRF, the API's permission gate, the
SSRF guard's refusals on the form, and a test event that really reaches a receiver and
shows in the delivery log (with replay of a dead letter)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from omnify.app import create_app
from omnify.core.db import Database
from omnify.settings import Settings
from omnify.webhooks import service
from omnify.webhooks.config import WebhookConfig
from tests.conftest import DatabaseUrls, make_settings
from tests.factories import register
from tests.integration.web.web_support import WebSession, join_as, new_web, sign_up
from tests.webhook_receiver import HookReceiver, hook_receiver

SECRET_RE = re.compile(r'id="endpoint-secret">(whsec_[^<]+)<')
DELIVERY_RE = re.compile(r'data-delivery="([0-9a-f-]{36})" data-status="(\w+)"')


def hooks(web: WebSession) -> str:
    return f"/orgs/{web.org_id}/webhooks"


def endpoint_form(url: str, *types: str, enabled: bool = True, description: str = "") -> dict[str, Any]:
    form: dict[str, Any] = {"url": url, "description": description, "event_types": list(types)}
    if enabled:
        form["enabled"] = "on"
    return form


async def create(web: WebSession, url: str, *types: str) -> tuple[str, str]:
    """(endpoint id, secret) of a new endpoint, created through the form."""
    await web.get(hooks(web))
    resp = await web.post(hooks(web), endpoint_form(url, *types))
    assert resp.status_code == 201, resp.text[:2000]
    secret = SECRET_RE.search(resp.text)
    endpoint = re.search(rf'action="{hooks(web)}/([0-9a-f-]{{36}})/test"', resp.text)
    assert secret and endpoint, resp.text[:2000]
    return endpoint.group(1), secret.group(1)


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    with hook_receiver() as found:
        yield found


@pytest.fixture
def local_settings(settings: Settings, db_urls: DatabaseUrls) -> Settings:
    """The test settings plus the development allow-list, so an endpoint may aim at 127.0.0.1."""
    return make_settings(settings.data_dir, db_urls, webhook_allowed_hosts=["127.0.0.1"])


@pytest.fixture
async def local_web(local_settings: Settings, database: Database) -> AsyncIterator[WebSession]:
    session = new_web(create_app(local_settings, database))
    yield session
    await session.aclose()


async def test_create_shows_the_secret_once(web: WebSession) -> None:
    await sign_up(web)
    empty = await web.get(hooks(web))
    assert empty.status_code == 200 and "No webhook endpoint yet" in empty.text
    assert 'aria-current="page">Webhooks' in empty.text and 'value="sync.failed"' in empty.text
    assert 'value="webhook.test"' not in empty.text  # not subscribable: it goes to its endpoint only
    endpoint_id, secret = await create(web, "https://hooks.example.com/omnify", "sync.failed", "action.applied")
    assert secret.startswith("whsec_") and len(secret) > 30

    listed = await web.get(hooks(web))
    assert "https://hooks.example.com/omnify" in listed.text and "action.applied, sync.failed" in listed.text
    detail = await web.get(f"{hooks(web)}/{endpoint_id}")
    assert detail.status_code == 200 and "No delivery yet" in detail.text
    assert secret[:10] + "…" in detail.text  # the hint only
    for page in (listed, detail):
        assert secret not in page.text and "endpoint-secret" not in page.text

    rotated = await web.post(f"{hooks(web)}/{endpoint_id}/rotate")
    assert rotated.status_code == 200, rotated.text[:1000]
    new_secret = SECRET_RE.search(rotated.text)
    assert new_secret and new_secret.group(1) != secret and "previous secret signs too" in rotated.text
    again = await web.get(f"{hooks(web)}/{endpoint_id}")
    assert new_secret.group(1) not in again.text and "rotated" in again.text
    audit = await web.get(f"/orgs/{web.org_id}/audit", params={"action_prefix": "webhook_endpoint."})
    assert "webhook_endpoint.created" in audit.text and "webhook_endpoint.secret_rotated" in audit.text
    assert secret not in audit.text and new_secret.group(1) not in audit.text


async def test_writes_without_the_csrf_token_are_refused(web: WebSession) -> None:
    await sign_up(web)
    await web.get(hooks(web))
    refused = await web.post(hooks(web), endpoint_form("https://hooks.example.com/no-token"), csrf=False)
    assert refused.status_code == 403 and "security token" in refused.text.lower()
    assert refused.headers["content-type"].startswith("text/html")
    assert "hooks.example.com/no-token" not in (await web.get(hooks(web))).text
    endpoint_id, _ = await create(web, "https://hooks.example.com/with-token")
    for action in ("test", "rotate", "delete"):
        resp = await web.post(f"{hooks(web)}/{endpoint_id}/{action}", {"csrf_token": "0" * 64}, csrf=False)
        assert resp.status_code == 403, (action, resp.status_code)
    page = await web.get(f"{hooks(web)}/{endpoint_id}")
    assert page.status_code == 200 and "No delivery yet" in page.text and "rotated" not in page.text


@pytest.mark.parametrize("role", ["viewer", "member"])
async def test_viewers_and_members_get_a_403_page_and_no_nav_entry(
        web: WebSession, other_web: WebSession, owner_database: Database, role: str) -> None:
    await sign_up(web)
    endpoint_id, _ = await create(web, "https://hooks.example.com/admins-only")
    owner_team = await web.get(f"/orgs/{web.org_id}/settings/team")
    assert f'href="{hooks(web)}"' in owner_team.text
    await join_as(web, other_web, owner_database, role)
    team = await other_web.get(f"/orgs/{web.org_id}/settings/team")
    assert team.status_code == 200 and f'href="{hooks(web)}"' not in team.text
    for path in ("", f"/{endpoint_id}", f"/{endpoint_id}/deliveries"):
        resp = await other_web.get(hooks(web) + path)
        assert resp.status_code == 403, (path, resp.status_code)
        assert resp.headers["content-type"].startswith("text/html") and "Not allowed" in resp.text
    writes = [(hooks(web), endpoint_form("https://hooks.example.com/sneaky")),
              (f"{hooks(web)}/{endpoint_id}/test", {}), (f"{hooks(web)}/{endpoint_id}/rotate", {}),
              (f"{hooks(web)}/{endpoint_id}/delete", {})]
    for url, form in writes:
        resp = await other_web.post(url, form)  # with a valid token: refused by the permission gate
        assert resp.status_code == 403, (url, resp.status_code)
    listed = await web.get(hooks(web))
    assert "sneaky" not in listed.text and "admins-only" in listed.text
    detail = await web.get(f"{hooks(web)}/{endpoint_id}")
    assert "No delivery yet" in detail.text and "rotated" not in detail.text


async def test_another_orgs_endpoints_are_404_pages(web: WebSession, client: httpx.AsyncClient) -> None:
    await sign_up(web)
    stranger = await register(client)
    foreign = await client.post(f"/api/v1/orgs/{stranger.org_id}/webhook-endpoints", headers=stranger.headers,
                                json={"url": "https://hooks.example.com/theirs"})
    assert foreign.status_code == 201
    foreign_id = foreign.json()["id"]
    await web.get(hooks(web))
    for url in (f"/orgs/{stranger.org_id}/webhooks", f"{hooks(web)}/{foreign_id}", f"{hooks(web)}/{uuid.uuid4()}"):
        resp = await web.get(url)
        assert resp.status_code == 404 and "Page not found" in resp.text, url
    for action in ("test", "rotate", "delete"):
        resp = await web.post(f"{hooks(web)}/{foreign_id}/{action}")
        assert resp.status_code == 404, action
    still = await client.get(f"/api/v1/orgs/{stranger.org_id}/webhook-endpoints/{foreign_id}",
                             headers=stranger.headers)
    assert still.status_code == 200 and still.json()["secret_rotated_at"] is None


@pytest.mark.parametrize(("url", "types", "field", "message"), [
    ("ftp://hooks.example.com/x", (), "url", "must start with https://"),
    ("http://10.1.2.3/hook", (), "url", "non-public address (10.1.2.3)"),
    ("http://169.254.169.254/latest/meta-data", (), "url", "non-public address"),
    ("http://localhost:8080/hook", (), "url", "localhost"),
    ("https://user:pw@hooks.example.com/x", (), "url", "Credentials in the URL"),
    ("short", (), "url", "at least 8 characters"),
    ("https://hooks.example.com/x", ("sync.failed", "no.such.event"), "event_types", "unknown event type"),
], ids=["scheme", "private", "metadata", "localhost", "credentials", "short", "unknown-type"])
async def test_bad_input_is_explained_on_the_form(web: WebSession, url: str, types: tuple[str, ...], field: str,
                                                   message: str) -> None:
    await sign_up(web)
    await web.get(hooks(web))
    resp = await web.post(hooks(web), endpoint_form(url, *types, description="kept on the form"))
    assert resp.status_code == 422, resp.text[:1000]
    assert resp.headers["content-type"].startswith("text/html")
    assert message in resp.text and "The endpoint was not created" in resp.text
    marker = 'id="f-url-err"' if field == "url" else 'id="et-err"'
    assert marker in resp.text and 'aria-invalid="true"' in resp.text
    assert 'value="kept on the form"' in resp.text  # what was typed stays
    assert "No webhook endpoint yet" in resp.text and "endpoint-secret" not in resp.text


async def test_editing_keeps_the_ssrf_guard_and_saves_good_changes(web: WebSession) -> None:
    await sign_up(web)
    endpoint_id, _ = await create(web, "https://hooks.example.com/editable")
    here = f"{hooks(web)}/{endpoint_id}"
    refused = await web.post(here, endpoint_form("http://192.168.1.10/hook", "client.created"))
    assert refused.status_code == 422 and "non-public address (192.168.1.10)" in refused.text
    assert "The changes were not saved" in refused.text
    emptied = await web.post(here, endpoint_form("", "client.created"))
    assert emptied.status_code == 422 and "Enter the URL" in emptied.text
    unchanged = await web.get(here)
    assert "hooks.example.com/editable" in unchanged.text and "every event type" in unchanged.text
    saved = await web.post(here, endpoint_form("https://hooks.example.com/moved", "client.created",
                                               description="CRM", enabled=False))
    assert saved.status_code == 303 and saved.headers["location"].endswith("flash=endpoint-saved")
    page = await web.follow(saved)
    assert "Webhook endpoint saved." in page.text and "hooks.example.com/moved" in page.text
    assert "badge-disabled" in page.text and "client.created" in page.text and "CRM" in page.text
    # A disabled endpoint refuses a test, with the reason on the page (not a 500, not a bare error).
    test = await web.post(f"{here}/test")
    assert test.status_code == 409 and "enable it before sending a test event" in test.text


async def test_a_test_event_reaches_the_receiver_and_a_dead_letter_can_be_replayed(
        local_web: WebSession, local_settings: Settings, database: Database, receiver: HookReceiver) -> None:
    web = local_web
    await sign_up(web)
    endpoint_id, secret = await create(web, receiver.url)
    here = f"{hooks(web)}/{endpoint_id}"
    page = await web.get(here)
    key = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', page.text)
    assert key
    sent = await web.post(f"{here}/test", {"idempotency_key": key.group(1)})
    assert sent.status_code == 303 and sent.headers["location"].endswith("flash=test-sent")
    twice = await web.post(f"{here}/test", {"idempotency_key": key.group(1)})  # a double click
    assert twice.status_code == 303
    log = await web.follow(sent)
    rows = DELIVERY_RE.findall(log.text)
    assert len(rows) == 1 and rows[0][1] == "pending", rows
    assert "Test event queued" in log.text and f'hx-get="{here}/deliveries"' in log.text  # polls while pending
    delivery_id = rows[0][0]

    config = WebhookConfig.from_settings(local_settings)
    async with database.sessionmaker() as session:
        outcome = await service.attempt_delivery(session, local_settings, config, uuid.UUID(delivery_id),
                                                 uuid.UUID(web.org_id))
    assert outcome is not None and outcome.status == "succeeded"
    [hit] = receiver.received()
    payload = Webhook(secret).verify(hit.body, hit.headers)  # signed with the secret the page showed once
    assert payload["type"] == "webhook.test" and payload["data"]["endpoint_id"] == endpoint_id

    fragment = await web.htmx("GET", f"{here}/deliveries")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert DELIVERY_RE.findall(fragment.text) == [(delivery_id, "succeeded")] and "hx-get" not in fragment.text
    assert "HTTP 200" in fragment.text
    detail = await web.get(f"{here}/deliveries/{delivery_id}")
    assert detail.status_code == 200 and "This is a test event from Omnify." in detail.text
    assert "HTTP 200" in detail.text and "Replay this delivery" not in detail.text

    # A receiver that fails, one attempt per cycle: a dead letter, found by the filter and replayed.
    receiver.status = 500
    await web.post(f"{here}/test")
    pending = [d for d, s in DELIVERY_RE.findall((await web.get(here, params={"status": "pending"})).text)]
    assert len(pending) == 1 and pending[0] != delivery_id
    one_try = WebhookConfig(allowed_hosts=frozenset({"127.0.0.1"}), retry_schedule=(0,))
    async with database.sessionmaker() as session:
        outcome = await service.attempt_delivery(session, local_settings, one_try, uuid.UUID(pending[0]),
                                                 uuid.UUID(web.org_id))
    assert outcome is not None and outcome.status == "failed"
    dead = await web.get(here, params={"status": "failed"})
    assert DELIVERY_RE.findall(dead.text) == [(pending[0], "failed")] and "HTTP 500" in dead.text
    replay = f"{here}/deliveries/{pending[0]}/replay"
    assert f'action="{replay}"' in dead.text
    replayed = await web.post(replay)
    assert replayed.status_code == 303 and replayed.headers["location"].endswith("flash=replayed")
    after = await web.follow(replayed)
    assert (pending[0], "pending") in DELIVERY_RE.findall(after.text) and "replayed 1" in after.text
    not_dead = await web.post(replay)
    assert not_dead.status_code == 409 and "Only dead-lettered (failed) deliveries can be replayed" in not_dead.text
    bad_filter = await web.get(here, params={"status": "bogus", "cursor": "forged!!"})
    assert bad_filter.status_code == 200 and "Unknown status" in bad_filter.text and "no longer valid" in bad_filter.text

    deleted = await web.post(f"{here}/delete")
    assert deleted.status_code == 303 and deleted.headers["location"].endswith("flash=endpoint-deleted")
    listed = await web.follow(deleted)
    assert "Webhook endpoint deleted." in listed.text and receiver.url not in listed.text
    assert (await web.get(here)).status_code == 404
