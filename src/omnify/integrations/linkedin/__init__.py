"""LinkedIn Ads (LinkedIn Marketing API, versioned ``/rest``): connector, OAuth, mapping, sandbox."""

from omnify.integrations.linkedin.client import LinkedInAdsConnector, LinkedInConfig

__all__ = ["LinkedInAdsConnector", "LinkedInConfig"]
