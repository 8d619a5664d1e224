"""Shopify Admin API: OAuth install, GraphQL connector, webhooks, mapping and sandbox."""

from omnify.integrations.shopify.client import ShopifyConnector, ShopifySettings

__all__ = ["ShopifyConnector", "ShopifySettings"]
