"""Encrypted ad-platform credentials of clients, and master-key rotation."""
