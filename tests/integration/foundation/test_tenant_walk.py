"""Walks every tenant route of the app with a member of another organization.

Routes are discovered from the OpenAPI schema, so a route added by any later feature is
covered automatically: whatever it is, an outsider must get 404 (or 403 on the org),
never data.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from tests.factories import register

METHODS = ("get", "post", "put", "patch", "delete")


def tenant_operations(app: Any) -> list[tuple[str, str]]:
    ops = []
    for path, item in app.openapi()["paths"].items():
        if "{org_id}" not in path:
            continue
        for method in METHODS:
            if method in item:
                ops.append((method, path))
    return ops


async def test_every_tenant_route_hides_other_orgs(client: httpx.AsyncClient, app: Any) -> None:
    victim = await register(client, org="Victim Org")
    attacker = await register(client, org="Attacker Org")
    ops = tenant_operations(app)
    assert len(ops) >= 10, ops
    seen_ids = {victim.org_id, victim.user_id}
    for method, template in ops:
        path = template.replace("{org_id}", victim.org_id)
        path = re.sub(r"\{[^}]+\}", lambda m: str(uuid.uuid4()) if m.group(0).endswith("id}") else "meta_ads",
                      path)
        resp = await client.request(method.upper(), f"/api/v1{path}" if not path.startswith("/api") else path,
                                    headers=attacker.headers, json={})
        assert resp.status_code in (403, 404), (method, template, resp.status_code, resp.text)
        for secret in seen_ids:
            assert secret not in resp.text.replace(victim.org_id, "") or resp.status_code == 404, template
        assert "Victim Org" not in resp.text, template
