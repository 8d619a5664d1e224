"""E-mail metrics (name fixed in notes/METRICS.md)."""

from __future__ import annotations

from prometheus_client import Counter

EMAILS = Counter("omnify_emails_total", "Outbox e-mail send attempts by result.", ["result"])
SENT, RETRY, FAILED = "sent", "retry", "failed"
