"""ConnectorHttp against a real loopback server (retries, waits, breaker, redaction)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from omnify.integrations.base import (
    AuthExpired,
    CircuitOpen,
    ConnectorError,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    TransientError,
)
from omnify.integrations.http import (
    CircuitBreakers,
    ConnectorHttp,
    Redactor,
    RetryPolicy,
    default_error_for,
    parse_retry_after,
    redact_url,
)
from omnify.integrations.sandbox_common import (
    Fault,
    FaultInjector,
    FaultMiddleware,
    RequestJournal,
    SandboxServer,
    control_routes,
    free_port,
)

SECRET = "EAAB-very-secret-token-123456"


class Env:
    def __init__(self) -> None:
        self.injector = FaultInjector()
        self.journal = RequestJournal()
        self.status_next: list[int] = []

        async def echo(request: Request) -> Response:
            if self.status_next:
                code = self.status_next.pop(0)
                return JSONResponse({"error": f"boom with token {SECRET}"}, status_code=code)
            return JSONResponse({"ok": True, "path": request.url.path})

        async def envelope_error(request: Request) -> Response:
            return JSONResponse({"code": 40100, "message": "too many"})

        async def usage(request: Request) -> Response:
            return JSONResponse({"ok": True}, headers={"X-Usage": "99"})

        async def text(request: Request) -> Response:
            return Response("not json", media_type="text/plain")

        def render(fault: Fault, request: Request) -> Response:
            headers = {"Retry-After": str(fault.retry_after)} if fault.kind == "rate_limit" else {}
            return JSONResponse({"fault": fault.kind}, status_code=fault.status, headers=headers)

        app = Starlette(
            routes=[
                Route("/echo", echo, methods=["GET", "POST"]),
                Route("/envelope", envelope_error),
                Route("/usage", usage),
                Route("/text", text),
                *control_routes(self.injector, self.journal),
            ],
            middleware=[
                Middleware(FaultMiddleware, injector=self.injector, render=render, journal=self.journal)
            ],
        )
        self.server = SandboxServer(app, name="http-test")


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = Env()
    e.server.start()
    yield e
    e.server.stop()


@pytest.fixture(autouse=True)
def _reset(env: Env) -> None:
    env.injector.reset()
    env.journal.clear()
    env.status_next.clear()


def fast_policy(**kw: object) -> RetryPolicy:
    base: dict[str, object] = {"max_attempts": 4, "base_delay": 0.01, "max_delay": 0.05, "jitter": 0.01}
    base.update(kw)
    return RetryPolicy(**base)  # type: ignore[arg-type]


def client(env: Env, **kw: object) -> ConnectorHttp:
    kw.setdefault("retry", fast_policy())
    kw.setdefault("breakers", CircuitBreakers(threshold=3, cooldown=0.4))
    return ConnectorHttp(platform="test", base_url=env.server.url, **kw)  # type: ignore[arg-type]


async def test_429_waits_at_least_retry_after_measured_on_server(env: Env) -> None:
    env.injector.configure(rate_limit_next=1, retry_after=0.6)
    async with client(env) as http:
        body = await http.get_json("/echo")
    assert body["ok"] is True
    entries = env.journal.entries("/echo")
    assert [e.status for e in entries] == [429, 200]
    assert entries[1].at - entries[0].at >= 0.6


async def test_5xx_burst_is_retried_then_succeeds(env: Env) -> None:
    env.injector.configure(errors_5xx_next=3)
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)
        await asyncio.sleep(s)

    async with client(env, retry=fast_policy(sleep=sleep), breakers=CircuitBreakers(threshold=10)) as http:
        assert (await http.get_json("/echo"))["ok"]
    assert [e.status for e in env.journal.entries("/echo")] == [503, 503, 503, 200]
    assert len(waits) == 3 and all(0 < w <= 0.06 for w in waits)


async def test_retries_exhausted_raise_the_last_error(env: Env) -> None:
    env.injector.configure(errors_5xx_next=10)
    async with client(env, breakers=CircuitBreakers(threshold=50)) as http:
        with pytest.raises(TransientError) as info:
            await http.get_json("/echo")
    assert info.value.status == 503
    assert len(env.journal.entries("/echo")) == 4


async def test_retry_after_beyond_cap_is_not_waited_for(env: Env) -> None:
    env.injector.configure(rate_limit_next=1, retry_after=30)
    async with client(env, retry=fast_policy(max_retry_after=5)) as http:
        started = time.monotonic()
        with pytest.raises(RateLimited) as info:
            await http.get_json("/echo")
    assert time.monotonic() - started < 1
    assert info.value.retry_after == 30
    assert len(env.journal.entries("/echo")) == 1


@pytest.mark.parametrize(
    ("status", "exc"),
    [(401, AuthExpired), (403, PermissionDenied), (400, InvalidRequest), (404, InvalidRequest)],
)
async def test_non_retryable_errors_are_raised_once(env: Env, status: int, exc: type[ConnectorError]) -> None:
    env.status_next.extend([status, status])
    async with client(env) as http:
        with pytest.raises(exc):
            await http.get_json("/echo")
    assert len(env.journal.entries("/echo")) == 1


async def test_circuit_opens_then_half_opens_and_closes(env: Env) -> None:
    breakers = CircuitBreakers(threshold=3, cooldown=0.4)
    events: list[tuple[str, str]] = []
    breakers.subscribe(lambda name, ev: events.append((name, ev)))
    env.injector.configure(errors_5xx_next=100)
    async with client(env, retry=fast_policy(max_attempts=2), breakers=breakers) as http:
        with pytest.raises(TransientError):
            await http.get_json("/echo", circuit="acct-1")
        with pytest.raises(CircuitOpen):  # 3rd failure opens it; the retry is short-circuited
            await http.get_json("/echo", circuit="acct-1")
        seen = len(env.journal.entries("/echo"))
        with pytest.raises(CircuitOpen):
            await http.get_json("/echo", circuit="acct-1")
        assert len(env.journal.entries("/echo")) == seen  # nothing reached the server
        assert await breakers.state("test:acct-1") == "opened"
        # another account of the same platform is unaffected
        env.injector.configure(errors_5xx_next=0)
        assert (await http.get_json("/echo", circuit="acct-2"))["ok"]
        await asyncio.sleep(0.45)
        assert (await http.get_json("/echo", circuit="acct-1"))["ok"]
        assert await breakers.state("test:acct-1") == "closed"
    assert ("test:acct-1", "opened") in events and ("test:acct-1", "closed") in events


async def test_auth_errors_do_not_open_the_circuit(env: Env) -> None:
    breakers = CircuitBreakers(threshold=2, cooldown=10)
    env.status_next.extend([401] * 5)
    async with client(env, breakers=breakers) as http:
        for _ in range(4):
            with pytest.raises(AuthExpired):
                await http.get_json("/echo", circuit="a")
    assert await breakers.state("test:a") == "closed"


async def test_platform_mapper_sees_2xx_envelopes(env: Env) -> None:
    def mapper(resp: httpx.Response) -> ConnectorError | None:
        body = resp.json()
        if body.get("code") == 40100:
            return RateLimited("envelope says slow down", retry_after=0.2, platform_code="40100")
        return None

    async with client(env, error_mapper=mapper, retry=fast_policy(max_attempts=2)) as http:
        with pytest.raises(RateLimited) as info:
            await http.get_json("/envelope")
    assert info.value.platform_code == "40100"
    entries = env.journal.entries("/envelope")
    assert len(entries) == 2 and entries[1].at - entries[0].at >= 0.2


async def test_throttle_hint_delays_next_request(env: Env) -> None:
    def hint(resp: httpx.Response) -> float:
        return 0.3 if resp.headers.get("x-usage") == "99" else 0.0

    async with client(env, throttle_hint=hint) as http:
        await http.get_json("/usage")
        await http.get_json("/echo")
    first, second = env.journal.entries()
    assert second.at - first.at >= 0.3


async def test_timeout_and_connection_errors_are_transient(env: Env) -> None:
    env.injector.configure(latency_ms=300, match="/echo")
    async with client(env, timeout=0.1, retry=fast_policy(max_attempts=2)) as http:
        with pytest.raises(TransientError, match="timed out"):
            await http.get_json("/echo")
    await asyncio.sleep(0.4)  # let the server finish the abandoned slow requests
    port = free_port()
    async with ConnectorHttp(
        platform="test",
        base_url=f"http://127.0.0.1:{port}",
        retry=fast_policy(max_attempts=2),
        breakers=CircuitBreakers(),
    ) as http:
        with pytest.raises(TransientError, match="connection failed"):
            await http.get_json("/x", params={"access_token": SECRET})


async def test_non_json_body_is_invalid_request(env: Env) -> None:
    async with client(env) as http:
        with pytest.raises(InvalidRequest, match="not JSON"):
            await http.get_json("/text")


async def test_secrets_never_reach_errors_or_logs(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []

    def mapper(resp: httpx.Response) -> ConnectorError | None:
        if resp.status_code >= 400:
            return InvalidRequest(f"platform said: {resp.text} for {resp.request.url}")
        return None

    env.status_next.append(400)
    async with client(env, error_mapper=mapper) as http:
        http.add_secret(SECRET)
        with pytest.raises(InvalidRequest) as info:
            await http.get_json("/echo", params={"access_token": SECRET, "fields": "id"})
        messages.append(str(info.value))
    assert SECRET not in messages[0]
    assert "[REDACTED]" in messages[0]
    assert SECRET not in caplog.text


def test_redactor_patterns() -> None:
    r = Redactor(["abcdefghijkl"])
    text = r.redact(
        'url /x?client_secret=s3cr3t&fields=id&access_token=tok123 {"refresh_token": "rt-999"} '
        "Authorization: Bearer eyJhbGciOi.x.y and abcdefghijkl"
    )
    for leaked in ("s3cr3t", "tok123", "rt-999", "eyJhbGciOi", "abcdefghijkl"):
        assert leaked not in text
    assert "fields=id" in text
    assert Redactor(["abc"]).redact("abc") == "abc"  # too short to be a credential
    assert redact_url("https://graph.example/v21.0/me?access_token=x#f") == "https://graph.example/v21.0/me"


def test_parse_retry_after_and_default_mapping() -> None:
    assert parse_retry_after("2.5", 1) == 2.5
    assert parse_retry_after(None, 7) == 7
    assert parse_retry_after("garbage", 3) == 3
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 4) == 0.0  # a past date: no wait
    req = httpx.Request("GET", "https://x.test/a?access_token=zzz")
    assert default_error_for(httpx.Response(200, request=req)) is None
    err = default_error_for(httpx.Response(429, headers={"Retry-After": "9"}, request=req))
    assert isinstance(err, RateLimited) and err.retry_after == 9
    assert isinstance(default_error_for(httpx.Response(502, request=req)), TransientError)
    assert "zzz" not in str(default_error_for(httpx.Response(418, request=req)))
