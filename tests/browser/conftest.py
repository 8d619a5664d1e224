"""A real Omnify for the browser: `omnify up` (migrations, demo organization, platform
sandboxes, worker with the embedded broker) on a free port and a scratch data directory,
with e-mails written to files the tests read the links from, and Debian's Chromium driven
headless by Playwright.

Runs once, on the SQLite pass (`omnify up` is the embedded default; the pages sit over the
same services the API tests exercise on PostgreSQL).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import is_postgres
from tests.servers import free_port, omnify_up

from .harness import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, Walk, slug

pytestmark = pytest.mark.browser


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)
            if is_postgres():
                item.add_marker(pytest.mark.skip(reason="browser tests drive `omnify up` (SQLite); run once"))


@dataclass
class Served:
    origin: str
    data_dir: Path
    mail_dir: Path
    demo_email: str
    demo_password: str
    #: Base URL of each platform sandbox `omnify up` runs (its "Sandboxes:" line), by platform.
    sandboxes: dict[str, str]

    def mails_to(self, address: str) -> list[str]:
        """Raw text of every e-mail written for ``address``, oldest first."""
        found = []
        for path in sorted(self.mail_dir.rglob("*"), key=lambda p: p.stat().st_mtime):
            if path.is_file():
                text = path.read_text(errors="replace")
                if address.lower() in text.lower():
                    found.append(text)
        return found


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing (required in CI)")
        pytest.skip(f"{CHROMIUM} is missing")
    data = tmp_path_factory.mktemp("served")
    mail = data / "mail"
    port = free_port()
    env = {"OMNIFY_LOG_LEVEL": "WARNING", "OMNIFY_EMAIL_BACKEND": "file", "OMNIFY_EMAIL_FILE_DIR": str(mail)}
    # A webhook receiver in the test process (127.0.0.1) is a legal endpoint, as in development;
    # every sign-in, sign-up and reset of the suite comes from one IP: the per-IP limit of a
    # real deployment (10/minute, tested in the API tests) would make the walk flaky, not safer.
    env |= {"OMNIFY_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "OMNIFY_RATE_LIMIT_AUTH": "600/minute"}
    with omnify_up(data, env, port, log=data / "up.log") as up:
        creds = json.loads((data / "demo-credentials.json").read_text())
        line = re.search(r"^  Sandboxes: (.+)$", up.output(), re.MULTILINE)
        assert line, up.output()[-2000:]
        sandboxes = dict(pair.split("=", 1) for pair in line.group(1).split())
        yield Served(up.origin, data, mail, creds["email"], creds["password"], sandboxes)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Module-scoped on purpose: Playwright's sync API keeps its event loop marked as running
    in this thread while it is open, and with xdist the same worker goes on to run async tests
    after the browser modules (pytest-asyncio then fails with "Runner.run() cannot be called
    from a running event loop"). Closing it at the end of each module restores the thread."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def walk(browser, served: Served, request: pytest.FixtureRequest) -> Iterator[Walk]:  # type: ignore[no-untyped-def]
    """A fresh browser context (no cookies) and tab, checked on every page."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=served.origin)
    context.set_default_timeout(20_000)
    page = context.new_page()
    tab = Walk(page=page, origin=served.origin, folder=SCREENSHOTS / slug(request.node.name))
    yield tab
    context.close()
