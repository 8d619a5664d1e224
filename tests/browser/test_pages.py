"""The pages already built, visited signed out and as the demo user: axe at both widths,
no console error, no foreign request, a screenshot each."""

from __future__ import annotations

import re

from .conftest import Served
from .harness import Walk


def sign_in(walk: Walk, email: str, password: str) -> None:
    walk.goto("/login", "sign in")
    walk.page.get_by_label("E-mail").fill(email)
    walk.page.get_by_label("Password").fill(password)
    walk.page.get_by_role("button", name="Sign in").click()
    walk.page.wait_for_url(re.compile(r"/orgs/"))


def test_signed_out_pages(walk: Walk) -> None:
    for path, name in (("/login", "sign in"), ("/signup", "sign up"), ("/forgot-password", "forgot password"),
                       ("/api/docs", "api docs")):
        walk.goto(path, name)
    assert len(walk.checked) == 4


def test_demo_user_pages(walk: Walk, served: Served) -> None:
    sign_in(walk, served.demo_email, served.demo_password)
    walk.check("organization overview")
    base = re.search(r"/orgs/[^/]+", walk.page.url)
    assert base
    org = base.group(0)
    walk.goto(org + "/clients", "clients")
    client = walk.page.locator("table th[scope='row'] a[href*='/clients/']").first.get_attribute("href")
    assert client  # each client is linked by its name
    walk.goto(client + "/privacy", "privacy requests")
    for suffix, name in (("/rules", "rules"), ("/settings/team", "team"), ("/settings/api-keys", "api keys"),
                         ("/settings/plan", "plan"), ("/audit", "audit log")):
        walk.goto(org + suffix, name)
    walk.goto("/settings/profile", "profile")
    walk.goto("/settings/notifications", "notification preferences")


def test_the_checks_can_fail(walk: Walk) -> None:
    """A nameless button (axe: critical) and a console error are caught, not waved through."""
    import pytest

    walk.goto("/login", "sign in before breaking it")
    walk.page.evaluate("document.querySelector('main').insertAdjacentHTML('beforeend', '<button></button>')")
    with pytest.raises(AssertionError, match="button-name"):
        walk.check("nameless button")
    walk.page.evaluate("console.error('broken on purpose')")
    with pytest.raises(AssertionError, match="broken on purpose"):
        walk.assert_clean()
    walk.console_errors.clear()


def test_demo_dashboard(walk: Walk, served: Served) -> None:
    """The demo client's dashboard: KPI cards, both charts drawn, sortable breakdowns, sync status."""
    sign_in(walk, served.demo_email, served.demo_password)
    walk.page.locator("a[href$='/dashboard']").first.click()
    walk.page.wait_for_url(re.compile(r"/clients/[^/]+/dashboard"))
    walk.page.wait_for_selector("[data-chart='spend'][data-ready] canvas")
    walk.page.wait_for_selector("[data-chart='revenue'][data-ready] canvas")
    assert walk.page.locator("article.kpi").count() >= 6
    spend = walk.page.locator("article.kpi[data-kpi='spend_minor'] .value").inner_text()
    assert re.search(r"[1-9]", spend), spend  # synced sandbox spend, not zero
    walk.check("demo dashboard")
    table = walk.page.locator("table[data-sortable]").first
    table.get_by_role("button", name="Spend").click()
    header = table.locator("thead th").nth(2)
    assert header.get_attribute("aria-sort") == "ascending"
    values = [float(v) for v in table.locator("tbody td:nth-child(3)").evaluate_all(
        "cells => cells.map(c => c.getAttribute('data-value'))")]
    assert values == sorted(values)
    walk.page.get_by_role("button", name="Last 7 days").click()
    walk.page.wait_for_selector("[data-chart='spend'][data-ready] canvas")
    walk.check("demo dashboard, last 7 days")


def test_demo_connections(walk: Walk, served: Served) -> None:
    """The demo client's connections (status, accounts, last runs) and its account picker."""
    sign_in(walk, served.demo_email, served.demo_password)
    walk.page.locator("a[href$='/dashboard']").first.click()
    walk.page.get_by_role("navigation", name="Client").get_by_role("link", name="Connections").click()
    walk.page.wait_for_url(re.compile(r"/connections$"))
    meta = walk.page.locator("#platform-meta_ads")
    assert "connected" in meta.locator(".badge").first.inner_text()
    assert meta.locator("tbody tr").count() >= 1  # its last runs, with rows
    walk.check("demo connections")
    meta.get_by_role("button", name="Choose accounts").click()
    walk.page.wait_for_url(re.compile(r"/connections/meta_ads/connected"))
    assert walk.page.locator("input[name=account_ids]:checked").count() >= 1
    walk.check("demo meta account picker")
