"""The apply leg of issue 15's walk, on the brain's own ``pause_ad`` recommendation (made
from synced days: the sandboxes carry a recent creative wear-out in every ad account), shared by
the sign-up walk (its new organization) and the demo test."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Dialog, expect

from .conftest import Served
from .demo_data import BrainPause, sandbox_object
from .harness import Walk


def apply_then_undo(walk: Walk, served: Served, rec: BrainPause) -> None:
    """From the inbox, signed in as a user who may apply ``rec`` (the brain's own ``pause_ad``):
    the card's evidence -> Apply (confirmed) -> the actions history -> the ad paused at the
    Meta sandbox -> the audit log -> Undo (confirmed) -> the ad active again."""
    page = walk.page
    meta = served.sandboxes["meta_ads"]
    assert sandbox_object(meta, rec.ad_external_id)["status"] == "active"
    confirms: list[str] = []

    def confirm(dialog: Dialog) -> None:
        confirms.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    org = f"/orgs/{rec.org_id}"

    # The inbox shows the finding with its chart, its numbers, its impact and an Apply button.
    walk.goto(f"{org}/recommendations?client_id={rec.client_id}", "inbox with a pause recommendation")
    card = page.locator(f"article[aria-labelledby='rec-{rec.recommendation_id}']")
    expect(card.get_by_role("heading", name=rec.title)).to_be_visible()
    assert rec.impact_minor and rec.impact_minor > 0
    expect(card).to_contain_text(f"expected impact {rec.impact_minor / 100:.2f} {rec.currency}")
    expect(card.get_by_role("region", name=f"Evidence for {rec.title}")).to_contain_text("ctr drop")
    chart = card.locator("[data-chart='evidence']")
    expect(chart.locator("canvas")).to_have_count(1)  # drawn by charts.js (uPlot)
    expect(chart).to_have_attribute("data-ready", "1")
    expect(card.locator("figcaption")).to_have_text("Daily click-through rate of the ad")
    expect(card.locator("figure p")).to_contain_text("The decline starts on")
    drawn = json.loads(card.locator("figure script[type='application/json']").text_content() or "{}")
    assert [s["label"] for s in drawn["series"]][:1] == ["CTR"] and drawn["marks"][0]["label"] == "decline starts"
    assert drawn["x"][0] < drawn["marks"][0]["x"] < drawn["x"][-1]  # the chart spans the change

    # Apply, confirmed: the actions history shows the change with its outcome.
    card.get_by_role("button", name="Apply").click()
    walk.wait_for_notice(re.compile(rf"{org}/actions(\?|$)"), "Applied on the ad platform.")
    assert confirms == ["Apply this change on the ad platform?"]
    row = page.locator("tr[data-action-id]").filter(has_text=rec.ad_name)
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("applied")
    expect(row).to_contain_text("meta_ads")
    action_id = row.get_attribute("data-action-id")
    assert action_id
    walk.check("actions history, applied")

    # At the platform: the Meta sandbox holds the ad paused.
    assert sandbox_object(meta, rec.ad_external_id)["status"] == "paused"

    # The audit log lists the action (target: this action).
    walk.goto(f"{org}/audit?action_prefix=action.", "audit log, actions")
    entry = page.locator("tbody tr").filter(has=page.locator("code", has_text=re.compile(r"^action\.applied$")))
    expect(entry.filter(has_text=action_id)).to_have_count(1)

    # The recommendation left the open inbox.
    walk.goto(f"{org}/recommendations?client_id={rec.client_id}", "inbox after apply")
    expect(page.locator(f"article[aria-labelledby='rec-{rec.recommendation_id}']")).to_have_count(0)

    # Undo, confirmed: the history says undone and the ad is active again at the sandbox.
    walk.goto(f"{org}/actions", "actions history before undo")
    row = page.locator(f"tr[data-action-id='{action_id}']")
    row.get_by_role("button", name="Undo").click()
    walk.wait_for_notice(re.compile(rf"{org}/actions(\?|$)"), "Undone: the previous state is restored.")
    assert confirms[-1] == "Undo this change on the ad platform?"
    expect(row.locator(".badge")).to_have_text("undone")
    expect(row.get_by_role("button", name="Undo")).to_have_count(0)
    walk.check("actions history, undone")
    assert sandbox_object(meta, rec.ad_external_id)["status"] == "active"
    walk.goto(f"{org}/audit?action_prefix=action.", "audit log after undo")
    expect(page.locator("tbody tr").filter(has_text="action.undone").filter(has_text=action_id)).to_have_count(1)
    page.remove_listener("dialog", confirm)
