"""Read the served demo from the test process, through its API and the sandboxes' own
inspection endpoint: the brain's recommendations once `omnify up`'s start-up runs are over,
and an entity as the platform sandbox holds it.

Nothing is planted in the database: the recommendation a test applies is one the brain made
from the demo's 60 synced days (the sandboxes carry a recent creative wear-out in every ad
account), and everything after it (the page, the action, the platform write, the audit
entry, the undo) is the product's own path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from .conftest import Served


@dataclass(frozen=True, slots=True)
class BrainPause:
    org_id: str
    client_id: str
    recommendation_id: str
    ad_external_id: str
    ad_name: str
    title: str
    impact_minor: int | None
    currency: str | None


def demo_client(served: Served) -> tuple[str, str, str]:
    """(organization id, client id, client name) of a demo client, read through the demo user's API."""
    api = f"{served.origin}/api/v1"
    login = httpx.post(f"{api}/auth/login", json={"email": served.demo_email, "password": served.demo_password},
                       timeout=30)
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    [org] = httpx.get(f"{api}/orgs", headers=headers, timeout=30).json()["items"]
    first = httpx.get(f"{api}/orgs/{org['id']}/clients", headers=headers, timeout=30).json()["items"][0]
    return str(org["id"]), str(first["id"]), str(first["company_name"])


def sandbox_object(base_url: str, object_id: str) -> dict[str, str]:
    """An entity as the sandbox holds it now (``GET /__sandbox/objects/{id}``)."""
    resp = httpx.get(f"{base_url}/__sandbox/objects/{object_id}", timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, str] = resp.json()
    return body


def wait_for_startup_brain_runs(served: Served, timeout_s: float = 180.0) -> tuple[str, dict[str, str]]:
    """Wait until the brain runs `omnify up` set off are over, read from the API; returns the
    demo organization's id and the demo user's API headers.

    A brain run refreshes or expires the open recommendations, so a test reads them once
    the runs are over. `up` queues one run per synced connection (trigger ``sync``) before the worker
    starts, then the beat's start-up sweep queues one per client (``schedule``) behind them;
    the worker takes them in order, so once every demo client has a finished ``schedule``
    run, nothing else runs until the next sync sweep (every 15 minutes)."""
    api = f"{served.origin}/api/v1"
    login = httpx.post(f"{api}/auth/login", json={"email": served.demo_email, "password": served.demo_password},
                       timeout=30)
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    [org] = httpx.get(f"{api}/orgs", headers=headers, timeout=30).json()["items"]
    clients = [c["id"] for c in httpx.get(f"{api}/orgs/{org['id']}/clients", headers=headers,
                                          timeout=30).json()["items"]]
    assert clients
    deadline = time.monotonic() + timeout_s
    waiting = set(clients)
    while waiting:
        for client_id in sorted(waiting):
            runs = httpx.get(f"{api}/orgs/{org['id']}/clients/{client_id}/brain-runs", headers=headers,
                             params={"limit": 100}, timeout=30).json()["items"]
            if any(r["trigger"] == "schedule" and r["status"] != "running" for r in runs):
                waiting.discard(client_id)
        if waiting:
            assert time.monotonic() < deadline, f"no finished start-up brain run for {waiting} after {timeout_s} s"
            time.sleep(0.5)  # polling the API for a state, not a timing assertion
    return str(org["id"]), headers


def brain_pause_ad(served: Served, platform: str = "meta_ads") -> BrainPause:
    """The brain's strongest open ``pause_ad`` recommendation on ``platform`` for the demo,
    read from the API once the start-up runs are over (the sandboxes plant a recent creative
    wear-out in every ad account, so 60 synced days hold one: see sandbox_data)."""
    org_id, headers = wait_for_startup_brain_runs(served)
    rec = open_pause_ad(served, org_id, headers, platform)
    assert rec is not None, f"no open pause_ad recommendation on {platform} after the demo's brain runs"
    return rec


def open_pause_ad(served: Served, org_id: str, headers: dict[str, str], platform: str = "meta_ads",
                  client_id: str | None = None) -> BrainPause | None:
    """The strongest open, applicable ``pause_ad`` fatigue recommendation of an organization
    (of one client if given) on ``platform``, or None."""
    params: dict[str, str | int] = {"module": "fatigue", "status": "open", "limit": 100}
    if client_id is not None:
        params["client_id"] = client_id
    items = httpx.get(f"{served.origin}/api/v1/orgs/{org_id}/recommendations", headers=headers, timeout=30,
                      params=params).json()["items"]
    pausable = [r for r in items if r["actionable"] and r["action"]["type"] == "pause_ad"
                and r["platform"] == platform]
    if not pausable:
        return None
    rec = max(pausable, key=lambda r: (r["confidence"], r["id"]))
    impact = rec["expected_impact"] or {}
    return BrainPause(org_id, rec["client_id"], rec["id"], rec["action"]["entity_id"], rec["action"]["name"],
                      rec["title"], impact.get("amount_minor"), impact.get("currency"))


def api_headers(served: Served, email: str, password: str) -> dict[str, str]:
    """A user's bearer header, signed in through the API."""
    login = httpx.post(f"{served.origin}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30)
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def wait_for_pause_ad(served: Served, org_id: str, client_id: str, headers: dict[str, str],
                      timeout_s: float = 180.0) -> BrainPause:
    """The client's ``pause_ad`` recommendation once the brain runs its syncs set off are over
    (a run in progress may still refresh the open recommendations)."""
    api = f"{served.origin}/api/v1/orgs/{org_id}"
    deadline = time.monotonic() + timeout_s
    while True:
        runs = httpx.get(f"{api}/clients/{client_id}/brain-runs", headers=headers, params={"limit": 100},
                         timeout=30).json()["items"]
        settled = bool(runs) and all(r["status"] != "running" for r in runs)
        rec = open_pause_ad(served, org_id, headers, client_id=client_id) if settled else None
        if rec is not None:
            return rec
        assert time.monotonic() < deadline, f"no pause_ad recommendation for client {client_id} after {timeout_s} s: {runs}"
        time.sleep(0.5)  # polling the API for a state, not a timing assertion
