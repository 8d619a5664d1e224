"""TikTok API for Business (Marketing API v1.3): connector, OAuth, mapping and sandbox."""

from omnify.integrations.tiktok.client import TikTokConnector, TikTokSettings

__all__ = ["TikTokConnector", "TikTokSettings"]
