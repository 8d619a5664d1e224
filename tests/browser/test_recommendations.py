"""The demo user's recommendations inbox and actions history pass the Walk checks (axe at
both widths, no console error, no foreign request), and the apply leg of issue 15's walk:
an open ``pause_ad`` recommendation for a demo client -> Apply (confirmed) -> the actions
history shows it applied -> the Meta sandbox holds the ad paused -> the audit log lists the
action -> Undo (confirmed) -> the ad is active again at the sandbox."""

from __future__ import annotations

import re

from playwright.sync_api import Dialog, expect

from .conftest import Served
from .demo_data import plant_pause_ad, sandbox_object
from .harness import Walk
from .test_pages import sign_in


def test_demo_recommendations_pages(walk: Walk, served: Served) -> None:
    sign_in(walk, served.demo_email, served.demo_password)
    base = re.search(r"/orgs/[^/]+", walk.page.url)
    assert base
    org = base.group(0)
    walk.goto(org + "/recommendations", "recommendations inbox")
    assert walk.page.get_by_role("link", name="Actions history").count() == 1
    walk.goto(org + "/recommendations?status=dismissed", "dismissed recommendations")
    walk.goto(org + "/actions", "actions history")
    walk.assert_clean()


def test_apply_then_undo_on_the_sandbox(walk: Walk, served: Served) -> None:
    page = walk.page
    meta = served.sandboxes["meta_ads"]
    planted = plant_pause_ad(served)
    assert sandbox_object(meta, planted.ad_external_id)["status"] == "active"
    confirms: list[str] = []

    def confirm(dialog: Dialog) -> None:
        confirms.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    sign_in(walk, served.demo_email, served.demo_password)
    org = f"/orgs/{planted.org_id}"
    assert page.url.split("?")[0].endswith(org)

    # The inbox shows the finding with its numbers and an Apply button.
    walk.goto(f"{org}/recommendations?client_id={planted.client_id}", "inbox with a pause recommendation")
    card = page.locator(f"article[aria-labelledby='rec-{planted.recommendation_id}']")
    expect(card.get_by_role("heading", name=planted.title)).to_be_visible()
    expect(card).to_contain_text("expected impact 123.45 USD")
    expect(card.get_by_role("region", name=f"Evidence for {planted.title}")).to_contain_text("ctr drop")

    # Apply, confirmed: the actions history shows the change with its outcome.
    card.get_by_role("button", name="Apply").click()
    walk.wait_for_notice(re.compile(rf"{org}/actions(\?|$)"), "Applied on the ad platform.")
    assert confirms == ["Apply this change on the ad platform?"]
    row = page.locator("tr[data-action-id]").filter(has_text=planted.ad_name)
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("applied")
    expect(row).to_contain_text("meta_ads")
    action_id = row.get_attribute("data-action-id")
    assert action_id
    walk.check("actions history, applied")

    # At the platform: the Meta sandbox holds the ad paused.
    assert sandbox_object(meta, planted.ad_external_id)["status"] == "paused"

    # The audit log lists the action (target: this action).
    walk.goto(f"{org}/audit?action_prefix=action.", "audit log, actions")
    entry = page.locator("tbody tr").filter(has=page.locator("code", has_text=re.compile(r"^action\.applied$")))
    expect(entry.filter(has_text=action_id)).to_have_count(1)

    # The recommendation left the open inbox.
    walk.goto(f"{org}/recommendations?client_id={planted.client_id}", "inbox after apply")
    expect(page.locator(f"article[aria-labelledby='rec-{planted.recommendation_id}']")).to_have_count(0)

    # Undo, confirmed: the history says undone and the ad is active again at the sandbox.
    walk.goto(f"{org}/actions", "actions history before undo")
    row = page.locator(f"tr[data-action-id='{action_id}']")
    row.get_by_role("button", name="Undo").click()
    walk.wait_for_notice(re.compile(rf"{org}/actions(\?|$)"), "Undone: the previous state is restored.")
    assert confirms[-1] == "Undo this change on the ad platform?"
    expect(row.locator(".badge")).to_have_text("undone")
    expect(row.get_by_role("button", name="Undo")).to_have_count(0)
    walk.check("actions history, undone")
    assert sandbox_object(meta, planted.ad_external_id)["status"] == "active"
    walk.goto(f"{org}/audit?action_prefix=action.", "audit log after undo")
    expect(page.locator("tbody tr").filter(has_text="action.undone").filter(has_text=action_id)).to_have_count(1)
    walk.assert_clean()
