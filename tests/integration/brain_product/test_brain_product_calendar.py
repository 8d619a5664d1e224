"""A client's market calendar (issue 17): country holidays and retail events, edited per client,
read by the brain run."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import httpx
import pytest

from omnify.brain_runs import loader
from omnify.brain_runs import service as brain_service
from omnify.brain_runs.translate import ClientData, build_frames
from omnify.core.db import Database, bind_tenant
from tests.integration.brain_product.conftest import Team, new_client, org_url


async def test_calendar_defaults_edits_and_reads_back(api: httpx.AsyncClient, team: Team) -> None:
    cid = await new_client(api, team.owner)
    url = org_url(team.owner, "clients", cid, "calendar")
    empty = await api.get(url, headers=team.viewer.headers, params={"year": 2025})
    assert empty.status_code == 200, empty.text
    assert empty.json()["country"] is None and empty.json()["days"] == []

    body = {"country": "us", "added": [{"start": "2025-03-10", "end": "2025-03-12", "name": "Spring sale"}],
            "removed": ["2025-10-31"]}
    resp = await api.put(url, headers=team.admin.headers, json=body, params={"year": 2025})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["country"] == "US" and out["year"] == 2025
    days = {d["date"]: d for d in out["days"]}
    assert days["2025-11-28"]["name"] == "Black Friday to Cyber Monday"  # the Friday after the 4th Thursday
    assert days["2025-12-01"]["kind"] == "retail" and days["2025-07-04"]["kind"] == "holiday"
    assert days["2025-03-11"]["name"] == "Spring sale" and days["2025-03-11"]["kind"] == "custom"
    assert "2025-10-31" not in days  # Halloween removed by the client
    again = await api.get(url, headers=team.member.headers, params={"year": 2025})
    assert again.json() == out


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"country": "XX"}, "country"),
        ({"added": [{"start": "2025-03-12", "end": "2025-03-10", "name": "x"}]}, "added"),
        ({"added": [{"start": "2025-01-01", "end": "2025-03-10", "name": "too long"}]}, "added"),
        ({"removed": ["not a date"]}, "removed"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_invalid_calendar_is_a_422_naming_the_field(
    api: httpx.AsyncClient, team: Team, body: dict[str, Any], field: str
) -> None:
    cid = await new_client(api, team.owner)
    resp = await api.put(org_url(team.owner, "clients", cid, "calendar"), headers=team.owner.headers, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert field in resp.text


async def test_calendar_needs_a_login_a_writer_and_the_right_tenant(api: httpx.AsyncClient, team: Team) -> None:
    cid = await new_client(api, team.owner)
    url = org_url(team.owner, "clients", cid, "calendar")
    assert (await api.get(url)).status_code == 401
    assert (await api.put(url, json={"country": "US"})).status_code == 401
    assert (await api.put(url, headers=team.viewer.headers, json={"country": "US"})).status_code == 403
    # another tenant's client: 404 through the outsider's own organization, and 404 for a random client
    foreign = org_url(team.outsider, "clients", cid, "calendar")
    assert (await api.get(foreign, headers=team.outsider.headers)).status_code == 404
    assert (await api.put(foreign, headers=team.outsider.headers, json={"country": "US"})).status_code == 404
    random = org_url(team.owner, "clients", str(uuid.uuid4()), "calendar")
    assert (await api.get(random, headers=team.owner.headers)).status_code == 404


async def test_the_brain_run_reads_the_clients_calendar(
    api: httpx.AsyncClient, team: Team, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = await new_client(api, team.owner)
    resp = await api.put(org_url(team.owner, "clients", cid, "calendar"), headers=team.owner.headers,
                         json={"country": "DE", "added": [{"start": "2026-06-01", "end": "2026-06-02", "name": "Sale"}],
                               "removed": ["2026-12-25"]})
    assert resp.status_code == 200, resp.text
    seen: list[ClientData] = []

    async def load(session: Any, org_id: uuid.UUID, client_id: uuid.UUID, **kw: Any) -> ClientData:
        data = ClientData(client_id=str(client_id))
        seen.append(data)
        return data

    monkeypatch.setattr(loader, "load_client_data", load)
    async with database.sessionmaker() as session:
        await bind_tenant(session, uuid.UUID(team.owner.org_id))
        await brain_service.run_for_client(session, uuid.UUID(team.owner.org_id), uuid.UUID(cid),
                                           as_of=date(2026, 12, 31))
    data = seen[0]
    assert data.country == "DE" and data.calendar_removed == [date(2026, 12, 25)]
    assert [e.name for e in data.calendar_added] == ["Sale"]
    frames = build_frames(data, "EUR", as_of=None, max_daily_change=0.2)
    assert list(frames.calendar) == []  # no rows: no date range to lay the calendar on
