"""schemathesis over the whole OpenAPI, as each role of a seeded organization and as its API key.

The app (the suite's, on the suite's database) is served by uvicorn on a loopback port, in this
test's event loop; the ``st`` command line (schemathesis's documented interface, the one the
issue-20 probe used) generates requests from ``/api/v1/openapi.json`` - valid and invalid
data, boundary values, NUL bytes, huge integers, odd unicode - and checks every answer:

* ``not_a_server_error``: no 5xx;
* ``status_code_conformance``: every status is documented for its operation;
* ``content_type_conformance``: the answer's media type is documented (problem+json included);
* ``response_schema_conformance`` and ``response_headers_conformance``: bodies and headers
  match the documented schemas;
* ``negative_data_rejection``: data the schema forbids is refused with a 4xx.

Path parameters name the seeded organization's real objects (a client, a file, an idea, a rule,
a webhook endpoint and its delivery, chat channels, API keys, members...), so the generated
requests reach the services behind the look-ups instead of stopping at a 404. Operations that
delete run in a pass of their own, after the others, so they do not take the objects away
from the rest. The organization's ``member`` and ``viewer`` run the same generated requests (fewer
examples per operation): their writes and management calls are refused with a 403, which every
such operation documents, so a role refused anywhere the schema does not say is a failure. The
run is bounded (a few examples per operation, deterministic generation, a
fixed seed) for CI; the figures go to ``.artifacts/reliability/fuzz-<database>.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseUrls
from tests.factories import Account, add_member, register
from tests.reliability import figures_dir, write_figures
from tests.servers import LOOPBACK, free_port

pytestmark = pytest.mark.slow

API = "/api/v1"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance", "negative_data_rejection")
#: Examples per operation and phase: bounded so both passes fit the CI budget.
MAX_EXAMPLES = int(os.environ.get("OMNIFY_FUZZ_MAX_EXAMPLES", "4"))
#: Examples per operation for the member and the viewer: most of their writes stop at the role
#: check, so fewer examples see the same paths and keep the whole test near a minute.
ROLE_MAX_EXAMPLES = int(os.environ.get("OMNIFY_FUZZ_ROLE_MAX_EXAMPLES", "2"))
SEED = 20261204
#: The role each run acts as (the owner's two passes are one role).
ROLE_OF_RUN = {"member": "member", "viewer": "viewer", "user": "owner", "user-deletes": "owner", "api-key": "api-key"}
RUN_TIMEOUT_SECONDS = 600


@dataclass
class Seeded:
    owner: Account
    member: Account
    viewer: Account
    api_key: str
    parameters: dict[str, str]


async def _created(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code in (200, 201, 202), (resp.request.url, resp.status_code, resp.text)
    body: Any = resp.json()
    return body if isinstance(body, dict) else {"items": body}


async def seed(client: httpx.AsyncClient) -> Seeded:
    """A fresh organization with one object of each kind the fuzzer's paths name."""
    owner = await register(client)
    member = await add_member(client, owner, "member")
    viewer = await add_member(client, owner, "viewer")
    h = owner.headers
    org = f"{API}/orgs/{owner.org_id}"
    made = await _created(await client.post(f"{org}/clients", headers=h, json={"company_name": "Fuzzed Co"}))
    base = f"{org}/clients/{made['id']}"
    params = {"org_id": owner.org_id, "client_id": made["id"], "user_id": member.user_id}
    params["file_id"] = (await _created(await client.post(
        f"{base}/files", headers=h, data={"category": "other"},
        files={"file": ("notes.txt", b"brand notes\n", "text/plain")})))["id"]
    params["idea_id"] = (await _created(await client.post(
        f"{base}/campaign-ideas", headers=h, json={"title": "Spring promo"})))["id"]
    params["schedule_id"] = (await _created(await client.post(
        f"{base}/report-schedules", headers=h, json={"cadence": "weekly", "recipients": ["boss@example.com"]})))["id"]
    rule = await _created(await client.post(f"{org}/rules", headers=h, json={
        "name": "Big spenders", "definition": {
            "scope": {"client_ids": [made["id"]]},
            "conditions": {"all": [{"metric": "impressions", "window": "last_7_days", "op": ">", "value": 0}]},
            "actions": [{"type": "notify", "channels": ["email"]}], "max_actions_per_run": 3}}))
    params["rule_id"] = rule["id"]
    endpoint = await _created(await client.post(f"{org}/webhook-endpoints", headers=h,
                                                json={"url": "https://hooks.example.com/fuzz"}))
    params["endpoint_id"] = endpoint["id"]
    await _created(await client.post(f"{org}/webhook-endpoints/{endpoint['id']}/test", headers=h))
    deliveries = (await _created(await client.get(f"{org}/webhook-endpoints/{endpoint['id']}/deliveries",
                                                  headers=h)))["items"]
    channel = await _created(await client.post(f"{org}/chat/connections", headers=h, json={
        "kind": "slack_webhook", "name": "#fuzz", "url": "https://hooks.slack.com/services/T0/B0/fuzz"}))
    params["channel_id"] = channel["id"]
    params["connection_id"] = (await _created(await client.get(f"{org}/chat/connections", headers=h)))[
        "items"][0]["id"]
    params["route_id"] = (await _created(await client.post(f"{org}/chat/routes", headers=h, json={
        "channel_id": channel["id"], "event_kind": "rule_fired", "client_id": made["id"]})))["id"]
    chat_delivery = await _created(await client.post(f"{org}/chat/channels/{channel['id']}/test", headers=h))
    # One {delivery_id} for both kinds of delivery: the webhook's (the chat one is then a 404).
    params["delivery_id"] = deliveries[0]["id"] if deliveries else chat_delivery["id"]
    key = await _created(await client.post(f"{org}/api-keys", headers=h,
                                           json={"name": "fuzzer", "scopes": ["read", "write"]}))
    # {key_id} names another key: revoking it must not end the API-key pass.
    params["key_id"] = (await _created(await client.post(f"{org}/api-keys", headers=h,
                                                         json={"name": "spare", "scopes": ["read"]})))["id"]
    params["invitation_id"] = (await _created(await client.post(
        f"{org}/invitations", headers=h, json={"email": "invitee-fuzz@example.com", "role": "viewer"})))["id"]
    return Seeded(owner=owner, member=member, viewer=viewer, api_key=key["key"], parameters=params)


def _config(path: Path, parameters: dict[str, str]) -> Path:
    lines = ["[parameters]"] + [f'"path.{name}" = {json.dumps(value)}' for name, value in sorted(parameters.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Run:
    label: str
    returncode: int
    seconds: float
    output: str
    report: dict[str, Any]
    interactions: list[dict[str, Any]]


async def schemathesis(label: str, origin: str, token: str, config: Path, out: Path, *filters: str,
                       max_examples: int = MAX_EXAMPLES) -> Run:
    """One ``st run`` over the served schema: its summary and every request (its HAR file)."""
    st = Path(sys.executable).with_name("st")
    har = out / f"{label}.har"
    cmd = [str(st), "--config-file", str(config), "run", f"{origin}{API}/openapi.json",
           "--checks", ",".join(CHECKS), "--max-examples", str(max_examples), "--seed", str(SEED),
           "--generation-deterministic", "--phases", "examples,fuzzing",
           "--workers", "2", "--request-timeout", "30", "--continue-on-failure", "--no-color",
           "-H", f"Authorization: Bearer {token}", "--report", "har", "--report-har-path", str(har), "--suppress-health-check", "all",
           *filters]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
                                                cwd=out)  # its .schemathesis cache stays with the reports
    stdout, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_SECONDS)
    text = stdout.decode(errors="replace")
    (out / f"{label}.txt").write_text(text, encoding="utf-8")
    assert har.exists(), text[-4000:]
    entries = json.loads(har.read_text(encoding="utf-8"))["log"]["entries"]
    return Run(label, proc.returncode or 0, round(time.monotonic() - started, 1), text, summary(text), entries)


def summary(text: str) -> dict[str, Any]:
    """Operations tested, cases generated and failures, from ``st run``'s closing summary."""
    tested = re.search(r"Tested:\s+(\d+)", text)
    cases = re.search(r"(\d+) generated", text)
    failures = re.search(r"(\d+) unique failures?", text)
    codes = dict(re.findall(r"(ST\d+ [^:\n]+): (\d+)", text))
    return {"operations": int(tested.group(1)) if tested else 0, "cases": int(cases.group(1)) if cases else 0,
            "failures": int(failures.group(1)) if failures else 0,
            "failures_by_kind": {k.strip(): int(v) for k, v in codes.items()}}


async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
        client: httpx.AsyncClient, app: Any, db_urls: DatabaseUrls, tmp_path: Path) -> None:
    import uvicorn

    seeded = await seed(client)
    out = figures_dir() / f"fuzz-{db_urls.dialect}"  # schemathesis's own reports, kept beside the figures
    out.mkdir(parents=True, exist_ok=True)
    config = _config(tmp_path / "schemathesis.toml", seeded.parameters)
    port = free_port()
    origin = f"http://{LOOPBACK}:{port}"
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning", lifespan="off",
                                           access_log=False))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.05)
        started = time.monotonic()
        # Logout without a body ends every session of the user: it would end the run's own.
        no_deletes = ("--exclude-method", "DELETE", "--exclude-path", f"{API}/auth/logout")
        runs = [
            # The member and the viewer first: the owner's pass may change their roles.
            await schemathesis("member", origin, seeded.member.access_token, config, out, *no_deletes,
                               max_examples=ROLE_MAX_EXAMPLES),
            await schemathesis("viewer", origin, seeded.viewer.access_token, config, out, *no_deletes,
                               max_examples=ROLE_MAX_EXAMPLES),
            await schemathesis("user", origin, seeded.owner.access_token, config, out, *no_deletes),
            await schemathesis("api-key", origin, seeded.api_key, config, out, "--include-method", "GET"),
            await schemathesis("user-deletes", origin, seeded.owner.access_token, config, out,
                               "--include-method", "DELETE"),
        ]
        seconds = round(time.monotonic() - started, 1)
    finally:
        server.should_exit = True
        await serving

    statuses: Counter[str] = Counter()
    for run in runs:
        statuses.update(str(e["response"]["status"]) for e in run.interactions)
    by_role: dict[str, Counter[str]] = {}
    for run in runs:
        role = ROLE_OF_RUN[run.label]
        by_role.setdefault(role, Counter()).update(str(e["response"]["status"]) for e in run.interactions)
    figures = {"database": db_urls.dialect, "seconds": seconds, "max_examples": MAX_EXAMPLES, "seed": SEED,
               "role_max_examples": ROLE_MAX_EXAMPLES,
               "roles": {role: {"requests": sum(c.values()), "statuses": dict(sorted(c.items())),
                                "server_errors": sum(n for s, n in c.items() if s.startswith("5"))}
                         for role, c in by_role.items()},
               "checks": list(CHECKS), "requests": sum(len(r.interactions) for r in runs),
               "server_errors": sum(n for s, n in statuses.items() if s.startswith("5")),
               "statuses": dict(sorted(statuses.items())),
               "nonconformances": sum(r.report["failures"] for r in runs),
               "summary": {r.label: {**r.report, "seconds": r.seconds} for r in runs}}
    write_figures(f"fuzz-{db_urls.dialect}", figures)
    for run in runs:
        assert run.returncode == 0, f"schemathesis ({run.label}) failed:\n{run.output[-12000:]}"
    assert figures["server_errors"] == 0
    assert figures["nonconformances"] == 0
    assert set(figures["roles"]) == {"owner", "member", "viewer", "api-key"}
    for role in ("member", "viewer"):  # their writes were refused, and documented (conformance above)
        assert figures["roles"][role]["statuses"].get("403", 0) > 0, figures["roles"][role]
