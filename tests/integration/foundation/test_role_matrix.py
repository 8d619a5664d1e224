"""Every role against every foundation permission, through real endpoints."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import httpx
import pytest

from omnify.auth.permissions import ROLE_PERMISSIONS, Permission
from omnify.orgs.models import Role
from tests.factories import Account, add_member, register

Call = Callable[[httpx.AsyncClient, Account, Account], Awaitable[httpx.Response]]

# permission -> a request that needs exactly it (caller acts in owner's org)
PROBES: dict[Permission, Call] = {
    Permission.ORG_READ: lambda c, o, a: c.get(f"/api/v1/orgs/{o.org_id}", headers=a.headers),
    Permission.ORG_UPDATE: lambda c, o, a: c.patch(f"/api/v1/orgs/{o.org_id}", headers=a.headers,
                                                    json={"name": "Matrix"}),
    Permission.MEMBERS_READ: lambda c, o, a: c.get(f"/api/v1/orgs/{o.org_id}/members", headers=a.headers),
    Permission.INVITATIONS_MANAGE: lambda c, o, a: c.get(f"/api/v1/orgs/{o.org_id}/invitations", headers=a.headers),
    Permission.API_KEYS_MANAGE: lambda c, o, a: c.get(f"/api/v1/orgs/{o.org_id}/api-keys", headers=a.headers),
    Permission.AUDIT_READ: lambda c, o, a: c.get(f"/api/v1/orgs/{o.org_id}/audit", headers=a.headers),
    Permission.QUOTA_READ: lambda c, o, a: c.get(f"/api/v1/orgs/{o.org_id}/quota", headers=a.headers),
    Permission.MEMBERS_MANAGE: lambda c, o, a: c.patch(f"/api/v1/orgs/{o.org_id}/members/{a.user_id}",
                                                        headers=a.headers, json={"role": "viewer"}),
}


def test_matrix_is_monotonic() -> None:
    order = [Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER]
    for lower, higher in itertools.pairwise(order):
        assert ROLE_PERMISSIONS[lower] < ROLE_PERMISSIONS[higher]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER])
async def test_role_matrix(client: httpx.AsyncClient, role: Role) -> None:
    owner = await register(client)
    actor = owner if role == Role.OWNER else await add_member(client, owner, role.value)
    # MEMBERS_MANAGE comes last: it changes the actor's own role
    for permission, probe in PROBES.items():
        resp = await probe(client, owner, actor)
        allowed = permission in ROLE_PERMISSIONS[role]
        if permission == Permission.MEMBERS_MANAGE and role == Role.OWNER:
            assert resp.status_code == 409, resp.text  # allowed, but the last owner cannot demote itself
        elif allowed:
            assert resp.status_code < 400, (role, permission, resp.status_code, resp.text)
        else:
            assert resp.status_code == 403, (role, permission, resp.status_code, resp.text)
            assert resp.json()["type"].endswith("insufficient-role")
