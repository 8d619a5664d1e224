"""Analytics API under load: Omnify (production mode) against a bare Starlette+asyncpg route.

One command:

    .venv/bin/python bench/api_load.py            # 100 orgs x 1 client x 100 ads x 365 days (3.65M rows)
    .venv/bin/python bench/api_load.py --small    # 10 orgs x 20 ads x 365 days, short runs
    .venv/bin/python bench/api_load.py --smoke    # CI (bench/gate.py compares its ratios with a baseline commit's)

What it does, for real, on this machine:

1. installs ``wrk`` from Debian (``apt-get install wrk``) when it is not on PATH;
2. builds the dataset once in its own PostgreSQL database (``omnify_bench_api_<size>``;
   reused while its signature - sizes, seed and the migrations - matches; ``--rebuild``
   forces it): organizations, clients and API keys through Omnify's own API, ads and daily
   metric rows by ``COPY``, the rollups summed from them, ``ANALYZE``;
3. starts, each with 2 uvicorn workers: the bare route (``bench/bare_app.py``), Omnify
   as ``omnify serve`` runs it (``OMNIFY_ENV=production``, PostgreSQL as the app role
   under row-level security, Redis for cache and rate limits, API keys, access log), and
   Omnify with OpenTelemetry tracing on (``bench/traced_app.py``, in-process exporter);
4. drives them with wrk and one Lua script (``bench/api_load.lua``): tenants drawn from a
   Zipf distribution (s=1), 80-100-day date ranges, **distinct** per request in the
   uncached cells (the script walks each tenant's ranges without repeating), a small set
   warmed beforehand in the cached cells (every request a hit: the script counts
   ``X-Cache``);
5. for each cell (connections 1 and 16 x uncached and cached) waits until the 1-minute
   load average is under 0.8 (``--quiet-load``; gives up after ``--quiet-timeout`` seconds
   with a warning printed and recorded), then runs A B A B (bare, Omnify, bare, Omnify;
   ``--pairs`` sets how many A B pairs, each side's figure is the median of its runs),
   and the tracing pairs (Omnify, Omnify traced) at 16 connections, both warmed first
   (``--tracing-only``: just those);
6. prints one JSON object (and writes it to ``--out``): every run's req/s, p50/p95/p99,
   server CPU per request (the uvicorn process tree's user+system time from /proc over the
   requests: steadier than req/s on a shared machine), errors and cache hits, the ratios
   per cell, and the issue's targets as pass/fail.

Omnify answers each request with the full report (90 daily rows with KPIs, totals, per
currency); the bare route returns the daily sums only. Rate limits stay on in Omnify
(raised so the bench is not refused: what is measured is their cost, not their refusal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT / "src"))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from omnify.core import migrate  # noqa: E402
from omnify.core.secrets import encode_key, generate_master_key, new_key_id  # noqa: E402

APP_ROLE = "omnify_bench_app"
SECRET = "bench-secret-key-0123456789abcdef-0123456789abcdef"
SEED = 20261203
RANGE_MIN, RANGE_MAX = 80, 100  # days per request (90 on average)
CACHED_RANGES_PER_ORG = 3


@dataclass(frozen=True)
class Size:
    name: str
    orgs: int
    ads: int
    days: int
    campaigns: int
    duration: float  # seconds per wrk run
    conns: tuple[int, ...]

    @property
    def rows(self) -> int:
        return self.orgs * self.ads * self.days


SIZES = {
    "full": Size("full", 100, 100, 365, 10, 15.0, (1, 16)),
    # 365 days, not fewer: with 120 the hottest tenant ran out of distinct 80-100-day ranges
    # within a run, so the "uncached" cells got 4-16 % hits, more for the faster server (more
    # requests, more repeats): a bias in every small-size ratio.
    "small": Size("small", 10, 20, 365, 4, 6.0, (1, 16)),
    "smoke": Size("smoke", 6, 10, 110, 2, 4.0, (8,)),
}


# ------------------------------------------------------------------------------ setup
def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: installing wrk from Debian (apt-get install -y wrk)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed (apt-get install wrk)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signature(size: Size) -> str:
    heads = sorted(p.name for p in (ROOT / "src/omnify/migrations/versions").glob("*.py"))
    return hashlib.sha256(json.dumps([size.orgs, size.ads, size.days, size.campaigns, SEED, heads]).encode()
                          ).hexdigest()[:16]


@dataclass
class Dataset:
    owner_url: str
    app_url: str
    orgs: list[dict[str, str]] = field(default_factory=list)  # org_id, client_id, key


def _admin(server_url: str) -> Any:
    base = make_url(server_url)
    return create_engine(migrate.sync_url(base.set(database="postgres").render_as_string(False)),
                         isolation_level="AUTOCOMMIT")


def database_urls(server_url: str, name: str) -> tuple[str, str]:
    base = make_url(server_url)
    return (base.set(database=name).render_as_string(False),
            base.set(database=name, username=APP_ROLE, password=APP_ROLE).render_as_string(False))


def prepare_database(server_url: str, size: Size, rebuild: bool) -> tuple[Dataset, bool]:
    """(dataset, reused). Creates the database and the app role when needed."""
    name = f"omnify_bench_api_{size.name}"
    owner, app = database_urls(server_url, name)
    admin = _admin(server_url)
    sig = signature(size)
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}).scalar():
            conn.execute(text(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_ROLE}' NOSUPERUSER NOBYPASSRLS"))
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
    if exists and not rebuild:
        engine = create_engine(migrate.sync_url(owner))
        try:
            with engine.connect() as conn:
                meta = conn.execute(text("SELECT signature, tenants FROM bench_meta")).one_or_none()
        except Exception:
            meta = None
        finally:
            engine.dispose()
        if meta is not None and meta[0] == sig:
            admin.dispose()
            return Dataset(owner, app, json.loads(meta[1])), True
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return Dataset(owner, app), False


def base_settings(ds: Dataset, data_dir: Path, redis_url: str, **extra: Any) -> dict[str, str]:
    """The Omnify servers' environment (also used, as Settings, by the builder)."""
    env = {
        "OMNIFY_ENV": "production", "OMNIFY_SECRET_KEY": SECRET, "OMNIFY_DATA_DIR": str(data_dir),
        "OMNIFY_DATABASE_URL": ds.app_url, "OMNIFY_MIGRATION_DATABASE_URL": ds.owner_url,
        "OMNIFY_DB_APP_ROLE": APP_ROLE, "OMNIFY_REDIS_URL": redis_url, "OMNIFY_LOG_LEVEL": "INFO",
        "OMNIFY_SECRETS_BACKEND": "env", "OMNIFY_MASTER_KEYS": f"{new_key_id()}:{encode_key(generate_master_key())}",
        # Limits stay on (their cost is measured) but high enough never to refuse the bench.
        "OMNIFY_RATE_LIMIT_API_KEY": "10000000/minute", "OMNIFY_RATE_LIMIT_ORG": "10000000/minute",
        "OMNIFY_RATE_LIMIT_USER": "10000000/minute", "OMNIFY_RATE_LIMIT_AUTH": "100000/minute",
        "OMNIFY_DB_POOL_SIZE": "10", "OMNIFY_DB_MAX_OVERFLOW": "10", "OMNIFY_METRICS_ENABLED": "true",
        # What production refuses to start without; nothing here is called by the bench.
        "OMNIFY_PUBLIC_BASE_URL": "https://omnify.bench.test", "OMNIFY_TRUSTED_PROXIES": "127.0.0.1",
        "OMNIFY_EMAIL_BACKEND": "smtp", "OMNIFY_EMAIL_FROM": "Omnify <bench@omnify-bench.io>",
        "OMNIFY_META_APP_ID": "bench", "OMNIFY_META_APP_SECRET": "bench", "OMNIFY_GOOGLE_CLIENT_ID": "bench",
        "OMNIFY_GOOGLE_CLIENT_SECRET": "bench", "OMNIFY_GOOGLE_DEVELOPER_TOKEN": "bench",
        "OMNIFY_TIKTOK_APP_ID": "bench", "OMNIFY_TIKTOK_APP_SECRET": "bench", "OMNIFY_LINKEDIN_CLIENT_ID": "bench",
        "OMNIFY_LINKEDIN_CLIENT_SECRET": "bench", "OMNIFY_SHOPIFY_API_KEY": "bench",
        "OMNIFY_SHOPIFY_API_SECRET": "bench",
    }
    env.update({f"OMNIFY_{k.upper()}": str(v) for k, v in extra.items()})
    return env


async def build(ds: Dataset, size: Size, data_dir: Path, redis_url: str) -> None:
    """Tenants through the API; ads and metrics by COPY; rollups by one INSERT .. SELECT."""
    from omnify.app import create_app
    from omnify.settings import Settings

    env = base_settings(ds, data_dir, redis_url)
    settings = Settings.model_validate({k.removeprefix("OMNIFY_").lower(): v for k, v in env.items()}
                                       | {"env": "test", "log_level": "WARNING"})
    migrate.upgrade(settings)
    app = create_app(settings)
    started = time.perf_counter()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as api:
        for i in range(size.orgs):
            resp = await api.post("/api/v1/auth/register", json={
                "email": f"bench-{i}@example.com", "password": "bench-horse-battery-staple-42", "name": "Bench",
                "organization_name": f"Bench org {i:03d}"})
            resp.raise_for_status()
            body = resp.json()
            org_id, headers = body["organization"]["org_id"], {
                "Authorization": f"Bearer {body['tokens']['access_token']}"}
            resp = await api.post(f"/api/v1/orgs/{org_id}/clients", headers=headers,
                                  json={"company_name": f"Client {i:03d}", "currency": "USD"})
            resp.raise_for_status()
            client_id = resp.json()["id"]
            resp = await api.post(f"/api/v1/orgs/{org_id}/api-keys", headers=headers,
                                  json={"name": "bench", "scopes": ["read"]})
            resp.raise_for_status()
            ds.orgs.append({"org_id": org_id, "client_id": client_id, "key": resp.json()["key"]})
    await app.state.db.dispose()
    print(f"bench: {size.orgs} tenants through the API in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    started = time.perf_counter()
    conn = await asyncpg.connect(ds.owner_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute("UPDATE organizations SET plan = 'enterprise'")
        rng = random.Random(SEED)
        first_day = date(2025, 1, 1)
        now = datetime.now(UTC)
        metric_rows: list[tuple[Any, ...]] = []
        total = 0
        for t in ds.orgs:
            org, client = uuid.UUID(t["org_id"]), uuid.UUID(t["client_id"])
            conn_id, account = uuid.uuid4(), uuid.uuid4()
            await conn.execute(
                "INSERT INTO connections (id, org_id, client_id, platform, status, available_accounts, "
                "selected_account_ids, scopes, consecutive_failures, backfill_status, backfill_units_total, "
                "backfill_units_done, backfill_rows, created_at, updated_at) VALUES ($1, $2, $3, 'meta_ads', "
                "'connected', '[]', '[]', '[]', 0, 'done', 0, 0, 0, $4, $4)", conn_id, org, client, now)
            await conn.execute(
                "INSERT INTO ad_accounts (id, org_id, client_id, connection_id, platform, external_id, name, currency, "
                "timezone, status, created_at, updated_at) VALUES ($1, $2, $3, $4, 'meta_ads', $5, 'Bench', 'USD', "
                "'UTC', 'active', $6, $6)", account, org, client, conn_id, f"act_{account.hex[:10]}", now)
            campaigns = [uuid.uuid4() for _ in range(size.campaigns)]
            await conn.executemany(
                "INSERT INTO campaigns (id, org_id, client_id, connection_id, ad_account_id, platform, external_id, "
                "name, status, currency, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'meta_ads', $6, $7, "
                "'active', 'USD', $8, $8)",
                [(c, org, client, conn_id, account, f"c{n}", f"Campaign {n}", now) for n, c in enumerate(campaigns)])
            ads = [(uuid.uuid4(), campaigns[n % size.campaigns]) for n in range(size.ads)]
            await conn.executemany(
                "INSERT INTO ads (id, org_id, client_id, connection_id, ad_account_id, campaign_id, platform, "
                "external_id, name, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'meta_ads', $7, "
                "$8, 'active', $9, $9)",
                [(a, org, client, conn_id, account, c, f"a{n}", f"Ad {n}", now) for n, (a, c) in enumerate(ads)])
            for n, (ad, campaign) in enumerate(ads):
                level = rng.uniform(2_000, 60_000)
                for d in range(size.days):
                    impressions = int(level * rng.uniform(0.6, 1.4))
                    clicks = int(impressions * rng.uniform(0.005, 0.03))
                    conversions = round(clicks * rng.uniform(0.01, 0.08), 2)
                    spend = int(impressions * rng.uniform(0.3, 1.2))
                    metric_rows.append((uuid.uuid4(), org, client, conn_id, account, "meta_ads", "ad", f"a{n}",
                                        first_day + timedelta(days=d), campaign, None, ad, "USD", spend, impressions,
                                        clicks, conversions, int(conversions * rng.uniform(2_000, 9_000)), None,
                                        None, now, now))
            if len(metric_rows) >= 200_000:
                total += await _copy_metrics(conn, metric_rows)
                metric_rows = []
        total += await _copy_metrics(conn, metric_rows)
        await conn.execute("""
            INSERT INTO analytics_daily (org_id, client_id, ad_account_id, platform, day, currency, campaign_id,
                spend_minor, impressions, clicks, conversions_micros, revenue_minor, updated_at)
            SELECT org_id, client_id, ad_account_id, platform, day, currency,
                   COALESCE(campaign_id, '00000000-0000-0000-0000-000000000000'), sum(spend_minor), sum(impressions),
                   sum(clicks), sum(round(conversions * 1000000)::bigint), sum(revenue_minor), now()
            FROM ad_metrics_daily WHERE level = 'ad'
            GROUP BY org_id, client_id, ad_account_id, platform, day, currency, campaign_id""")
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CREATE TABLE bench_meta (signature text, tenants text, first_day date, days int)")
        await conn.execute("INSERT INTO bench_meta VALUES ($1, $2, $3, $4)", signature(size), json.dumps(ds.orgs),
                           first_day, size.days)
    finally:
        await conn.close()
    print(f"bench: {total:,} metric rows and their rollups in {time.perf_counter() - started:.1f} s", file=sys.stderr)


async def _copy_metrics(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> int:
    if rows:
        await conn.copy_records_to_table("ad_metrics_daily", records=rows, columns=[
            "id", "org_id", "client_id", "connection_id", "ad_account_id", "platform", "level", "entity_external_id",
            "day", "campaign_id", "ad_group_id", "ad_id", "currency", "spend_minor", "impressions", "clicks",
            "conversions", "revenue_minor", "reach", "frequency", "created_at", "updated_at"])
    return len(rows)


# ------------------------------------------------------------------------------ servers
@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants (uvicorn's workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def start_server(name: str, app: str, env: dict[str, str], log_dir: Path, workers: int = 2) -> Server:
    port = free_port()
    log = log_dir / f"{name}.log"
    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("OMNIFY_")}, **env,
                "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT / "src")])}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=str(log_dir))
    server = Server(name, f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + "/healthz", timeout=2).status_code in (200, 404):
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")


# ------------------------------------------------------------------------------ load
def zipf_cdf(n: int, s: float = 1.0) -> list[float]:
    weights = [1 / (k ** s) for k in range(1, n + 1)]
    total = sum(weights)
    acc, out = 0.0, []
    for w in weights:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0
    return out


def write_lua(path: Path, ds: Dataset, first_day: date, days: int, mode: str) -> None:
    """The wrk script: Zipf tenants, per-tenant walks over distinct ranges (uncached) or
    the warmed ones (cached), response counting, JSON summary."""
    tenants = list(ds.orgs)
    random.Random(SEED).shuffle(tenants)  # which tenant is "hot" is not the creation order
    day_names = [(first_day + timedelta(days=d)).isoformat() for d in range(days)]

    def lua_list(values: list[Any]) -> str:
        return "{" + ",".join(json.dumps(v) for v in values) + "}"

    lines = [
        f"local orgs = {lua_list([t['org_id'] for t in tenants])}",
        f"local clients = {lua_list([t['client_id'] for t in tenants])}",
        f"local keys = {lua_list([t['key'] for t in tenants])}",
        f"local cdf = {lua_list(zipf_cdf(len(tenants)))}",
        f"local days = {lua_list(day_names)}",
        f"local mode = {json.dumps(mode)}",
        f"local rmin, rmax, cached_per_org = {RANGE_MIN}, {min(RANGE_MAX, days)}, {CACHED_RANGES_PER_ORG}",
        LUA_BODY,
    ]
    path.write_text("\n".join(lines))


LUA_BODY = r"""
local threads = {}
local counter = 1
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local id, nthreads, walk = 1, 1, {}
hits, misses, errors, statuses = 0, 0, 0, 0
function init(args)
  id = tonumber(wrk.thread:get("id")) or 1
  nthreads = tonumber(args[1]) or 1
  math.randomseed(1000 + id)
end

local function tenant()
  local u = math.random()
  for i = 1, #cdf do if u <= cdf[i] then return i end end
  return #cdf
end

-- The k-th range of a tenant (k from 0): distinct for every k below lengths x starts
-- (a length per residue of k, then starts in a scattered order: 101 is prime to them).
local function range(k)
  local lengths = rmax - rmin + 1
  local r, q = k % lengths, math.floor(k / lengths)
  local length = rmin + r
  local starts = #days - length + 1
  local start = (q * 101 + r * 13) % starts
  return days[start + 1], days[start + length]
end

function cached_range(i, j)  -- the warmed ranges: j in 0 .. cached_per_org - 1
  return range(j * 17 + i)
end

function request()
  local i = tenant()
  local since, upto
  if mode == "cached" then
    since, upto = cached_range(i, math.random(0, cached_per_org - 1))
  else
    local k = walk[i] or 0
    walk[i] = k + 1
    since, upto = range(k * nthreads + id - 1)
  end
  local path = "/api/v1/orgs/" .. orgs[i] .. "/clients/" .. clients[i] .. "/analytics?since=" .. since ..
    "&until=" .. upto .. "&granularity=day&group_by=none&compare=false"
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. keys[i]})
end

function response(status, headers, body)
  if status ~= 200 then errors = errors + 1 end
  local x = headers["X-Cache"] or headers["x-cache"]
  if x == "hit" then hits = hits + 1 elseif x == "miss" then misses = misses + 1 end
end

function done(summary, latency, requests)
  local h, m, e = 0, 0, 0
  for _, t in ipairs(threads) do
    h = h + (tonumber(t:get("hits")) or 0)
    m = m + (tonumber(t:get("misses")) or 0)
    e = e + (tonumber(t:get("errors")) or 0)
  end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, ' ..
    '"socket_errors": %d, "non_2xx": %d, "hits": %d, "misses": %d}\n',
    summary.requests, summary.duration, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, h, m))
end
"""


def analytics_request(tenant: dict[str, str], first_day: date, start: int,
                      length: int) -> tuple[str, dict[str, str]]:
    """(path, headers) of one tenant's daily analytics report over ``length`` days from day ``start``."""
    since, until = first_day + timedelta(days=start), first_day + timedelta(days=start + length - 1)
    return (f"/api/v1/orgs/{tenant['org_id']}/clients/{tenant['client_id']}/analytics?since={since}&until={until}"
            f"&granularity=day&group_by=none&compare=false", {"Authorization": f"Bearer {tenant['key']}"})


def warm_urls(ds: Dataset, first_day: date, days: int) -> Iterator[tuple[str, dict[str, str]]]:
    """The cached cells' ranges, the ones the Lua script's cached_range() yields."""
    tenants = list(ds.orgs)
    random.Random(SEED).shuffle(tenants)
    lengths = min(RANGE_MAX, days) - RANGE_MIN + 1
    for i, t in enumerate(tenants, start=1):
        for j in range(CACHED_RANGES_PER_ORG):
            k = j * 17 + i
            r, q = k % lengths, k // lengths
            length = RANGE_MIN + r
            starts = days - length + 1
            start = (q * 101 + r * 13) % starts
            yield analytics_request(t, first_day, start, length)


def run_wrk(wrk: str, url: str, script: Path, conns: int, duration: float) -> dict[str, Any]:
    threads = 1 if conns == 1 else 2
    cmd = [wrk, "-t", str(threads), "-c", str(conns), "-d", f"{duration:.0f}s", "--timeout", "10s", "-s", str(script),
           url, "--", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    data: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    data["rps"] = round(data["requests"] / (data["duration_us"] / 1e6), 1)
    answered = data["hits"] + data["misses"]
    data["hit_ratio"] = round(data["hits"] / answered, 4) if answered else None
    return data


def wait_quiet(threshold: float, timeout: float) -> dict[str, Any]:
    """Wait for the 1-minute load average to drop under ``threshold``."""
    started = time.monotonic()
    load = os.getloadavg()[0]
    while load >= threshold and time.monotonic() - started < timeout:
        time.sleep(5)
        load = os.getloadavg()[0]
    waited = round(time.monotonic() - started, 1)
    quiet = load < threshold
    if not quiet:
        print(f"bench: WARNING: the machine never got quiet (1-min load {load:.2f} >= {threshold} after "
              f"{waited:.0f} s); this cell's figures are noisy", file=sys.stderr)
    return {"load_1m": round(load, 2), "waited_s": waited, "quiet": quiet}


def flush_cache(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    try:
        keys = list(r.scan_iter(match="omnify:analytics:*", count=1000))
        for start in range(0, len(keys), 1000):
            r.delete(*keys[start:start + 1000])
    finally:
        r.close()


def warm(server: Server, ds: Dataset, first_day: date, days: int) -> int:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        n = 0
        for path, headers in warm_urls(ds, first_day, days):
            resp = c.get(path, headers=headers)
            resp.raise_for_status()
            n += 1
    return n


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def check_answers(bare: Server, omnify: Server, ds: Dataset, first_day: date, days: int) -> None:
    """Both servers must answer the same sums before their speed is compared."""
    path, headers = next(warm_urls(ds, first_day, days))
    with httpx.Client(timeout=30) as c:
        b = c.get(bare.url + path).json()
        o = c.get(omnify.url + path, headers=headers).json()
    bare_spend = sum(r["spend_minor"] for r in b)
    omni_spend = sum(cur["totals"]["spend_minor"] for cur in o["currencies"])
    if bare_spend != omni_spend or len(b) != len(o["currencies"][0]["rows"]):
        raise RuntimeError(f"bare and Omnify disagree: {bare_spend} vs {omni_spend}")


# ------------------------------------------------------------------------------ main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--small", action="store_true", help="10 orgs x 20 ads x 365 days, 6 s runs")
    group.add_argument("--smoke", action="store_true",
                       help="CI smoke (bench/gate.py): tiny, 4 s runs, 8 connections, no tracing cells")
    parser.add_argument("--duration", type=float, help="seconds per wrk run")
    parser.add_argument("--quiet-load", type=float, default=0.8, help="wait for the 1-min load average under this")
    parser.add_argument("--quiet-timeout", type=float, default=180.0, help="give up waiting after this (seconds)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the dataset even if it matches")
    tracing = parser.add_mutually_exclusive_group()
    tracing.add_argument("--no-tracing", action="store_true", help="skip the tracing-overhead cells")
    tracing.add_argument("--tracing-only", action="store_true",
                         help="only the tracing pair (Omnify vs Omnify traced, 16 connections): no bare route cells")
    parser.add_argument("--bare-source", choices=["raw", "rollup"], default="raw",
                        help="what the bare route sums: raw daily rows (the issue's baseline) or the rollups")
    parser.add_argument("--database-url", default=os.environ.get(
        "OMNIFY_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis-url", default=os.environ.get("OMNIFY_BENCH_REDIS_URL") or os.environ.get(
        "OMNIFY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"), help="its analytics keys are flushed between runs")
    parser.add_argument("--pairs", type=int, default=2,
                        help="A B runs per cell (alternating); each side's figure is the median of its runs. "
                             "More pairs make one disturbed run (another tenant of the VM) count less")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    size = SIZES["smoke" if args.smoke else "small" if args.small else "full"]
    duration = args.duration or size.duration
    wrk = ensure_wrk()

    result: dict[str, Any] = {"benchmark": "api_load", "size": size.name, "orgs": size.orgs, "ads": size.ads,
                              "days": size.days, "metric_rows": size.rows, "duration_s": duration,
                              "bare_source": args.bare_source, "cpus": os.cpu_count(), "pairs": args.pairs,
                              "cells": [], "tracing": []}
    ds, reused = prepare_database(args.database_url, size, args.rebuild)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="omnify-api-load-") as tmp:
        tmpdir = Path(tmp)
        try:
            if not reused:
                asyncio.run(build(ds, size, tmpdir, args.redis_url))
            result["dataset"] = "reused" if reused else "built"
            first_day, days = date(2025, 1, 1), size.days
            bare_env = {"BARE_DSN": ds.owner_url.replace("postgresql+asyncpg", "postgresql"),
                        "BARE_SOURCE": args.bare_source}
            omnify_env = base_settings(ds, tmpdir, args.redis_url)
            bare = start_server("bare", "bare_app:create", bare_env, tmpdir)
            servers.append(bare)
            omnify = start_server("omnify", "omnify.app:create_app", omnify_env, tmpdir)
            servers.append(omnify)
            traced = None
            if not (args.no_tracing or args.smoke):
                traced = start_server("omnify_traced", "traced_app:create", omnify_env, tmpdir)
                servers.append(traced)
            flush_cache(args.redis_url)
            check_answers(bare, omnify, ds, first_day, days)
            targets = {"bare": bare, "omnify": omnify}
            scripts = {}
            for mode in ("uncached", "cached"):
                scripts[mode] = tmpdir / f"{mode}.lua"
                write_lua(scripts[mode], ds, first_day, days, mode)

            def one(server: Server, mode: str, conns: int) -> dict[str, Any]:
                if mode == "uncached":
                    flush_cache(args.redis_url)  # nothing left from earlier runs
                else:
                    warm(server, ds, first_day, days) if server.name != "bare" else None
                cpu_before = tree_cpu_seconds(server.proc.pid)
                run = run_wrk(wrk, server.url, scripts[mode], conns, duration)
                cpu = tree_cpu_seconds(server.proc.pid) - cpu_before
                run["server"] = server.name
                run["cpu_ms_per_request"] = round(cpu * 1000 / run["requests"], 3) if run["requests"] else None
                print(f"bench: {mode:8} c={conns:<2} {server.name:13} {run['rps']:8.1f} req/s  "
                      f"p50 {run['p50_ms']:7.2f} ms  p95 {run['p95_ms']:7.2f} ms  "
                      f"cpu {run['cpu_ms_per_request']} ms/req  errors {run['non_2xx']}"
                      f"+{run['socket_errors']}  hits {run['hit_ratio']}", file=sys.stderr)
                return run

            for conns in () if args.tracing_only else size.conns:
                for mode in ("uncached", "cached"):
                    cell: dict[str, Any] = {"mode": mode, "conns": conns,
                                            "quiet": wait_quiet(args.quiet_load, args.quiet_timeout), "runs": []}
                    for name in ("bare", "omnify") * args.pairs:  # A B A B ...
                        cell["runs"].append(one(targets[name], mode, conns))
                    cell["load_1m_after"] = round(os.getloadavg()[0], 2)
                    summarize(cell, "bare", "omnify")
                    result["cells"].append(cell)
            if traced is not None:
                targets["omnify_traced"] = traced
                # Both sides equally warm (pools filled, statements prepared, code paths
                # run): otherwise the traced app's first run pays its start-up alone.
                for server in (omnify, traced):
                    flush_cache(args.redis_url)
                    run_wrk(wrk, server.url, scripts["uncached"], max(size.conns), 2.0)
                for mode in ("uncached", "cached"):
                    conns = max(size.conns)
                    cell = {"mode": mode, "conns": conns, "quiet": wait_quiet(args.quiet_load, args.quiet_timeout),
                            "runs": []}
                    for name in ("omnify", "omnify_traced") * args.pairs:
                        cell["runs"].append(one(targets[name], mode, conns))
                    cell["load_1m_after"] = round(os.getloadavg()[0], 2)
                    summarize(cell, "omnify", "omnify_traced")
                    result["tracing"].append(cell)
        finally:
            for server in servers:
                server.stop()
    result["summary"] = summary(result)
    result["targets"] = targets_met(result, size)
    result["all_targets_met"] = all(t["met"] for t in result["targets"].values())
    text_out = json.dumps(result, indent=2)
    print(text_out)
    if args.out:
        args.out.write_text(text_out + "\n")
    return 0


def summarize(cell: dict[str, Any], a: str, b: str) -> None:
    runs_a = [r for r in cell["runs"] if r["server"] == a]
    runs_b = [r for r in cell["runs"] if r["server"] == b]
    cell[f"{a}_rps"] = round(median([r["rps"] for r in runs_a]), 1)
    cell[f"{b}_rps"] = round(median([r["rps"] for r in runs_b]), 1)
    cell[f"{a}_p95_ms"] = round(median([r["p95_ms"] for r in runs_a]), 2)
    cell[f"{b}_p95_ms"] = round(median([r["p95_ms"] for r in runs_b]), 2)
    cell[f"{a}_p50_ms"] = round(median([r["p50_ms"] for r in runs_a]), 2)
    cell[f"{b}_p50_ms"] = round(median([r["p50_ms"] for r in runs_b]), 2)
    cell["rps_ratio"] = round(cell[f"{b}_rps"] / cell[f"{a}_rps"], 3) if cell[f"{a}_rps"] else None
    cell["p95_ratio"] = round(cell[f"{b}_p95_ms"] / cell[f"{a}_p95_ms"], 3) if cell[f"{a}_p95_ms"] else None
    for name, runs in ((a, runs_a), (b, runs_b)):
        cpu = [r["cpu_ms_per_request"] for r in runs if r.get("cpu_ms_per_request") is not None]
        cell[f"{name}_cpu_ms_per_request"] = round(median(cpu), 3) if cpu else None
    cpu_a, cpu_b = cell[f"{a}_cpu_ms_per_request"], cell[f"{b}_cpu_ms_per_request"]
    cell["cpu_ratio"] = round(cpu_b / cpu_a, 3) if cpu_a and cpu_b else None
    cell["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in cell["runs"])


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline ratios, flat (bench/gate.py compares them with a baseline commit's):
    at the most connections measured, Omnify over the bare route, and traced over untraced."""
    out: dict[str, Any] = {"load_1m_max": max(
        [c["quiet"]["load_1m"] for c in result["cells"] + result["tracing"]] or [0])}
    top = max([c["conns"] for c in result["cells"]] or [0])
    for cell in result["cells"]:
        if cell["conns"] == top:
            out[f"{cell['mode']}_rps_ratio"] = cell["rps_ratio"]
            out[f"{cell['mode']}_p95_ratio"] = cell["p95_ratio"]
    for cell in result["tracing"]:
        out[f"tracing_{cell['mode']}_rps_ratio"] = cell["rps_ratio"]
        out[f"tracing_{cell['mode']}_cpu_ratio"] = cell["cpu_ratio"]
    return out


def targets_met(result: dict[str, Any], size: Size) -> dict[str, dict[str, Any]]:
    conns = max(size.conns)
    cells = {(c["mode"], c["conns"]): c for c in result["cells"]}
    out: dict[str, dict[str, Any]] = {}
    unc, hit = cells.get(("uncached", conns)), cells.get(("cached", conns))
    if unc:
        out["uncached_rps_ratio>=0.6"] = {"value": unc["rps_ratio"], "met": (unc["rps_ratio"] or 0) >= 0.6}
        out["uncached_p95_ratio<=2"] = {"value": unc["p95_ratio"], "met": (unc["p95_ratio"] or math.inf) <= 2.0}
    if hit:
        out["cached_rps_ratio>=1"] = {"value": hit["rps_ratio"], "met": (hit["rps_ratio"] or 0) >= 1.0}
        hits = [r["hit_ratio"] for r in hit["runs"] if r["server"] == "omnify"]
        out["cached_cells_all_hits"] = {"value": min(hits), "met": min(hits) >= 0.99}
    if unc:
        hits = [r["hit_ratio"] or 0 for r in unc["runs"] if r["server"] == "omnify"]
        out["uncached_cells_misses"] = {"value": max(hits), "met": max(hits) <= 0.02}
    for cell in result["tracing"]:
        key = f"tracing_{cell['mode']}_rps_ratio>=0.9"
        out[key] = {"value": cell["rps_ratio"], "met": (cell["rps_ratio"] or 0) >= 0.9}
        if cell["mode"] == "uncached":
            hits = [r["hit_ratio"] or 0 for r in cell["runs"]]
            out["tracing_uncached_cells_misses"] = {"value": max(hits), "met": max(hits) <= 0.02}
    errors = sum(c["errors"] for c in result["cells"] + result["tracing"])
    out["no_errors"] = {"value": errors, "met": errors == 0}
    return out


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
