"""The catalogue of outbound webhook events and their versioned envelope.

Every message has the same envelope, so a receiver can route on ``type`` and
``version`` before looking at ``data``::

    {"type": "sync.failed", "version": 1, "id": "<uuid>", "created_at": "<RFC 3339>",
     "org_id": "<uuid>", "data": {...}}

Versioning rule: within a version, fields are only ever *added* to ``data``; renaming,
removing or changing the meaning of a field means a new version of that event type.
The examples below are the documentation (docs/webhooks.md is generated from the same
shapes) and the payload of the test event.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    version: int
    description: str
    example: dict[str, Any]


_CLIENT = "6f1c1c56-5d55-4a8e-9d7e-1f9f5b0c2a11"
_CONNECTION = "0b6f2f0e-3c4b-4f7a-8b55-7f2a4d1e9c30"

CATALOGUE: dict[str, EventType] = {
    e.name: e
    for e in (
        EventType("client.created", 1, "A client profile was created.",
                  {"client_id": _CLIENT, "company_name": "Acme Outdoor", "status": "active"}),
        EventType("client.archived", 1, "A client was archived (restorable for 30 days).",
                  {"client_id": _CLIENT}),
        EventType("client.restored", 1, "An archived client was restored.", {"client_id": _CLIENT}),
        EventType("client.onboarding_completed", 1, "Every onboarding step of a client is done.",
                  {"client_id": _CLIENT, "company_name": "Acme Outdoor",
                   "completed_at": "2026-03-02T10:15:00Z"}),
        EventType("credential.expiring", 1, "A platform credential expires soon and needs re-authorisation.",
                  {"client_id": _CLIENT, "platform": "meta_ads", "expires_at": "2026-03-09T00:00:00Z"}),
        EventType("connection.failed", 1, "A platform connection stopped working (revoked, expired, refused).",
                  {"connection_id": _CONNECTION, "client_id": _CLIENT, "platform": "google_ads",
                   "error_code": "token_revoked", "message": "The refresh token was revoked."}),
        EventType("sync.completed", 1, "A platform sync finished.",
                  {"sync_run_id": "9a8d7c6b-5e4f-4a3b-9c2d-1e0f9a8b7c6d", "connection_id": _CONNECTION,
                   "client_id": _CLIENT, "platform": "tiktok_ads", "started_at": "2026-03-02T03:00:00Z",
                   "finished_at": "2026-03-02T03:02:41Z", "rows": {"campaigns": 12, "daily_metrics": 840}}),
        EventType("sync.failed", 1, "A platform sync failed after its retries.",
                  {"sync_run_id": "9a8d7c6b-5e4f-4a3b-9c2d-1e0f9a8b7c6d", "connection_id": _CONNECTION,
                   "client_id": _CLIENT, "platform": "shopify", "error_code": "rate_limited",
                   "message": "Shopify kept answering 429."}),
        EventType("recommendation.created", 1, "The brain proposed an action.",
                  {"recommendation_id": "2c1b0a9f-8e7d-4c6b-a5f4-e3d2c1b0a9f8", "client_id": _CLIENT,
                   "module": "budget_reallocation", "title": "Move 15% of budget from Meta to TikTok",
                   "expected_impact": {"metric": "roas", "change": 0.12}}),
        EventType("action.applied", 1, "An action was applied to an ad platform.",
                  {"action_id": "7e6d5c4b-3a29-4817-9f6e-5d4c3b2a1908",
                   "recommendation_id": "2c1b0a9f-8e7d-4c6b-a5f4-e3d2c1b0a9f8", "client_id": _CLIENT,
                   "module": "budget_reallocation", "platform": "meta_ads",
                   "summary": "Daily budget 120.00 -> 102.00 EUR", "applied_by": "user"}),
        EventType("rule.fired", 1, "An automation rule acted (paused, resumed, changed a budget, recommended, "
                  "or notified) on one client's ads or campaigns.",
                  {"rule_id": "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "rule_name": "Stop-loss",
                   "evaluation_id": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", "client_id": _CLIENT,
                   "client_name": "Acme Outdoor", "dry_run": False, "notify": ["slack"], "effect": "pause",
                   "count": 1, "url": "https://app.omnify.dev/orgs/.../rules/...",
                   "entities": [{"name": "Summer Sale - Video 3", "level": "ad", "platform": "meta_ads",
                                 "outcome": "applied", "values": {"spend(last_3_days) > 50": 61.2}}]}),
        EventType("guardrail.hit", 1, "A guardrail stopped an automated change (daily budget cap, roles).",
                  {"client_id": _CLIENT, "rule_id": "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
                   "rule_name": "Surf-scale", "code": "guardrail-budget-change",
                   "detail": "A budget may change by at most 20% per day."}),
        EventType("webhook.test", 1, "Sent by the test button; carries no business data.",
                  {"endpoint_id": "4d3c2b1a-0f9e-4d8c-b7a6-958473625140",
                   "message": "This is a test event from Omnify."}),
    )
}

#: Event types an endpoint can subscribe to (the test event always reaches its endpoint).
SUBSCRIBABLE: frozenset[str] = frozenset(n for n in CATALOGUE if n != "webhook.test")


class UnknownEventType(ValueError):
    pass


def event_type(name: str) -> EventType:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownEventType(f"unknown webhook event type {name!r}") from None


def envelope(
    name: str, *, event_id: uuid.UUID, org_id: uuid.UUID, created_at: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """The message body; ``data`` is normalised to plain JSON (ids and times as strings)."""
    spec = event_type(name)
    return {
        "type": spec.name,
        "version": spec.version,
        "id": str(event_id),
        "created_at": created_at.isoformat().replace("+00:00", "Z"),
        "org_id": str(org_id),
        "data": json.loads(json.dumps(data, default=str)),
    }


def encode(body: dict[str, Any]) -> bytes:
    """Deterministic bytes (sorted keys), so every attempt sends the same body even though
    PostgreSQL's JSONB does not keep key order."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
