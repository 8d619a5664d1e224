"""The baseline of bench/api_load.py: a bare Starlette route over raw asyncpg.

No authentication, no tenant settings, no ORM, no cache, no middleware: one pooled
connection, one query, one JSON encoding. It answers the same URL as Omnify's analytics
route (``/api/v1/orgs/{org}/clients/{client}/analytics?since=&until=``) with the same
90-day daily rollup, so one wrk script drives both.

``BARE_SOURCE`` picks what it sums: ``raw`` (default: the daily rows of every ad, as the
issue's baseline did) or ``rollup`` (the per-client daily rollups Omnify reads: the
fastest a hand-written route over this schema can be).

Run by the bench:  uvicorn bare_app:create --factory --workers 2   (env BARE_DSN, BARE_SOURCE)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

QUERIES = {
    "raw": """
        SELECT day, currency, sum(spend_minor)::bigint AS spend_minor, sum(impressions)::bigint AS impressions,
               sum(clicks)::bigint AS clicks, sum(conversions) AS conversions,
               sum(revenue_minor)::bigint AS revenue_minor
        FROM ad_metrics_daily
        WHERE org_id = $1 AND client_id = $2 AND day BETWEEN $3 AND $4 AND level = 'ad'
        GROUP BY day, currency ORDER BY day, currency""",
    "rollup": """
        SELECT day, currency, sum(spend_minor)::bigint AS spend_minor, sum(impressions)::bigint AS impressions,
               sum(clicks)::bigint AS clicks, sum(conversions_micros)::bigint AS conversions_micros,
               sum(revenue_minor)::bigint AS revenue_minor
        FROM analytics_daily
        WHERE org_id = $1 AND client_id = $2 AND day BETWEEN $3 AND $4
        GROUP BY day, currency ORDER BY day, currency""",
}


def create() -> Starlette:
    dsn = os.environ["BARE_DSN"]
    query = QUERIES[os.environ.get("BARE_SOURCE", "raw")]
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
        yield
        await pool.close()

    async def analytics(request: Request) -> Response:
        assert pool is not None
        try:
            org, client = uuid.UUID(request.path_params["org"]), uuid.UUID(request.path_params["client"])
            since, until = date.fromisoformat(request.query_params["since"]), date.fromisoformat(
                request.query_params["until"])
        except (KeyError, ValueError):
            return Response(b'{"detail":"bad request"}', status_code=400, media_type="application/json")
        rows = await pool.fetch(query, org, client, since, until)
        return Response(orjson.dumps([dict(r) for r in rows]), media_type="application/json")

    return Starlette(routes=[Route("/api/v1/orgs/{org}/clients/{client}/analytics", analytics)], lifespan=lifespan)
