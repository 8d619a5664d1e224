"""Sync under platform trouble: token expiry mid-sync (refreshed and stored), 429 honoured
with a measured wait, a long Retry-After handed to the task's retry, 5xx retried, the
circuit breaker opening into a failed run with a clear error, a revoked grant, and no
token or secret in any log line written meanwhile."""

from __future__ import annotations

import contextlib
import io
import logging
import uuid
from collections.abc import Iterator

import pytest

from omnify.core.context import Actor
from omnify.core.db import bind_tenant
from omnify.core.logging import build_formatter
from omnify.credentials import service as credentials
from omnify.credentials.keys import keyrings_for
from omnify.credentials.platforms import Platform as CredentialPlatform
from omnify.events.models import DomainEvent
from omnify.integrations.base import RateLimited
from omnify.integrations.meta.sandbox import SANDBOX_USER_ID
from omnify.sync.tasks import run_connection as run_task
from tests.integration.connections.conn_support import (
    GOOGLE_SMALL,
    META_SMALL,
    SHOP,
    TIKTOK_SMALL,
    Env,
    Team,
    consent,
    fast_factory,
    select_accounts,
    tenant_session_rows,
)
from tests.integration.sync.sync_support import connected, connection_view, run, runs_of


async def access_token(env: Env, team: Team, platform: str) -> tuple[str, str | None]:
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, uuid.UUID(team.owner.org_id))
        cred = await credentials.reveal(session, keyrings_for(env.settings), uuid.UUID(team.owner.org_id),
                                        uuid.UUID(team.client_id), CredentialPlatform(platform),
                                        Actor.system("test"), purpose="test assertion")
    return cred.secret("access_token"), cred.get("refresh_token")


async def test_expired_tokens_mid_sync_are_refreshed_and_stored(env: Env, team: Team) -> None:
    google = await connected(env, team, "google_ads", GOOGLE_SMALL)
    tiktok = await connected(env, team, "tiktok_ads", TIKTOK_SMALL)
    assert (await run(env, team, google)).status == "succeeded"
    assert (await run(env, team, tiktok)).status == "succeeded"
    old_google, _ = await access_token(env, team, "google_ads")
    old_tiktok, _ = await access_token(env, team, "tiktok_ads")

    env.boxes.google.injector.configure(expire_tokens=True)
    env.boxes.tiktok.injector.configure(expire_tokens=True)
    env.boxes.google.journal.clear()
    g = await run(env, team, google)
    t = await run(env, team, tiktok)
    assert (g.status, t.status) == ("succeeded", "succeeded"), (g, t)
    entries = env.boxes.google.journal.entries()
    first_401 = next(i for i, e in enumerate(entries) if e.status == 401)
    assert any(e.path == "/token" and e.status == 200 for e in entries[first_401:])  # refreshed after the 401

    new_google, _ = await access_token(env, team, "google_ads")
    new_tiktok, _ = await access_token(env, team, "tiktok_ads")
    assert new_google != old_google and new_tiktok != old_tiktok
    env.boxes.google.tokens.validate(new_google)
    env.boxes.tiktok.store.validate(new_tiktok)
    assert (await run(env, team, google)).rows_written == 0  # and the data did not move


async def test_rate_limit_is_waited_out_for_the_time_the_platform_asked(env: Env, team: Team) -> None:
    conn_id = await connected(env, team, "meta_ads", META_SMALL)
    env.boxes.meta.injector.configure(rate_limit_next=1, retry_after=0.6, match="/insights")
    result = await run(env, team, conn_id)
    assert result.status == "succeeded", result
    insights = env.boxes.meta.journal.entries(path_contains="/insights")
    limited = next(i for i, e in enumerate(insights) if e.status == 400 and e.fault == "rate_limit")
    waited = insights[limited + 1].at - insights[limited].at
    assert waited >= 0.6, waited


async def test_long_retry_after_defers_the_run_and_retries_the_task(env: Env, team: Team) -> None:
    conn_id = await connected(env, team, "meta_ads", META_SMALL)
    env.boxes.meta.injector.configure(rate_limit_next=1, retry_after=90, match="/insights")
    with pytest.raises(RateLimited) as caught:
        await run(env, team, conn_id)
    assert caught.value.retry_after >= 90
    last = (await runs_of(env, team, conn_id))[-1]
    assert (last.status, last.error_code) == ("deferred", "rate_limited")
    view = await connection_view(env, team, "meta_ads")
    assert view["last_sync_status"] == "deferred" and view["status"] == "connected"
    assert view["backfill"]["status"] == "running"  # resumes with the retry
    # The Celery task retries it, never sooner than the platform asked.
    assert run_task.is_transient(caught.value)
    assert run_task.backoff(0, caught.value) >= 90
    assert not [e for e in await tenant_session_rows(env.db, team.owner.org_id, DomainEvent)
                if e.type == "sync.failed"]  # deferred is not failed

    env.boxes.meta.injector.reset()
    resumed = await run(env, team, conn_id)
    assert resumed.status == "succeeded" and resumed.mode == "backfill"
    assert (await connection_view(env, team, "meta_ads"))["backfill"]["status"] == "done"


async def test_server_errors_are_retried(env: Env, team: Team) -> None:
    conn_id = await connected(env, team, "google_ads", GOOGLE_SMALL)
    env.boxes.google.journal.clear()
    env.boxes.google.injector.configure(errors_5xx_next=2, error_status=503, match="searchStream")
    result = await run(env, team, conn_id)
    assert result.status == "succeeded", result
    statuses = [e.status for e in env.boxes.google.journal.entries(path_contains="searchStream")]
    assert statuses[:3] == [503, 503, 200]


async def test_repeated_failures_open_the_circuit_and_fail_the_run_clearly(env: Env, team: Team) -> None:
    conn_id = await connected(env, team, "meta_ads", META_SMALL)
    factory = fast_factory(env.settings, threshold=3, cooldown=60)
    env.boxes.meta.injector.configure(errors_5xx_next=1000, error_status=500, match="/insights")
    first = await run(env, team, conn_id, factory)
    second = await run(env, team, conn_id, factory)
    assert first.status == second.status == "failed"
    assert second.error_code == "circuit_open", second
    assert "circuit breaker open" in (second.error or "") and "retries automatically" in (second.error or "")
    calls = len(env.boxes.meta.journal.entries(path_contains="/insights"))
    assert calls == 3  # the second run never reached the platform

    view = await connection_view(env, team, "meta_ads")
    assert view["status"] == "connected"  # the grant is fine; the platform is not
    assert view["last_sync_status"] == "failed" and view["last_error_code"] == "circuit_open"
    assert view["backfill"]["status"] == "failed"
    failed = [e for e in await tenant_session_rows(env.db, team.owner.org_id, DomainEvent) if e.type == "sync.failed"]
    assert len(failed) == 2 and failed[-1].payload["error_code"] == "circuit_open"
    runs = (await env.api.get(team.url("meta_ads", "runs"), headers=team.owner.headers)).json()["items"]
    assert [r["status"] for r in runs] == ["failed", "failed"] and runs[0]["error_code"] == "circuit_open"

    env.boxes.meta.injector.reset()
    healed = await run(env, team, conn_id)  # a fresh process' breakers (the env factory)
    assert healed.status == "succeeded" and healed.mode == "backfill"
    view = await connection_view(env, team, "meta_ads")
    assert view["last_error"] is None and view["backfill"]["status"] == "done"


async def test_a_grant_revoked_during_sync_needs_reauth(env: Env, team: Team) -> None:
    conn_id = await connected(env, team, "meta_ads", META_SMALL)
    env.boxes.meta.tokens.revoke_subject(env.boxes.meta.config.app_id, SANDBOX_USER_ID)
    result = await run(env, team, conn_id)
    assert result.status == "failed" and result.error_code in ("token_revoked", "token_expired")
    view = await connection_view(env, team, "meta_ads")
    assert view["status"] == "needs_reauth"
    types = [e.type for e in await tenant_session_rows(env.db, team.owner.org_id, DomainEvent)]
    assert "sync.failed" in types and "connection.failed" in types
    assert (await run(env, team, conn_id)).status == "skipped"


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every log record at DEBUG, through the project's JSON formatter, plus raw messages."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(build_formatter(json_output=True))
    raw = io.StringIO()

    class Raw(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raw.write(f"{record.getMessage()} {record.args!r} {record.__dict__.get('msg')!r}\n")

    root = logging.getLogger()
    loggers = [root, logging.getLogger("httpx"), logging.getLogger("httpcore")]
    levels = [lg.level for lg in loggers]
    raw_handler = Raw()
    root.addHandler(handler)
    root.addHandler(raw_handler)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.removeHandler(raw_handler)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        buffer.write("\n--raw--\n" + raw.getvalue())


async def test_no_token_or_secret_in_logs(env: Env, team: Team) -> None:
    """Everything Omnify does - callbacks (code exchange), syncs with a token refresh and a
    retried error, a connection test - logs at DEBUG; no token, code or app secret shows.
    The consent screens run first, outside the capture: that part is the user's browser."""
    grants = [await consent(env, team, p) for p in ("meta_ads", "google_ads", "tiktok_ads")]
    grants.append(await consent(env, team, "shopify", shop=SHOP))
    env.boxes.google.injector.configure(expire_tokens=True)  # a refresh happens mid-sync
    env.boxes.meta.injector.configure(errors_5xx_next=1, match="/insights")  # and a retried error
    with captured_logs() as logs:
        ids = {}
        for grant in grants:
            resp = await env.api.get(grant.callback_path)
            assert resp.status_code == 200, resp.text
            ids[resp.json()["platform"]] = resp.json()["id"]
        for platform, account in (("meta_ads", META_SMALL), ("tiktok_ads", TIKTOK_SMALL)):
            await select_accounts(env, team, platform, [account])
        for conn_id in ids.values():
            assert (await run(env, team, conn_id)).status == "succeeded"
        resp = await env.api.post(team.url("meta_ads", "test"), headers=team.owner.headers)
        assert resp.json()["ok"] is True

    secrets = {env.boxes.meta.config.app_secret, env.boxes.google.config.client_secret,
               env.boxes.google.config.developer_token, env.boxes.tiktok.secret, env.boxes.shopify.api_secret}
    secrets |= {g.params.get("code") or g.params.get("auth_code") or "" for g in grants}
    for platform in ("meta_ads", "google_ads", "tiktok_ads", "shopify"):
        access, refresh = await access_token(env, team, platform)
        secrets |= {access} | ({refresh} if refresh else set())
    # Every token the sandboxes ever issued (including the ones replaced by refreshes).
    for store in (env.boxes.meta.tokens, env.boxes.google.tokens, env.boxes.tiktok.store, env.boxes.shopify.store):
        secrets |= set(store._tokens)
    text = logs.getvalue()
    assert "sync.succeeded" in text and "connector.http" in text  # the capture did see the work
    leaked = [s for s in secrets if s and s in text]
    assert leaked == []
