"""Shop privacy requests: Shopify's mandatory GDPR webhooks, what we did about them."""
