"""Outbox consumer of the chat domain: routed events become chat deliveries (see service.on_event)."""

from __future__ import annotations

from omnify.chat.service import on_event

__all__ = ["on_event"]
