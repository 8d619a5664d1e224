"""What every browser test checks on every page it visits.

``Walk`` wraps one Playwright page of a served Omnify. Listeners record console errors,
page errors and any request that leaves the app's origin for the whole life of the page;
``check(name)`` runs the vendored axe-core inside the page at desktop width and at 390 px
(a phone) and fails on a serious or critical violation, then saves a screenshot of both
widths under ``SCREENSHOTS`` (named in the README). ``assert_clean()`` fails on anything
the listeners caught. axe is evaluated through the DevTools protocol, which the page's
strict CSP does not govern, so the page under test keeps its real CSP.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import ConsoleMessage, Page, Request, expect

ROOT = Path(__file__).resolve().parents[2]
#: Where the screenshots of every step go (README, "Browser tests"); git-ignored.
SCREENSHOTS = ROOT / ".artifacts" / "screenshots"
AXE_SOURCE = (Path(__file__).parent / "assets" / "axe.min.js").read_text()
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
BLOCKING_IMPACTS = ("serious", "critical")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

_AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
}"""


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


@dataclass
class Walk:
    """One tab of one test: its own listeners, screenshot folder and tally of checked pages."""

    page: Page
    origin: str
    folder: Path
    console_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    allowed_console: list[re.Pattern[str]] = field(default_factory=list)
    _step: int = 0

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda exc: self.console_errors.append(f"pageerror: {exc}"))
        self.page.on("request", self._on_request)

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        text = f"{msg.text} @ {msg.location.get('url', '')}"
        if not any(p.search(text) for p in self.allowed_console):
            self.console_errors.append(text)

    def _on_request(self, request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign_requests.append(request.url)

    def expect_status(self, status: int) -> None:
        """Let the next page answer ``status`` (Chromium logs non-2xx page loads as console errors)."""
        self.allowed_console.append(re.compile(rf"status of {status}\b"))

    def goto(self, path: str, name: str | None = None) -> None:
        response = self.page.goto(self.origin + path)
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        self.check(name or path)

    def wait_for_notice(self, url: re.Pattern[str], notice: str, timeout_ms: float = 30_000) -> None:
        """After a form's redirect: the page at ``url`` shows ``notice`` in its flash area.

        Waits on the page, not on the redirect's ``?flash=`` URL: app.js drops that
        parameter with ``history.replaceState`` as soon as the notice is shown, which can
        beat ``wait_for_url`` to it. Fails with where the page is and what it says instead."""
        try:
            expect(self.page.locator("#flash .notice")).to_have_text(notice, timeout=timeout_ms)
            expect(self.page).to_have_url(url)
        except AssertionError as exc:
            main = self.page.locator("main")
            text = main.first.inner_text(timeout=2_000)[:1500] if main.count() else self.page.content()[:1500]
            raise AssertionError(f"expected {notice!r} at {url.pattern}, on {self.page.url}: {text}") from exc

    def check(self, name: str) -> None:
        """axe at desktop and phone width (serious/critical fail) and a screenshot of each."""
        self.page.wait_for_load_state("load")
        self.page.evaluate(AXE_SOURCE) if not self.page.evaluate("typeof axe !== 'undefined'") else None
        self._step += 1
        url = self.page.url
        failures: list[str] = []
        for label, size in (("desktop", DESKTOP), ("390px", PHONE)):
            self.page.set_viewport_size(size)
            violations: list[dict[str, Any]] = self.page.evaluate(_AXE_RUN)
            bad = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
            if bad:
                failures.append(f"{label}: {json.dumps(bad, indent=1)}")
            self.page.screenshot(path=str(self.folder / f"{self._step:02d}-{slug(name)}-{label}.png"), full_page=True)
        self.page.set_viewport_size(DESKTOP)
        self.checked.append(url)
        assert not failures, f"axe on {name} ({url}):\n" + "\n".join(failures)
        self.assert_clean()

    def assert_clean(self) -> None:
        assert not self.console_errors, f"console errors: {self.console_errors}"
        assert not self.foreign_requests, f"requests to another origin: {self.foreign_requests}"
