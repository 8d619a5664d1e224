"""Failed-login throttling (issue 20): no account enumeration, no lock-out by strangers.

Each client below has its own socket address (``ASGITransport(client=...)``), as users and
attackers on different networks would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from omnify.auth.throttle import FIRST_DELAY_SECONDS, delay_seconds
from omnify.core.db import Database
from omnify.core.security import create_reset_token
from tests.conftest import make_settings
from tests.factories import STRONG_PASSWORD, register, unique_email

LOGIN = "/api/v1/auth/login"
WRONG = "wrong-wrong-wrong-1"

Connect = Callable[[str], AbstractAsyncContextManager[httpx.AsyncClient]]


def _connector(app: Any) -> Connect:
    @asynccontextmanager
    async def connect(ip: str) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c

    return connect


@pytest.fixture
def connect(app: Any) -> Connect:
    return _connector(app)


def _shape(resp: httpx.Response) -> tuple[int, str, int | None]:
    """What an outsider can observe: status, problem type, rounded wait."""
    retry = resp.headers.get("Retry-After")
    return resp.status_code, resp.json()["type"], (round(int(retry) / 10) if retry else None)


async def test_unknown_and_real_accounts_answer_alike(client: httpx.AsyncClient, connect: Connect, settings) -> None:  # type: ignore[no-untyped-def]
    real = await register(client)
    attempts = settings.login_max_failures + 2
    async with connect("198.51.100.11") as c:
        for_real = [_shape(await c.post(LOGIN, json={"email": real.email, "password": WRONG})) for _ in range(attempts)]
        ghost = unique_email("ghost")
        for_ghost = [_shape(await c.post(LOGIN, json={"email": ghost, "password": WRONG})) for _ in range(attempts)]
    assert for_real == for_ghost
    statuses = [s for s, _, _ in for_real]
    assert statuses == [401] * settings.login_max_failures + [429, 429]
    assert for_real[-1][1].endswith("/too-many-attempts")


async def test_a_stranger_cannot_lock_the_owner_out(client: httpx.AsyncClient, connect: Connect, settings) -> None:  # type: ignore[no-untyped-def]
    owner = await register(client)
    async with connect("203.0.113.66") as attacker:
        codes = [(await attacker.post(LOGIN, json={"email": owner.email, "password": WRONG})).status_code
                 for _ in range(settings.login_max_failures + 5)]
        assert codes[-1] == 429
        # Even the right password waits on the attacker's address...
        assert (await attacker.post(LOGIN, json={"email": owner.email, "password": STRONG_PASSWORD})).status_code == 429
    async with connect("198.51.100.12") as own:
        # ...while the owner, from theirs, signs in at once.
        resp = await own.post(LOGIN, json={"email": owner.email, "password": STRONG_PASSWORD})
        assert resp.status_code == 200, resp.text


async def test_wait_doubles_then_the_right_password_clears_it(
    client: httpx.AsyncClient, connect: Connect, settings, owner_database: Database
) -> None:  # type: ignore[no-untyped-def]
    acct = await register(client)
    async with connect("198.51.100.13") as c:
        for _ in range(settings.login_max_failures):
            await c.post(LOGIN, json={"email": acct.email, "password": WRONG})
        first = await c.post(LOGIN, json={"email": acct.email, "password": WRONG})
        assert first.status_code == 429
        assert FIRST_DELAY_SECONDS - 2 <= int(first.headers["Retry-After"]) <= FIRST_DELAY_SECONDS
        await _expire_waits(owner_database)
        assert (await c.post(LOGIN, json={"email": acct.email, "password": WRONG})).status_code == 401
        second = await c.post(LOGIN, json={"email": acct.email, "password": WRONG})
        assert second.status_code == 429
        assert 2 * FIRST_DELAY_SECONDS - 2 <= int(second.headers["Retry-After"]) <= 2 * FIRST_DELAY_SECONDS
        await _expire_waits(owner_database)
        assert (await c.post(LOGIN, json={"email": acct.email, "password": STRONG_PASSWORD})).status_code == 200
        # A success starts the count over: the free failures are back.
        codes = [(await c.post(LOGIN, json={"email": acct.email, "password": WRONG})).status_code
                 for _ in range(settings.login_max_failures)]
        assert codes == [401] * settings.login_max_failures


async def _expire_waits(db: Database) -> None:
    """Time passing, without sleeping: every wait is over."""
    async with db.sessionmaker() as session:
        await session.execute(text("UPDATE login_throttles SET blocked_until = NULL"))
        await session.commit()


def test_delay_doubles_up_to_the_window(settings) -> None:  # type: ignore[no-untyped-def]
    waits = [delay_seconds(settings, n) for n in range(8)]
    assert waits[:3] == [FIRST_DELAY_SECONDS, 2 * FIRST_DELAY_SECONDS, 4 * FIRST_DELAY_SECONDS]
    assert max(waits) == settings.login_lockout_seconds
    assert delay_seconds(settings, 10_000) == settings.login_lockout_seconds


async def test_distributed_guessing_slows_new_addresses_not_known_ones(db_urls, tmp_path, database) -> None:  # type: ignore[no-untyped-def]
    from omnify.app import create_app

    app = create_app(make_settings(tmp_path, db_urls, login_account_max_failures=4), database)
    connect = _connector(app)
    async with connect("198.51.100.20") as home:
        owner = await register(home)
        assert (await home.post(LOGIN, json={"email": owner.email, "password": STRONG_PASSWORD})).status_code == 200
    ghost = unique_email("ghost")
    for i in range(4):  # a botnet: one guess per address, under each address's own limit
        async with connect(f"203.0.113.{100 + i}") as bot:
            assert (await bot.post(LOGIN, json={"email": owner.email, "password": WRONG})).status_code == 401
            assert (await bot.post(LOGIN, json={"email": ghost, "password": WRONG})).status_code == 401
    async with connect("192.0.2.77") as new_device:
        real = await new_device.post(LOGIN, json={"email": owner.email, "password": STRONG_PASSWORD})
        fake = await new_device.post(LOGIN, json={"email": ghost, "password": WRONG})
        assert _shape(real) == _shape(fake)
        assert real.status_code == 429 and real.json()["type"].endswith("/too-many-attempts")
    async with connect("198.51.100.20") as home:
        assert (await home.post(LOGIN, json={"email": owner.email, "password": STRONG_PASSWORD})).status_code == 200
    async with connect("192.0.2.77") as new_device:  # the owner's success started the count over
        assert (await new_device.post(LOGIN, json={"email": owner.email, "password": STRONG_PASSWORD})).status_code == 200


async def test_password_reset_clears_the_waits(client: httpx.AsyncClient, connect: Connect, settings,
                                               owner_database: Database) -> None:  # type: ignore[no-untyped-def]
    acct = await register(client)
    async with connect("198.51.100.14") as c:
        for _ in range(settings.login_max_failures + 1):
            await c.post(LOGIN, json={"email": acct.email, "password": WRONG})
        assert (await c.post(LOGIN, json={"email": acct.email, "password": STRONG_PASSWORD})).status_code == 429
        async with owner_database.sessionmaker() as session:  # the link the e-mail would carry
            password_hash = (await session.execute(text("SELECT password_hash FROM users WHERE email = :e"),
                                                   {"e": acct.email})).scalar_one()
        token, _ = create_reset_token(settings, uuid.UUID(acct.user_id), password_hash)
        new_password = STRONG_PASSWORD + "-renewed"
        resp = await c.post("/api/v1/auth/password-reset", json={"token": token, "new_password": new_password})
        assert resp.status_code == 204, resp.text
        assert (await c.post(LOGIN, json={"email": acct.email, "password": new_password})).status_code == 200


async def test_throttle_rows_do_not_store_what_was_typed(client: httpx.AsyncClient, connect: Connect,
                                                         owner_database: Database) -> None:
    ghost = unique_email("secret-ghost")
    async with connect("198.51.100.15") as c:
        await c.post(LOGIN, json={"email": ghost, "password": WRONG})
    async with owner_database.sessionmaker() as session:
        rows = (await session.execute(text("SELECT key, account FROM login_throttles"))).all()
    assert rows
    assert not any(ghost in str(value) or "198.51.100.15" in str(value) for row in rows for value in row)
