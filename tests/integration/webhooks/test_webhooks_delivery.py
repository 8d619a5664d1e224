"""Outbound delivery against a real HTTP server: retries, signatures, dead letters, replay,
rotation, auto-disable, SSRF refusals and TLS pinning.

Signatures are verified with ``standardwebhooks``, the spec's official library, so our
signer and an independent implementation must agree.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from omnify.audit.models import AuditLog
from omnify.core.context import Actor
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.notifications.models import EmailOutbox
from omnify.settings import Settings
from omnify.webhooks import service
from omnify.webhooks.config import WebhookConfig
from omnify.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from omnify.webhooks.ssrf import Resolver, system_resolver
from tests.factories import Account

from .conftest import TLS_HOST, Receiver, TlsMaterial

#: The receiver's name: only our test resolver knows it (-> 127.0.0.1), and the
#: development allow-list lets deliveries reach it.
HOST = "receiver.test"
LOCAL = frozenset({HOST, "127.0.0.1"})


async def receiver_resolver(host: str, port: int) -> list[str]:
    if host == HOST:
        return ["127.0.0.1"]
    return await system_resolver(host, port)


def dev_config(**overrides: Any) -> WebhookConfig:
    values: dict[str, Any] = {"allowed_hosts": LOCAL, "retry_schedule": (0, 0.2, 0.2, 0.2), "timeout": 5.0}
    values.update(overrides)
    return WebhookConfig(**values)


async def create_saved_endpoint(database: Database, settings: Settings, who: Account, url: str) -> None:
    """An endpoint saved while its URL passed (development, or before its DNS changed)."""
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(who.org_id))
        await service.create_endpoint(s, settings, WebhookConfig(allowed_hosts=frozenset({httpx.URL(url).host})),
                                      uuid.UUID(who.org_id), Actor.system("test"), url=url, description=None,
                                      event_types=[], enabled=True)


async def create_endpoint(client: httpx.AsyncClient, who: Account, url: str, **body: Any) -> dict[str, Any]:
    resp = await client.post(f"/api/v1/orgs/{who.org_id}/webhook-endpoints", headers=who.headers,
                             json={"url": url, **body})
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def emit(database: Database, org_id: str, event_type: str, data: dict[str, Any]) -> list[uuid.UUID]:
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(org_id))
        ids = await service.fan_out(s, uuid.UUID(org_id), event_type, data)
        await s.commit()
    return ids


async def drive(
    database: Database, settings: Settings, config: WebhookConfig, org_id: str, ids: list[uuid.UUID],
    resolver: Resolver | None = receiver_resolver, timeout: float = 20.0,
) -> dict[uuid.UUID, str]:
    """Attempt each delivery whenever it is due until all are final (what the worker does)."""
    deadline = time.monotonic() + timeout
    status: dict[uuid.UUID, str] = dict.fromkeys(ids, "pending")
    while time.monotonic() < deadline:
        for delivery_id in [i for i, st in status.items() if st == "pending"]:
            async with database.sessionmaker() as s:
                outcome = await service.attempt_delivery(s, settings, config, delivery_id, uuid.UUID(org_id),
                                                         resolver=resolver)
            if outcome is not None:
                status[delivery_id] = outcome.status
        if all(st != "pending" for st in status.values()):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries still pending after {timeout} s: {status}")


async def deliveries(database: Database, org_id: str, ids: list[uuid.UUID]) -> list[WebhookDelivery]:
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(org_id))
        return list((await s.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))).all())


async def attempts(database: Database, org_id: str, delivery_id: uuid.UUID) -> list[WebhookAttempt]:
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(org_id))
        return list((await s.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
                                     .order_by(WebhookAttempt.number))).all())


async def test_retries_deliver_everything_with_verifiable_signatures(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings, receiver: Receiver,
    nudges: list[Any],
) -> None:
    receiver.fail_first = 2
    endpoint = await create_endpoint(client, owner, receiver.url(host=HOST), event_types=["sync.failed", "client.created"])
    ids: list[uuid.UUID] = []
    for i in range(5):
        ids += await emit(database, owner.org_id, "sync.failed" if i % 2 else "client.created",
                          {"client_id": str(uuid.uuid4()), "n": i, "note": "naïve ünïcode"})
    assert await emit(database, owner.org_id, "action.applied", {"action_id": "x"}) == []  # not subscribed
    assert len(ids) == 5

    status = await drive(database, settings, dev_config(), owner.org_id, ids)
    assert set(status.values()) == {"succeeded"}

    # Nothing lost: each message arrived, was retried exactly twice, and verifies.
    wh = Webhook(endpoint["secret"])
    delivered = receiver.successes()
    rows = await deliveries(database, owner.org_id, ids)
    assert set(delivered) == {str(d.event_id) for d in rows}
    for hit in delivered.values():
        payload = wh.verify(hit.body, hit.headers)
        assert set(payload) == {"type", "version", "id", "created_at", "org_id", "data"}
        assert payload["version"] == 1 and payload["org_id"] == owner.org_id
        assert payload["id"] == hit.headers["webhook-id"]
        assert payload["data"]["note"] == "naïve ünïcode"
        assert hit.path == "/hooks" and hit.headers["content-type"] == "application/json"
    assert all(n == 3 for n in receiver.tries.values())
    # Every attempt of every retry carried the same webhook-id and the same body.
    for msg_id in delivered:
        bodies = {h.body for h in receiver.hits if h.headers["webhook-id"] == msg_id}
        assert len(bodies) == 1

    # Every attempt is logged: status, latency, a response excerpt of at most 1 KB.
    for delivery in rows:
        log = await attempts(database, owner.org_id, delivery.id)
        assert [a.status_code for a in log] == [500, 500, 200]
        assert [a.success for a in log] == [False, False, True]
        assert all(a.duration_ms >= 0 and a.ip == "127.0.0.1" for a in log)
        assert all(len((a.response_excerpt or "").encode()) <= 1024 for a in log)
        assert log[0].response_excerpt and log[0].response_excerpt.startswith("receiver error")
        assert log[1].created_at - log[0].created_at >= timedelta(seconds=0.19)
        assert delivery.attempts == 3 and delivery.succeeded_at is not None

    # The fan-out nudged one deliver task per delivery, after its commit.
    from omnify.notifications import dispatch

    await dispatch.drain()
    nudged = {call[1]["delivery_id"] for call in nudges if call[0] == "omnify.webhooks.deliver"}
    assert {str(i) for i in ids} <= nudged


async def test_dead_letter_then_replay_one_and_bulk(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings, receiver: Receiver,
) -> None:
    receiver.always_fail = True
    endpoint = await create_endpoint(client, owner, receiver.url(host=HOST, path="/dead"))
    ids = await emit(database, owner.org_id, "recommendation.created", {"recommendation_id": "r1"})
    ids += await emit(database, owner.org_id, "action.applied", {"action_id": "a1"})
    config = dev_config(retry_schedule=(0, 0.1))
    status = await drive(database, settings, config, owner.org_id, ids)
    assert set(status.values()) == {"failed"}
    assert len(receiver.hits) == 4  # two attempts each, then dead-lettered

    receiver.always_fail = False
    base = f"/api/v1/orgs/{owner.org_id}/webhook-endpoints/{endpoint['id']}"
    one = await client.post(f"{base}/deliveries/{ids[0]}/replay", headers=owner.headers)
    assert one.status_code == 202
    assert (await drive(database, settings, config, owner.org_id, [ids[0]]))[ids[0]] == "succeeded"
    bulk = await client.post(f"{base}/replay", headers=owner.headers, json={})
    assert bulk.json() == {"replayed": 1}
    assert (await drive(database, settings, config, owner.org_id, [ids[1]]))[ids[1]] == "succeeded"

    wh = Webhook(endpoint["secret"])
    types = sorted(wh.verify(h.body, h.headers)["type"] for h in receiver.successes().values())
    assert types == ["action.applied", "recommendation.created"]
    rows = {d.id: d for d in await deliveries(database, owner.org_id, ids)}
    assert all(d.replay_count == 1 and d.attempts == 3 and d.status == "succeeded" for d in rows.values())


async def test_rotation_signs_with_both_secrets_during_overlap(
    client: httpx.AsyncClient, owner: Account, database: Database, owner_database: Database, settings: Settings,
    receiver: Receiver,
) -> None:
    endpoint = await create_endpoint(client, owner, receiver.url(host=HOST, path="/rotate"))
    old_secret = endpoint["secret"]
    rotated = await client.post(f"/api/v1/orgs/{owner.org_id}/webhook-endpoints/{endpoint['id']}/rotate-secret",
                                headers=owner.headers)
    new_secret = rotated.json()["secret"]

    ids = await emit(database, owner.org_id, "client.created", {"client_id": "c1"})
    await drive(database, settings, dev_config(), owner.org_id, ids)
    hit = receiver.hits[-1]
    assert len(hit.headers["webhook-signature"].split(" ")) == 2
    Webhook(new_secret).verify(hit.body, hit.headers)
    Webhook(old_secret).verify(hit.body, hit.headers)  # receivers not yet updated keep working

    async with owner_database.sessionmaker() as s:  # the 24 h overlap has passed
        await s.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == uuid.UUID(endpoint["id"]))
                        .values(previous_secret_expires_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    ids = await emit(database, owner.org_id, "client.created", {"client_id": "c2"})
    await drive(database, settings, dev_config(), owner.org_id, ids)
    hit = receiver.hits[-1]
    assert len(hit.headers["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(hit.body, hit.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old_secret).verify(hit.body, hit.headers)


async def test_failing_endpoint_is_disabled_and_owners_emailed(
    client: httpx.AsyncClient, owner: Account, database: Database, owner_database: Database, settings: Settings,
    receiver: Receiver,
) -> None:
    receiver.always_fail = True
    receiver.fail_status = 503
    endpoint = await create_endpoint(client, owner, receiver.url(host=HOST, path="/down"))
    first = await emit(database, owner.org_id, "sync.completed", {"sync_run_id": "s1"})
    config = dev_config(retry_schedule=(0, 0.2, 0.2, 0.2, 0.2, 0.2), disable_after=0.5)
    # Only the first delivery is driven; a second one waits in the queue.
    second = await emit(database, owner.org_id, "sync.completed", {"sync_run_id": "s2"})
    status = await drive(database, settings, config, owner.org_id, first)
    assert status[first[0]] == "failed"

    got = (await client.get(f"/api/v1/orgs/{owner.org_id}/webhook-endpoints/{endpoint['id']}",
                            headers=owner.headers)).json()
    assert got["enabled"] is False and got["disabled_reason"] == "failing" and got["failing_since"]
    rows = {d.id: d for d in await deliveries(database, owner.org_id, first + second)}
    assert rows[second[0]].status == "failed" and rows[second[0]].last_error == "endpoint disabled"
    assert rows[first[0]].attempts < len(config.retry_schedule)  # stopped by the disable, not the schedule

    async with owner_database.sessionmaker() as s:
        mails = (await s.scalars(select(EmailOutbox).where(EmailOutbox.org_id == uuid.UUID(owner.org_id),
                                                           EmailOutbox.template == "webhook_endpoint_disabled"))).all()
        assert [m.to_email for m in mails] == [owner.email]
        assert mails[0].context["endpoint_url"] == receiver.url(host=HOST, path="/down")
        audit = (await s.scalars(select(AuditLog).where(AuditLog.target_id == endpoint["id"],
                                                         AuditLog.action == "webhook_endpoint.disabled"))).all()
        assert len(audit) == 1 and audit[0].actor_type == "system"

    # Nothing is sent to a disabled endpoint, even when a delivery is due.
    before = len(receiver.hits)
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(owner.org_id))
        assert await service.fan_out(s, uuid.UUID(owner.org_id), "sync.completed", {}) == []
    assert len(receiver.hits) == before


async def test_claims_make_concurrent_attempts_send_once(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings, receiver: Receiver,
) -> None:
    await create_endpoint(client, owner, receiver.url(host=HOST, path="/once"))
    ids = await emit(database, owner.org_id, "client.created", {"client_id": "c"})

    async def attempt() -> Any:
        async with database.sessionmaker() as s:
            return await service.attempt_delivery(s, settings, dev_config(), ids[0], uuid.UUID(owner.org_id),
                                                  resolver=receiver_resolver)

    outcomes = await asyncio.gather(*(attempt() for _ in range(4)))
    assert sum(o is not None for o in outcomes) == 1
    assert len(receiver.hits) == 1


async def test_a_lost_attempt_is_logged_counted_and_can_dead_letter(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings, receiver: Receiver,
) -> None:
    """An attempt whose worker died (lease lapsed, no result) is logged as lost when the
    delivery is claimed again and counts toward the limit; a live lease is not taken.
    (The real SIGKILL is in test_webhook_worker_crash.py.)"""
    await create_endpoint(client, owner, receiver.url(host=HOST, path="/lost"))
    ids = await emit(database, owner.org_id, "client.created", {"client_id": "lost"})
    config = dev_config(retry_schedule=(0, 0.1), lease=30.0)
    org = uuid.UUID(owner.org_id)

    async def attempt() -> Any:
        async with database.sessionmaker() as s:
            return await service.attempt_delivery(s, settings, config, ids[0], org, resolver=receiver_resolver)

    async def died_mid_attempt(lease_lapsed: bool, cycle_attempts: int) -> None:
        """What a worker killed during its POST leaves: the claim, no result."""
        started = utcnow() - timedelta(seconds=31 if lease_lapsed else 1)
        async with database.sessionmaker() as s:
            await bind_tenant(s, org)
            await s.execute(update(WebhookDelivery).where(WebhookDelivery.id == ids[0]).values(
                status="pending", attempt_started_at=started, cycle_attempts=cycle_attempts,
                next_attempt_at=started + timedelta(seconds=30)))
            await s.commit()

    await died_mid_attempt(lease_lapsed=False, cycle_attempts=0)
    assert await attempt() is None and receiver.hits == []  # the lease is live: maybe still sending

    await died_mid_attempt(lease_lapsed=True, cycle_attempts=0)
    outcome = await attempt()
    assert outcome is not None and outcome.success and len(receiver.hits) == 1
    log = await attempts(database, owner.org_id, ids[0])
    assert [(a.number, a.success, a.status_code) for a in log] == [(1, False, None), (2, True, 200)]
    assert log[0].error is not None and log[0].error.startswith("attempt lost: no result within the 30 s lease")
    assert log[0].duration_ms >= 30_000
    [row] = await deliveries(database, owner.org_id, ids)
    assert (row.status, row.attempts, row.cycle_attempts, row.attempt_started_at) == ("succeeded", 2, 2, None)

    # Lost on the last attempt of its cycle: dead-lettered without another POST, replayable.
    await died_mid_attempt(lease_lapsed=True, cycle_attempts=1)
    outcome = await attempt()
    assert outcome is not None and (outcome.status, outcome.success) == ("failed", False)
    assert len(receiver.hits) == 1
    [row] = await deliveries(database, owner.org_id, ids)
    assert (row.status, row.attempts, row.attempt_started_at) == ("failed", 3, None)
    assert row.last_error is not None and row.last_error.startswith("attempt lost")


async def test_run_due_sweeps_due_deliveries(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings, receiver: Receiver,
) -> None:
    endpoint = await create_endpoint(client, owner, receiver.url(host=HOST, path="/sweep"))
    ids = await emit(database, owner.org_id, "sync.failed", {"sync_run_id": "x"})
    due = await service.due_deliveries(database.sessionmaker)
    assert (ids[0], uuid.UUID(owner.org_id)) in due  # found across organizations (RLS sweep clause)
    outcomes = await service.run_due(database.sessionmaker, settings, dev_config(), limit=1000,
                                     resolver=receiver_resolver)
    assert any(o.delivery_id == ids[0] and o.success for o in outcomes)
    assert Webhook(endpoint["secret"]).verify(receiver.hits[-1].body, receiver.hits[-1].headers)["type"] == \
        "sync.failed"


# ------------------------------------------------------------------------------------ SSRF
def _hostile(mapping: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return mapping[host]

    return resolve


def _local_hostname() -> str | None:
    """This machine's own name, when the system resolver maps it to a non-public address."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)}
    except OSError:
        return None
    import ipaddress

    return name if addresses and all(not ipaddress.ip_address(a).is_global for a in addresses) else None


@pytest.mark.parametrize("url,resolver,reason", [
    ("https://127.0.0.1:{port}/hook", None, "non-public address (127.0.0.1)"),
    ("https://169.254.169.254/latest/meta-data/", None, "non-public address (169.254.169.254)"),
    ("https://10.1.2.3/hook", None, "non-public address (10.1.2.3)"),
    ("https://[::1]:{port}/hook", None, "non-public address (::1)"),
    ("https://[::ffff:127.0.0.1]:{port}/hook", None, "non-public address"),
    ("https://localhost:{port}/hook", None, "localhost"),
    ("https://{hostname}:{port}/hook", None, "resolves to a non-public address"),
    ("https://hooks.example.test:{port}/hook", {"hooks.example.test": ["127.0.0.1"]},
     "resolves to a non-public address (127.0.0.1)"),
    ("https://mixed.example.test/hook", {"mixed.example.test": ["93.184.216.34", "10.0.0.1"]},
     "resolves to a non-public address (10.0.0.1)"),
    ("http://93.184.216.34/hook", None, "must use https"),
])
async def test_production_refuses_private_destinations(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings, receiver: Receiver,
    url: str, resolver: dict[str, list[str]] | None, reason: str,
) -> None:
    hostname = _local_hostname()
    if "{hostname}" in url and hostname is None:
        pytest.skip("this machine's host name does not resolve to a private address")
    target = url.format(port=receiver.port, hostname=hostname)
    # Saved while the URL passed; refused at send time in production, even though the
    # development allow-list names the host.
    await create_saved_endpoint(database, settings, owner, target)
    ids = await emit(database, owner.org_id, "client.created", {"client_id": "c"})
    config = WebhookConfig(production=True, allowed_hosts=LOCAL | {"localhost", "hooks.example.test"},
                           retry_schedule=(0,))
    status = await drive(database, settings, config, owner.org_id, ids,
                         resolver=_hostile(resolver) if resolver else system_resolver)
    assert status[ids[0]] == "failed"
    log = await attempts(database, owner.org_id, ids[0])
    assert len(log) == 1 and log[0].status_code is None and log[0].ip is None
    assert log[0].error is not None and log[0].error.startswith("blocked:") and reason in log[0].error
    assert receiver.hits == []  # no connection was ever made


async def test_development_needs_the_allow_list_for_local_receivers(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings, receiver: Receiver,
) -> None:
    await create_endpoint(client, owner, receiver.url(host=HOST, path="/dev"))
    ids = await emit(database, owner.org_id, "client.created", {})
    status = await drive(database, settings, dev_config(allowed_hosts=frozenset(), retry_schedule=(0,)),
                         owner.org_id, ids)
    assert status[ids[0]] == "failed" and receiver.hits == []


async def test_tls_connects_to_the_checked_address_with_the_real_host_name(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings, tls_receiver: Receiver,
    tls_material: TlsMaterial,
) -> None:
    """``hooks.example.test`` exists only in our resolver: the request can only arrive if we
    connected to the address we checked, and it can only pass TLS verification if SNI and
    the certificate check used the host name, not that address."""
    endpoint = await create_endpoint(client, owner, f"https://{TLS_HOST}:{tls_receiver.port}/tls")
    ids = await emit(database, owner.org_id, "client.created", {"client_id": "tls"})
    config = dev_config(allowed_hosts=frozenset({TLS_HOST}), verify=tls_material.client_context())
    status = await drive(database, settings, config, owner.org_id, ids, resolver=_hostile({TLS_HOST: ["127.0.0.1"]}))
    assert status[ids[0]] == "succeeded"
    hit = tls_receiver.hits[-1]
    assert hit.host == f"{TLS_HOST}:{tls_receiver.port}"
    assert Webhook(endpoint["secret"]).verify(hit.body, hit.headers)["data"] == {"client_id": "tls"}

    # The same server by IP: the certificate does not cover 127.0.0.1, so TLS must fail.
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(owner.org_id))
        await service.update_endpoint(s, dev_config(), uuid.UUID(owner.org_id), Actor.system("test"),
                                      uuid.UUID(endpoint["id"]),
                                      changes={"url": f"https://127.0.0.1:{tls_receiver.port}/tls"})
    ids = await emit(database, owner.org_id, "client.created", {"client_id": "tls-ip"})
    status = await drive(database, settings, dev_config(verify=tls_material.client_context(), retry_schedule=(0,)),
                         owner.org_id, ids)
    assert status[ids[0]] == "failed"
    log = await attempts(database, owner.org_id, ids[0])
    assert log[0].status_code is None and "Connect" in (log[0].error or "")


async def test_purge_drops_old_finished_deliveries_with_their_attempts_and_events(
    client: httpx.AsyncClient, owner: Account, database: Database, owner_database: Database, settings: Settings,
    receiver: Receiver,
) -> None:
    await create_endpoint(client, owner, receiver.url(host=HOST, path="/purge"))
    old = await emit(database, owner.org_id, "client.created", {"client_id": "old"})
    fresh = await emit(database, owner.org_id, "client.created", {"client_id": "fresh"})
    pending = await emit(database, owner.org_id, "client.created", {"client_id": "pending"})
    await drive(database, settings, dev_config(), owner.org_id, old + fresh)
    async with owner_database.sessionmaker() as s:
        await s.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(old + pending))
                        .values(created_at=utcnow() - timedelta(days=40)))
        old_event = (await s.get(WebhookDelivery, old[0]))
        assert old_event is not None
        event_id = old_event.event_id
        await s.execute(update(WebhookEvent).where(WebhookEvent.id == event_id)
                        .values(created_at=utcnow() - timedelta(days=40)))
        await s.commit()
    assert await service.purge_deliveries(database.sessionmaker) >= 1
    left = {d.id for d in await deliveries(database, owner.org_id, old + fresh + pending)}
    assert left == {fresh[0], pending[0]}  # pending work is never purged
    assert await attempts(database, owner.org_id, old[0]) == []
    async with owner_database.sessionmaker() as s:
        assert await s.get(WebhookEvent, event_id) is None


async def test_master_key_rotation_rewraps_webhook_secrets(
    client: httpx.AsyncClient, owner: Account, database: Database, owner_database: Database, settings: Settings,
    receiver: Receiver,
) -> None:
    """``omnify keys rotate``: a new master key becomes active, every webhook secret's data
    key is re-wrapped under it, and signing keeps working with the same secret."""
    from omnify.core.crypto import EncryptedBlob
    from omnify.core.secrets import backend_from_settings
    from omnify.webhooks import keys

    endpoint = await create_endpoint(client, owner, receiver.url(host=HOST, path="/rewrap"))
    backend_from_settings(settings).add_key()
    cache = keys.keyring_cache(settings)
    cache.invalidate()
    ring = await cache.get()
    async with owner_database.sessionmaker() as s:
        assert await keys.rewrap_all(s, ring) >= 1
        await s.commit()
    async with owner_database.sessionmaker() as s:
        assert await keys.rewrap_all(s, ring) == 0  # idempotent
        row = await s.get(WebhookEndpoint, uuid.UUID(endpoint["id"]))
        assert row is not None and EncryptedBlob.from_bytes(row.secret_blob).master_key_id == ring.active_key_id
    ids = await emit(database, owner.org_id, "client.created", {"client_id": "rewrapped"})
    assert (await drive(database, settings, dev_config(), owner.org_id, ids))[ids[0]] == "succeeded"
    Webhook(endpoint["secret"]).verify(receiver.hits[-1].body, receiver.hits[-1].headers)


async def test_keys_rotate_rewraps_webhook_secrets_as_the_app_role(
    client: httpx.AsyncClient, owner: Account, database: Database, owner_database: Database, settings: Settings,
    receiver: Receiver,
) -> None:
    """`omnify keys rotate` (credentials.keys) runs as the app's role: on PostgreSQL it must bind
    each tenant to see its webhook secrets, or a later retirement strands them."""
    from omnify.core.crypto import EncryptedBlob
    from omnify.credentials import keys as credential_keys

    endpoint = await create_endpoint(client, owner, receiver.url(host=HOST, path="/rotated"))
    result = await credential_keys.rotate(settings, database)
    assert result.report is not None and result.report.failed == []
    async with owner_database.sessionmaker() as s:
        row = await s.get(WebhookEndpoint, uuid.UUID(endpoint["id"]))
        assert row is not None and EncryptedBlob.from_bytes(row.secret_blob).master_key_id == result.new_key_id
    ids = await emit(database, owner.org_id, "client.created", {"client_id": "rotated"})
    assert (await drive(database, settings, dev_config(), owner.org_id, ids))[ids[0]] == "succeeded"
    Webhook(endpoint["secret"]).verify(receiver.hits[-1].body, receiver.hits[-1].headers)
