"""Who is acting and from where: carried from the request into services and the audit log."""

from __future__ import annotations

from dataclasses import dataclass

SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Actor:
    actor_type: str  # "user" | "api_key" | "system"
    actor_id: str | None
    label: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    @classmethod
    def system(cls, label: str = "omnify") -> Actor:
        return cls(actor_type=SYSTEM, actor_id=None, label=label)
