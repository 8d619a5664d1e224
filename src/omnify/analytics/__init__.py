"""Client analytics: KPI rollups over the normalized daily metrics, cached.

The sync service calls :func:`invalidate_client` after it writes new rows for a client.
"""

from omnify.analytics.cache import invalidate_client

__all__ = ["invalidate_client"]
