"""Chart images for alerts, rendered server-side (matplotlib, Agg) and served by a signed link.

Slack and Teams show an image by fetching its URL themselves, later and without a
session, so the URL carries a signed, expiring token naming the organization and the
event; the image is drawn from that event's stored payload when it is fetched (nothing
to store, and a link for another organization's event cannot be forged).
"""

from __future__ import annotations

from omnify.core.charts import line_chart_png
from omnify.core.security import create_link_token
from omnify.settings import Settings

LINK_TYPE = "chart"
__all__ = ["LINK_TYPE", "chart_url", "line_chart_png"]


def chart_url(settings: Settings, org_id: str, event_id: str) -> str:
    token = create_link_token(settings, LINK_TYPE, {"org": org_id, "event": event_id},
                              settings.chart_link_ttl_seconds)
    return f"{settings.public_base_url}/api/v1/chat/charts/{event_id}.png?token={token}"
