"""Google Ads API (REST) connector and its local sandbox."""

from omnify.integrations.google.client import GoogleAdsConnector
from omnify.integrations.google.oauth import GoogleConfig

__all__ = ["GoogleAdsConnector", "GoogleConfig"]
