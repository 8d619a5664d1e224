"""Meta (Facebook/Instagram) Marketing API connector and its local sandbox."""

from omnify.integrations.meta.client import MetaAdsConnector
from omnify.integrations.meta.oauth import MetaConfig

__all__ = ["MetaAdsConnector", "MetaConfig"]
