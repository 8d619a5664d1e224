"""Counted figures for a sync under platform trouble, written to ``.artifacts/reliability/``.

tests/integration/sync/test_sync_faults.py asserts each behaviour on its own; this test counts
them, on one platform (the Google Ads sandbox, reached through a TCP relay so connections can be
dropped for real), one fault at a time, each on a fresh connection of the same account:

* a burst of 429s with ``Retry-After``, a burst of 503s, slow responses (every data call delayed),
  and dropped connections (the relay resets the connection instead of relaying the response):
  the run succeeds, with the same rows as a fault-free run of the same account (none lost, none
  twice), every 429 waited out for at least the time the platform asked;
* a platform failing every call: the circuit opens (the run fails with ``circuit_open``, the next
  one does not reach the platform), then, the platform healed and the cooldown over, it closes
  and the run completes with the same rows.

Counted by an :class:`~omnify.integrations.http.HttpObserver` plugged into the connector factory
(requests answered, their statuses, transport errors, retries, breaker events) and the sandbox's
request journal (requests the platform received, when).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Table, select

from omnify.connections.connectors import ConnectorFactory
from omnify.core.db import Base, Database
from omnify.integrations.base import ConnectorError
from omnify.integrations.http import CircuitBreakers, RetryPolicy
from omnify.settings import Settings
from tests.conftest import DatabaseUrls
from tests.integration.connections.conn_support import GOOGLE_SMALL, SYNC_TABLES, Env, Sandboxes, new_team, open_env
from tests.integration.sync.sync_support import connected, run
from tests.reliability import TcpRelay, write_figures
from tests.servers import free_port

pytestmark = pytest.mark.slow

DATA_PATH = "searchStream"  # Google Ads' data calls (campaigns, ad groups, ads, metrics)
#: Consecutive faults per burst: below the breaker's threshold, so the run rides them out.
BURST = 3
RETRY_AFTER_SECONDS = 0.5
LATENCY_MS = 300
#: Columns local to one connection (ids, our write times): left out when comparing rows.
LOCAL_COLUMNS = {"id", "org_id", "client_id", "connection_id", "ad_account_id", "campaign_id", "ad_group_id",
                 "ad_id", "creative_id", "customer_id", "created_at", "updated_at", "synced_at"}


class Recorder:
    """An HttpObserver that counts what the connector saw."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.retries = 0
        self.waits: list[float] = []
        self.breaker: Counter[str] = Counter()

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def on_response(self, *, platform: str, method: str, path: str, status: int, elapsed: float,
                    attempt: int) -> None:
        self.statuses[status] += 1

    def on_error(self, *, platform: str, circuit: str, error: ConnectorError, attempt: int) -> None:
        kind = "connection" if "connection failed" in str(error) else type(error).__name__
        self.errors[kind] += 1

    def on_retry(self, *, platform: str, circuit: str, error: ConnectorError, wait: float, attempt: int) -> None:
        self.retries += 1
        self.waits.append(wait)

    def on_breaker(self, *, platform: str, circuit: str, event: str) -> None:
        self.breaker[event] += 1


async def content(env: Env, connection_id: str) -> list[tuple[str, tuple[str, ...]]]:
    """Every synced row of one connection (the platform's data, not our ids), sorted: equal
    lists mean the same rows, none missing and none twice."""
    out: list[tuple[str, tuple[str, ...]]] = []
    async with env.owner_db.sessionmaker() as session:
        for name in SYNC_TABLES:
            table = Base.metadata.tables[name]
            assert isinstance(table, Table)
            cols = [c for c in table.c if c.name not in LOCAL_COLUMNS]
            rows = (await session.execute(select(*cols).where(table.c.connection_id == uuid.UUID(connection_id)))
                    ).all()
            out += [(name, tuple(json.dumps(v, sort_keys=True, default=str) for v in r)) for r in rows]
    return sorted(out)


@pytest.fixture
async def relayed(boxes: Sandboxes, settings: Settings, db_urls: DatabaseUrls, database: Database,
                  owner_database: Database) -> AsyncIterator[tuple[Env, TcpRelay]]:
    host, port = boxes.url("google").removeprefix("http://").rsplit(":", 1)
    relay = TcpRelay((host, int(port)), free_port())
    await relay.start()
    try:
        async with open_env(boxes, settings, db_urls, database, owner_database, google_ads_url=relay.url) as env:
            yield env, relay
    finally:
        await relay.kill()
        boxes.google.injector.reset()


async def test_sync_fault_figures(relayed: tuple[Env, TcpRelay], db_urls: DatabaseUrls) -> None:
    env, relay = relayed
    google = env.boxes.google
    recorder = Recorder()
    # Production's attempts and breaker threshold (5 each); shorter backoff and cooldown.
    factory = ConnectorFactory(env.settings, retry=RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=0.2,
                                                              jitter=0.02, max_retry_after=5.0),
                               breakers=CircuitBreakers(threshold=5, cooldown=1.0), observer=recorder)

    async def fresh_connection() -> tuple[Any, str]:
        team = await new_team(env.api)
        return team, await connected(env, team, "google_ads", GOOGLE_SMALL)

    # The fault-free reference.
    team, ref = await fresh_connection()
    google.journal.clear()
    started = time.monotonic()
    result = await run(env, team, ref, factory)
    assert result.status == "succeeded", result
    expected = await content(env, ref)
    assert expected and len(set(expected)) == len(expected)
    reference = {"seconds": round(time.monotonic() - started, 3),
                 "requests": len(google.journal.entries()),
                 "data_requests": len(google.journal.entries(path_contains=DATA_PATH)), "rows": len(expected)}

    scenarios: list[dict[str, Any]] = []

    async def scenario(name: str, inject: Any) -> dict[str, Any]:
        team, conn = await fresh_connection()
        google.journal.clear()
        recorder.reset()
        relay.dropped = 0
        inject()
        started = time.monotonic()
        result = await run(env, team, conn, factory)
        seconds = time.monotonic() - started
        google.injector.reset()
        entries = google.journal.entries(path_contains=DATA_PATH)
        got = await content(env, conn)
        limited = [i for i, e in enumerate(entries) if e.fault == "rate_limit"]
        honoured = sum(1 for i in limited if i + 1 < len(entries)
                       and entries[i + 1].at - entries[i].at >= RETRY_AFTER_SECONDS)
        figures = {
            "scenario": name, "status": result.status,
            "requests_received": len(google.journal.entries()), "data_requests_received": len(entries),
            "answered": {str(k): v for k, v in sorted(recorder.statuses.items())},
            "dropped_connections": relay.dropped, "connection_errors_seen": recorder.errors["connection"],
            "retries": recorder.retries, "rate_limited": len(limited), "retry_after_honoured": honoured,
            "circuit_opened": recorder.breaker["opened"], "rows": len(got), "rows_expected": len(expected),
            "rows_missing": len(set(expected) - set(got)), "rows_duplicated": len(got) - len(set(got)),
            "same_rows_as_reference": got == expected, "seconds": round(seconds, 3),
        }
        scenarios.append(figures)
        return figures

    bursts = await scenario("429 burst", lambda: google.injector.configure(
        rate_limit_next=BURST, retry_after=RETRY_AFTER_SECONDS, match=DATA_PATH))
    errors = await scenario("503 burst", lambda: google.injector.configure(
        errors_5xx_next=BURST, error_status=503, match=DATA_PATH))
    slow = await scenario("slow responses", lambda: google.injector.configure(latency_ms=LATENCY_MS, match=DATA_PATH))
    drops = await scenario("dropped connections", lambda: relay.drop_responses(BURST))

    # The circuit: a platform failing every call opens it; healed and cooled down, it closes.
    team, conn = await fresh_connection()
    google.journal.clear()
    recorder.reset()
    google.injector.configure(errors_5xx_next=1000, error_status=500, match=DATA_PATH)
    started = time.monotonic()
    first = await run(env, team, conn, factory)
    calls_failing = len(google.journal.entries(path_contains=DATA_PATH))
    second = await run(env, team, conn, factory)
    calls_while_open = len(google.journal.entries(path_contains=DATA_PATH)) - calls_failing
    google.injector.reset()
    await asyncio.sleep(1.2)  # the breaker's cooldown
    healed = await run(env, team, conn, factory)
    got = await content(env, conn)
    circuit = {
        "scenario": "platform failing, then healed", "status": f"{first.status}, {second.status}, {healed.status}",
        "error_codes": [first.error_code, second.error_code], "requests_received": calls_failing,
        "requests_while_open": calls_while_open,
        "answered": {str(k): v for k, v in sorted(recorder.statuses.items())},
        "retries": recorder.retries, "circuit_opened": recorder.breaker["opened"],
        "circuit_closed": recorder.breaker["closed"], "rows": len(got), "rows_expected": len(expected),
        "rows_missing": len(set(expected) - set(got)), "rows_duplicated": len(got) - len(set(got)),
        "same_rows_as_reference": got == expected, "seconds": round(time.monotonic() - started, 3),
    }
    scenarios.append(circuit)

    figures = {"fault": "platform 429/5xx bursts, slow responses, dropped connections, circuit during a sync",
               "database": db_urls.dialect, "platform": "google_ads (sandbox, account with "
               f"{len(expected)} rows)", "reference": reference, "scenarios": scenarios}
    path = write_figures(f"sync-faults-{db_urls.dialect}", figures)
    print(f"\nSync fault figures ({path}): {json.dumps(figures, indent=1)}")

    for s in (bursts, errors, slow, drops):
        assert s["status"] == "succeeded" and s["same_rows_as_reference"], s
    assert bursts["rate_limited"] == BURST and bursts["retry_after_honoured"] == BURST, bursts
    assert errors["answered"].get("503") == BURST and errors["retries"] >= BURST, errors
    assert drops["dropped_connections"] == BURST and drops["connection_errors_seen"] == BURST, drops
    assert slow["seconds"] >= reference["data_requests"] * LATENCY_MS / 1000, slow
    assert (first.status, second.status, healed.status) == ("failed", "failed", "succeeded"), circuit
    assert second.error_code == "circuit_open" and calls_while_open == 0, circuit
    assert circuit["circuit_opened"] >= 1 and circuit["circuit_closed"] >= 1, circuit
    assert circuit["same_rows_as_reference"], circuit
