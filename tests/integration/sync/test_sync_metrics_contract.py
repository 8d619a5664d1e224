"""Dashboards and alerts watch what the app really exports (issue 14 item 5).

The app is exercised end to end — a sign-up, an organization, an upload, a connection
through the OAuth dance, a sync, a brain run and an applied action, a webhook (one failed
attempt, then delivered), e-mails (one sent, one failed), a rate-limited call, a cached
analytics read — and a real Celery worker runs a task that succeeds and one that is
dead-lettered. Then the API's ``/metrics``, the worker's exporter and the backup jobs'
textfile are scraped, and every selector of every Grafana panel and every alert or
recording rule is parsed as PromQL (``promql-parser``) and checked against that scrape:
the metric must have samples, each label a selector names must exist on them, and each
value an ``=``/``=~`` matcher asks for must occur.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser as promql
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from omnify.brain_runs import tasks as brain_tasks
from omnify.brain_runs.models import RunTrigger
from omnify.core.db import bind_tenant
from omnify.core.errors import RateLimited
from omnify.core.ratelimit import RateLimiter
from omnify.core.secrets import keyring_cache
from omnify.notifications import service as email_service
from omnify.notifications.backends import EmailSendError, FileBackend, OutgoingEmail
from omnify.ops.backup import record_success
from omnify.recommendations.models import Recommendation
from omnify.webhooks import dispatcher
from omnify.webhooks import service as webhook_service
from omnify.webhooks.models import WebhookDelivery
from tests.conftest import METRICS_AUTH
from tests.integration.connections.conn_support import META_SMALL, Enqueued, Env, Team, consent, open_env
from tests.integration.sync.sync_support import connected, run
from tests.integration.webhooks.conftest import Receiver, _serve
from tests.integration.webhooks.test_webhooks_delivery import create_saved_endpoint, dev_config, drive

ROOT = Path(__file__).resolve().parents[3]
API = "/api/v1"
#: Metrics other exporters publish (not the app): Prometheus' own, postgres_exporter,
#: redis_exporter and the blackbox exporter (deploy/monitoring/prometheus.yml).
EXTERNAL = {"up", "pg_up", "redis_up", "probe_ssl_earliest_cert_expiry"}
#: Labels Prometheus attaches from the target (scrape config, ServiceMonitor), not the app.
TARGET_LABELS = {"namespace", "job", "instance", "pod", "container", "service", "endpoint", "component"}
#: Grafana's variables, as promql_rules() in dashboards.py substitutes them.
GRAFANA_VARS = {"$__range": "1h", "$namespace": "omnify-production", "$route": ".*"}

Samples = dict[str, list[dict[str, str]]]


# ------------------------------------------------------------------------------ selectors
def dashboard_queries() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "deploy/monitoring/grafana/dashboards").glob("*.json")):
        stack = list(json.loads(path.read_text())["panels"])
        while stack:
            panel = stack.pop()
            stack.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    expr = target["expr"]
                    for var, value in GRAFANA_VARS.items():
                        expr = expr.replace(var, value)
                    found.append((f"{path.name}: {panel.get('title')}", expr))
    return found


def rule_queries() -> tuple[list[tuple[str, str]], set[str]]:
    found, recorded = [], set()
    for path in sorted((ROOT / "deploy/monitoring/rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]))
                if "record" in rule:
                    recorded.add(rule["record"])
    return found, recorded


def selectors(node: Any) -> Iterator[Any]:
    """Every vector selector in a parsed expression."""
    if isinstance(node, promql.VectorSelector):
        yield node
        return
    for attr in ("lhs", "rhs", "expr", "vector_selector", "param"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, int | float | str):
            yield from selectors(child)
    for child in getattr(node, "args", None) or []:
        yield from selectors(child)


def problems_of(where: str, expr: str, scrape: Samples, recorded: set[str]) -> list[str]:
    out = []
    for sel in selectors(promql.parse(expr)):
        matchers = list(sel.matchers.matchers)
        name = sel.name or next((m.value for m in matchers if m.name == "__name__"), None)
        if name is None:
            out.append(f"{where}: a selector without a metric name: {expr}")
            continue
        if name in EXTERNAL or name in recorded:
            continue
        series = scrape.get(name)
        if not series:
            out.append(f"{where}: {name} is not exported")
            continue
        for m in matchers:
            if m.name in TARGET_LABELS or m.name == "__name__":
                continue
            values = {s[m.name] for s in series if m.name in s}
            op = str(m.op).rsplit(".", 1)[-1]
            if not values:
                out.append(f"{where}: {name} has no label {m.name!r}")
            elif op == "Equal" and m.value not in values:
                out.append(f"{where}: {name}{{{m.name}={m.value!r}}} never exported (values: {sorted(values)})")
            elif op == "Re" and not any(re.fullmatch(m.value, v) for v in values):
                out.append(f"{where}: {name}{{{m.name}=~{m.value!r}}} matches none of {sorted(values)}")
    return out


def parse_scrape(*texts: str) -> Samples:
    samples: Samples = defaultdict(list)
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[sample.name].append(dict(sample.labels))
    return samples


def test_the_checker_catches_what_the_issue_found() -> None:
    """The findings of issue 14 item 5, against a scrape that has the real label values."""
    scrape = parse_scrape('omnify_emails_total{result="sent"} 1\n'
                          'omnify_http_requests_total{method="GET",route="/api/v1/connections/{platform}/callback",'
                          'status="302"} 1\n')
    assert problems_of("x", 'sum(omnify_emails_total{result="success"})', scrape, set())
    assert problems_of("x", 'omnify_http_requests_total{route=~".*/(integrations|oauth)/.*callback.*"}', scrape,
                       set())
    assert problems_of("x", "sum(omnify_organizations)", scrape, set()) == ["x: omnify_organizations is not exported"]
    assert not problems_of("x", 'rate(omnify_http_requests_total{route=~".*/connections/[^/]+/callback",'
                                'namespace=~"a"}[5m]) / 2', scrape, set())


# ----------------------------------------------------------------------------- the worker
@pytest.fixture(scope="module")
def worker_scrape(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real worker (embedded broker): one task succeeds, one is dead-lettered."""
    from tests.integration.jobs.jobs_testlib import running_worker, wait_for

    with running_worker(tmp_path_factory.mktemp("metrics-worker")) as (env, app, _engine, worker, port):
        ok = app.send_task("omnify.jobs.testing.record_effect", args=[uuid.uuid4().hex], queue=env.queue).id
        bad = app.send_task("omnify.jobs.testing.fails_until_switched", args=[uuid.uuid4().hex, "never-on"],
                            queue=env.queue).id
        for task_id, event in ((ok, "job.succeeded"), (bad, "job.failed")):
            wait_for(lambda t=task_id, e=event: [x for x in worker.events()
                                                 if x.get("task_id") == t and x.get("event") == e],
                     timeout=90, what=f"{event} of {task_id}")

        def scrape() -> str:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return body if "omnify_celery_queue_depth{" in body and "omnify_job_failures_total{" in body else ""

        return str(wait_for(scrape, timeout=30, what="worker metrics with queue depth and a dead letter"))




# -------------------------------------------------------------------------------- the API
@pytest.fixture(scope="module")
async def env(boxes, settings, db_urls, database, owner_database):  # type: ignore[no-untyped-def]
    async with open_env(boxes, settings, db_urls, database, owner_database, rate_limit_auth="100000/minute") as e:
        yield e


@pytest.fixture
def consumer() -> Iterator[Receiver]:
    yield from _serve(Receiver(fail_first=1))


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 32), "red").save(buf, format="PNG")
    return buf.getvalue()


class _Refusing:
    """A mail provider that refuses the message for good (a bounced address)."""

    async def send(self, message: OutgoingEmail) -> str:
        raise EmailSendError("550 mailbox unavailable", permanent=True)


async def exercise_the_app(env: Env, team: Team, enqueued: Enqueued, consumer: Receiver, tmp: Path) -> None:
    org = uuid.UUID(team.owner.org_id)
    headers = team.owner.headers
    # A second organization created through the API (onboarding funnel stage 2).
    assert (await env.api.post(f"{API}/orgs", headers=headers, json={"name": f"Org {uuid.uuid4().hex[:6]}"})
            ).status_code == 201
    # An upload.
    files_url = f"{API}/orgs/{org}/clients/{team.client_id}/files"
    upload = await env.api.post(files_url, headers=headers, data={"category": "logo"},
                                files={"file": ("logo.png", _png(), "image/png")})
    assert upload.status_code == 201, upload.text
    # A connection through the OAuth callback, a sync, the brain, an applied action.
    await create_saved_endpoint(env.db, env.settings, team.owner, consumer.url())
    conn_id = await connected(env, team, "meta_ads", META_SMALL)
    assert (await run(env, team, conn_id)).status == "succeeded"
    for kw in await enqueued.named(brain_tasks.RUN_CLIENT_TASK):
        if kw["client_id"] == team.client_id:
            await brain_tasks._run_client(env.db, org, uuid.UUID(kw["client_id"]), RunTrigger(kw["trigger"]))
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org)
        from sqlalchemy import select

        recs = (await session.scalars(select(Recommendation).where(Recommendation.org_id == org,
                                                                   Recommendation.status == "open"))).all()
    pausable = [r for r in recs if (r.action or {}).get("type") == "pause_ad"]
    assert pausable, [r.kind for r in recs]
    applied = await env.api.post(f"{API}/orgs/{org}/recommendations/{pausable[0].id}/apply", headers=team.admin.headers,
                                 json={})
    assert applied.status_code == 200, applied.text
    # Failures the dashboards watch, produced the way production meets them: a platform
    # down during a sync (sync errors) and during an OAuth callback (503 to the browser),
    # and a request for something that does not exist (404).
    env.boxes.meta.injector.configure(errors_5xx_next=1000, error_status=500, match="/insights")
    try:
        assert (await run(env, team, conn_id)).status == "failed"
    finally:
        env.boxes.meta.injector.reset()
    grant = await consent(env, team, "google_ads")
    env.boxes.google.injector.configure(errors_5xx_next=1000, error_status=503)  # listing the accounts fails
    try:
        assert (await env.api.get(grant.callback_path)).status_code == 503
    finally:
        env.boxes.google.injector.reset()
    assert (await env.api.get(f"{API}/orgs/{org}/clients/{uuid.uuid4()}", headers=headers)).status_code == 404
    # The onboarding completes (the business gauge of onboarded clients).
    onboarding = await env.api.put(f"{API}/orgs/{org}/clients/{team.client_id}/onboarding", headers=headers,
                                   json={"platforms": ["meta_ads"]})
    assert onboarding.status_code == 200, onboarding.text
    # Cached analytics: the second read is a hit.
    for _ in range(2):
        await env.api.get(f"{API}/orgs/{org}/clients/{team.client_id}/analytics", headers=headers)
    # A webhook: the events go out, the first attempt fails, the retry delivers.
    async with env.db.sessionmaker() as session:
        assert await dispatcher.dispatch_org(session, env.settings, org) >= 1
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org)
        from sqlalchemy import select

        ids = list((await session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.org_id == org))).all())
    outcome = await drive(env.db, env.settings, dev_config(), team.owner.org_id, ids)
    assert "succeeded" in outcome.values() and consumer.tries
    await webhook_service.due_deliveries(env.db.sessionmaker)  # the sweep that refreshes the dead-letter gauge
    # E-mails: the outbox holds the invitations of the team; one is sent, one bounces.
    async with env.owner_db.sessionmaker() as session:
        from sqlalchemy import select

        from omnify.notifications.models import EmailOutbox

        mails = list((await session.scalars(select(EmailOutbox.id).where(EmailOutbox.org_id == org,
                                                                         EmailOutbox.status == "queued"))).all())
    assert len(mails) >= 2
    # Invitations carry a sealed token: the sender opens it with the deployment's key ring.
    mail_config = email_service.EmailConfig(keyrings=keyring_cache(env.settings))
    async with env.db.sessionmaker() as session:
        assert await email_service.send_message(session, FileBackend(tmp / "mail"), mail_config, mails[0]) == "sent"
    async with env.db.sessionmaker() as session:
        assert await email_service.send_message(session, _Refusing(), mail_config,  # type: ignore[arg-type]
                                                mails[1]) == "failed"
    # A rate limit refuses someone.
    limiter = RateLimiter(env.settings.model_copy(update={"redis_url": None}))
    try:
        await limiter.hit(None, "ip", "192.0.2.1", "1/minute")
        with pytest.raises(RateLimited):
            await limiter.hit(None, "ip", "192.0.2.1", "1/minute")
    finally:
        await limiter.close()


async def test_every_dashboard_and_alert_selector_is_exported(env: Env, team: Team, enqueued: Enqueued,
                                                              consumer: Receiver, worker_scrape: str,
                                                              tmp_path: Path) -> None:
    await exercise_the_app(env, team, enqueued, consumer, tmp_path)
    api_scrape = await env.api.get("/metrics", headers=METRICS_AUTH)
    assert api_scrape.status_code == 200
    # The backup CronJobs' metric, as they publish it (textfile / Pushgateway registry).
    textfile = tmp_path / "backup.prom"
    texts = []
    for kind in ("base", "wal", "sqlite"):
        record_success(kind, metrics_file=textfile)
        texts.append(textfile.read_text())
    scrape = parse_scrape(api_scrape.text, worker_scrape, *texts)

    queries = dashboard_queries()
    rules, recorded = rule_queries()
    assert len(queries) > 40 and len(rules) > 20
    problems = [p for where, expr in queries + rules for p in problems_of(where, expr, scrape, recorded)]
    assert problems == [], "\n".join(problems)
    # And the scrape is not trivially rich: the business gauges count real rows.
    assert float(next(iter(_values(api_scrape.text, "omnify_organizations")))) >= 2


def _values(text: str, name: str) -> list[float]:
    return [s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]

