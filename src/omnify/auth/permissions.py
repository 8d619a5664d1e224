"""The one place where roles map to permissions.

Every tenant route declares the permission it needs (``require(Permission.X)``); nothing
else in the code base compares roles. API keys do not have a role: their scopes map to
the permission set of a role (``read`` -> viewer, ``write`` -> member), so a key can never
manage members, keys or organization settings.
"""

from __future__ import annotations

import enum

from omnify.orgs.models import Role


class Permission(enum.StrEnum):
    ORG_READ = "org:read"
    ORG_UPDATE = "org:update"
    MEMBERS_READ = "members:read"
    MEMBERS_MANAGE = "members:manage"
    OWNERS_MANAGE = "owners:manage"
    INVITATIONS_MANAGE = "invitations:manage"
    API_KEYS_MANAGE = "api_keys:manage"
    AUDIT_READ = "audit:read"
    QUOTA_READ = "quota:read"
    CLIENTS_READ = "clients:read"
    CLIENTS_WRITE = "clients:write"
    CREDENTIALS_WRITE = "credentials:write"
    CONNECTIONS_MANAGE = "connections:manage"
    WEBHOOKS_MANAGE = "webhooks:manage"
    RECOMMENDATIONS_READ = "recommendations:read"
    ACTIONS_APPLY = "actions:apply"
    ACTIONS_APPROVE = "actions:approve"
    RULES_MANAGE = "rules:manage"


_VIEWER = {
    Permission.ORG_READ,
    Permission.MEMBERS_READ,
    Permission.QUOTA_READ,
    Permission.CLIENTS_READ,
    Permission.RECOMMENDATIONS_READ,
}
_MEMBER = _VIEWER | {
    Permission.CLIENTS_WRITE,
    Permission.CREDENTIALS_WRITE,
    Permission.CONNECTIONS_MANAGE,
    Permission.ACTIONS_APPLY,
    Permission.RULES_MANAGE,
}
_ADMIN = _MEMBER | {
    Permission.ORG_UPDATE,
    Permission.MEMBERS_MANAGE,
    Permission.INVITATIONS_MANAGE,
    Permission.API_KEYS_MANAGE,
    Permission.AUDIT_READ,
    Permission.WEBHOOKS_MANAGE,
    Permission.ACTIONS_APPROVE,
}
_OWNER = _ADMIN | {Permission.OWNERS_MANAGE}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset(_VIEWER),
    Role.MEMBER: frozenset(_MEMBER),
    Role.ADMIN: frozenset(_ADMIN),
    Role.OWNER: frozenset(_OWNER),
}

API_KEY_SCOPES: dict[str, Role] = {"read": Role.VIEWER, "write": Role.MEMBER}

ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


def role_allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def scopes_allow(scopes: list[str], permission: Permission) -> bool:
    return any(permission in ROLE_PERMISSIONS[API_KEY_SCOPES[s]] for s in scopes if s in API_KEY_SCOPES)
