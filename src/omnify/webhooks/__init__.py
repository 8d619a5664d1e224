"""Outbound webhooks (signed, retried, SSRF-guarded) and the inbound receiver framework."""
