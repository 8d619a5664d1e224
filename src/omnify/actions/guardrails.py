"""Per-organization guardrails on one-click actions, read from ``organizations.settings``.

Shape (every key optional; an admin sets them with ``PATCH /orgs/{org_id}``)::

    {"guardrails": {
        "apply_roles": ["owner", "admin", "member"],   # who may apply / undo
        "max_budget_change_per_day": 0.2,             # per campaign, vs. its budget at the day's start
        "approval_threshold_minor": 50000             # or {"USD": 50000, "EUR": 45000}; null = never
    }}

Why these three: the roles decide *who* may spend the client's money, the daily change
cap bounds *how fast* automation may move it (ad platforms re-enter learning after large
budget jumps, and a bad model should not be able to swing a budget 5x in one day), and
the approval threshold puts a second, more senior pair of eyes on changes that move more
money per day than the organization is comfortable with.

Invalid settings fail closed: an action is refused with a 409 naming the bad field,
rather than silently running without the protection the admin meant to configure.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from omnify.core.errors import Conflict
from omnify.orgs.models import Role

DEFAULT_APPLY_ROLES = (Role.OWNER, Role.ADMIN, Role.MEMBER)
DEFAULT_MAX_BUDGET_CHANGE = 0.2


class GuardrailsInvalid(Conflict):
    code, title = "guardrails-invalid", "Organization guardrails are invalid"


class Guardrails(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    apply_roles: tuple[Role, ...] = Field(default=DEFAULT_APPLY_ROLES, min_length=1)
    max_budget_change_per_day: float = Field(default=DEFAULT_MAX_BUDGET_CHANGE, gt=0, le=10)
    approval_threshold_minor: int | dict[str, int] | None = None

    @field_validator("approval_threshold_minor")
    @classmethod
    def _threshold(cls, value: int | dict[str, int] | None) -> int | dict[str, int] | None:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be >= 0")
        if isinstance(value, dict):
            for cur, amount in value.items():
                if len(cur) != 3 or not cur.isalpha():
                    raise ValueError(f"{cur!r} is not an ISO 4217 currency code")
                if amount < 0:
                    raise ValueError("amounts must be >= 0")
            return {k.upper(): v for k, v in value.items()}
        return value

    def may_apply(self, role: Role) -> bool:
        return role in self.apply_roles

    def threshold_for(self, currency: str | None) -> int | None:
        """The approval threshold in minor units of ``currency`` (None: no approval needed)."""
        value = self.approval_threshold_minor
        if value is None or isinstance(value, int):
            return value
        if currency is None:
            # Money of unknown currency cannot be compared with a per-currency limit: the
            # strictest configured limit applies.
            return min(value.values()) if value else None
        return value.get(currency.upper())

    def needs_approval(self, money_per_day_minor: int | None, currency: str | None) -> bool:
        threshold = self.threshold_for(currency)
        if threshold is None:
            return False
        return (money_per_day_minor or 0) > threshold


def from_org_settings(settings: dict[str, Any] | None) -> Guardrails:
    raw = (settings or {}).get("guardrails") or {}
    if not isinstance(raw, dict):
        raise GuardrailsInvalid("settings.guardrails must be an object; an admin must fix it before actions run.")
    try:
        return Guardrails.model_validate(raw)
    except ValidationError as exc:
        errors = [{"field": "settings.guardrails." + ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
                  for e in exc.errors()]
        raise GuardrailsInvalid(
            "The organization's guardrail settings are invalid; an admin must fix them before actions run.",
            errors=errors,
        ) from None
