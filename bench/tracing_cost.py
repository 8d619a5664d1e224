"""What tracing costs the API, measured where the noise is small: server CPU per request, in one process.

    .venv/bin/python bench/tracing_cost.py            # small dataset, 7 A B pairs per cell
    .venv/bin/python bench/tracing_cost.py --pairs 11 --requests 2000

``bench/api_load.py`` measures tracing end to end (wrk against two uvicorn servers), where the
figure moves 0.84-1.05 from one run to the next with whatever else the 2-CPU VM does. This bench
asks the narrower question under it - how much CPU does a request cost with tracing on and off -
in a way the VM's other tenants disturb far less:

* the same production app twice in one process (``omnify.app:create_app`` with the bench's
  production settings: PostgreSQL as the app role under RLS, Redis for cache and rate limits, API
  keys, access log), and a copy with :func:`omnify.core.tracing.install_tracing` on: every span
  created, attributed and handed to the ``BatchSpanProcessor`` production uses, exported by its
  thread to an exporter that counts them (no collector hop);
* requests one at a time through ``httpx.ASGITransport``; the CPU counted is the process's
  (``time.process_time``: every thread, so the export thread's work is in) from the app's entry
  to its return, so the client's own work is not in either side's figure;
* cells ``cached`` (every request a cache hit, checked) and ``uncached`` (distinct date ranges,
  the analytics cache flushed before each run; every request a miss, checked), each as A B A B
  pairs, untraced then traced; the figure is the median of the per-pair ratios.

It uses ``bench/api_load.py``'s dataset (``--small`` size, built once into its own database).
The issue's budget: tracing costs at most 10 % (ratio <= 1.10).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api_load
import httpx

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]
BUDGET = 1.10
FIRST_DAY = date(2025, 1, 1)


class Timed:
    """The app, with the process CPU spent inside its calls added up."""

    def __init__(self, app: ASGI) -> None:
        self.app, self.cpu, self.calls = app, 0.0, 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        start = time.process_time()
        try:
            await self.app(scope, receive, send)
        finally:
            self.cpu += time.process_time() - start
            self.calls += 1


def uncached_urls(ds: api_load.Dataset, count: int) -> list[tuple[str, dict[str, str]]]:
    """Distinct 80-100-day ranges across the tenants, shuffled: each one a miss once the cache is flushed."""
    urls = [api_load.analytics_request(tenant, FIRST_DAY, start, length)
            for tenant in ds.orgs for start in range(0, 260) for length in (80, 87, 93, 100)]
    random.Random(api_load.SEED).shuffle(urls)
    if len(urls) < count:
        raise SystemExit(f"only {len(urls)} distinct ranges for {count} requests per run")
    return urls


async def run(app: Timed, urls: list[tuple[str, dict[str, str]]], n: int, want_cache: str) -> float:
    """CPU microseconds per request inside the app over ``n`` requests; every answer checked."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    cpu0, calls0 = app.cpu, app.calls
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        for i in range(n):
            url, headers = urls[i % len(urls)]
            resp = await client.get(url, headers=headers)
            if resp.status_code != 200 or resp.headers.get("x-cache", "").lower() != want_cache:
                raise SystemExit(f"{url}: {resp.status_code} x-cache={resp.headers.get('x-cache')} {resp.text[:200]}")
    return (app.cpu - cpu0) / (app.calls - calls0) * 1e6


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    size = api_load.SIZES["small"]
    ds, reused = api_load.prepare_database(args.database_url, size, rebuild=False)
    data_dir = Path(tempfile.mkdtemp(prefix="omnify-tracing-cost-"))
    if not reused:
        await api_load.build(ds, size, data_dir, args.redis_url)
    os.environ.update(api_load.base_settings(ds, data_dir, args.redis_url))

    from traced_app import CountingExporter

    from omnify.app import create_app
    from omnify.core.tracing import install_tracing
    from omnify.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    plain_app = create_app(settings)
    traced_app = create_app(settings)
    exporter = CountingExporter()
    provider = install_tracing(traced_app, settings.model_copy(update={"otel_enabled": True}),
                               traced_app.state.db, exporter=exporter, batch=True)
    plain, traced = Timed(plain_app), Timed(traced_app)
    cached = list(api_load.warm_urls(ds, FIRST_DAY, size.days))
    misses = uncached_urls(ds, args.uncached_requests)
    result: dict[str, Any] = {"benchmark": "tracing_cost", "pairs": args.pairs, "dataset": size.name,
                              "load_1m_before": round(os.getloadavg()[0], 2), "cells": {}}
    async with plain_app.router.lifespan_context(plain_app), traced_app.router.lifespan_context(traced_app):
        api_load.flush_cache(args.redis_url)
        for app in (plain, traced):  # both warm: pools filled, statements prepared, every code path run once
            await run(app, misses[-200:], 200, "miss")
            api_load.flush_cache(args.redis_url)
        await run(plain, cached, len(cached), "miss")  # fills the cache both read (the same keys)
        await run(traced, cached, len(cached), "hit")
        for mode in ("cached", "uncached"):
            sides: dict[str, list[float]] = {"untraced": [], "traced": []}
            for _ in range(args.pairs):
                for name, app in (("untraced", plain), ("traced", traced)):
                    if mode == "cached":
                        sides[name].append(await run(app, cached, args.requests, "hit"))
                    else:
                        api_load.flush_cache(args.redis_url)
                        sides[name].append(await run(app, misses, args.uncached_requests, "miss"))
            ratios = [t / u for u, t in zip(sides["untraced"], sides["traced"], strict=True)]
            result["cells"][mode] = {
                "cpu_us_per_request": {k: [round(v, 1) for v in vs] for k, vs in sides.items()},
                "median_us": {k: round(statistics.median(vs), 1) for k, vs in sides.items()},
                "pair_ratios": [round(r, 3) for r in ratios],
                "ratio": round(statistics.median(ratios), 3),
                "met": statistics.median(ratios) <= BUDGET,
            }
            print(f"tracing_cost: {mode:8} untraced {result['cells'][mode]['median_us']['untraced']:8.1f} us/req  "
                  f"traced {result['cells'][mode]['median_us']['traced']:8.1f} us/req  "
                  f"ratio {result['cells'][mode]['ratio']:.3f} (pairs {result['cells'][mode]['pair_ratios']})",
                  file=sys.stderr)
    provider.force_flush()
    result["spans_exported"] = exporter.spans
    result["load_1m_after"] = round(os.getloadavg()[0], 2)
    if exporter.spans < traced.calls:  # tracing really ran: at least a server span per traced request
        raise SystemExit(f"only {exporter.spans} spans exported for {traced.calls} traced requests")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7, help="A B pairs per cell (median of the pair ratios)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per cached run")
    parser.add_argument("--uncached-requests", type=int, default=400, help="requests per uncached run")
    parser.add_argument("--database-url", default=os.environ.get(
        "OMNIFY_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis-url", default=os.environ.get("OMNIFY_BENCH_REDIS_URL") or os.environ.get(
        "OMNIFY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"), help="its analytics keys are flushed between runs")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    result = asyncio.run(measure(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if all(c["met"] for c in result["cells"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
