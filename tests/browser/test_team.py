"""Issue 15's invitation leg in a real Chromium: the demo organization's owner invites a
teammate as viewer from the team page -> the invitation e-mail (the file backend's .eml) ->
the invitee opens its exact link, sets a password and lands in the organization -> as a
viewer, the write buttons (Apply, Archive, the invitation form) are absent, and a write
forced through a hand-made form is refused with a 403 page that says why (not a 500)."""

from __future__ import annotations

import email
import email.policy
import re
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.factories import link_url

from .conftest import Served
from .demo_data import brain_pause_ad
from .harness import DESKTOP, Walk
from .test_pages import sign_in

MAIL_WAIT_S = 60.0


def invitation_link(served: Served, address: str) -> str:
    """The token link of the newest e-mail to ``address``, waiting for the worker to write it."""
    deadline = time.monotonic() + MAIL_WAIT_S
    while not (mails := served.mails_to(address)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no e-mail to {address} in {served.mail_dir} after {MAIL_WAIT_S:.0f} s")
        time.sleep(0.2)  # polling the mail folder, not a timing assertion
    message = email.message_from_string(mails[-1], policy=email.policy.default)
    assert address.lower() in str(message["To"]).lower()
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return link_url(body.get_content())  # type: ignore[attr-defined]


@pytest.fixture
def invitee_context(walk: Walk) -> Iterator[BrowserContext]:
    browser = walk.page.context.browser
    assert browser is not None
    context = browser.new_context(viewport=DESKTOP, base_url=walk.origin)
    context.set_default_timeout(20_000)
    yield context
    context.close()


def test_invited_viewer_joins_and_cannot_write(walk: Walk, served: Served, invitee_context: BrowserContext) -> None:
    planted = brain_pause_ad(served)  # an applicable recommendation the viewer must not be offered
    org = f"/orgs/{planted.org_id}"
    invitee = f"viewer-{uuid.uuid4().hex[:8]}@example.com"

    # The owner invites a viewer from the team page.
    sign_in(walk, served.demo_email, served.demo_password)
    walk.goto(f"{org}/settings/team", "team")
    invite = walk.page.locator("form[action$='/settings/invitations']")
    invite.get_by_label("E-mail").fill(invitee)
    invite.get_by_label("Role").select_option("viewer")
    invite.get_by_role("button", name="Send invitation").click()
    walk.wait_for_notice(re.compile(rf"{org}/settings/team(\?|$)"), "Invitation sent.")
    pending = walk.page.get_by_role("region", name="Invitations").locator("tr").filter(has_text=invitee)
    expect(pending).to_contain_text("viewer")
    expect(pending).to_contain_text("pending")
    walk.check("team, invitation sent")

    # The invitee opens the e-mailed link as it is, sets a name and password, and lands in the org.
    link = invitation_link(served, invitee)
    assert link.startswith(f"{served.origin}/invitations/accept?token="), link
    viewer = Walk(page=invitee_context.new_page(), origin=served.origin, folder=walk.folder / "viewer")
    viewer.page.goto(link)
    expect(viewer.page.get_by_role("heading", name=re.compile(r"^Join "))).to_be_visible()
    expect(viewer.page.locator("main")).to_contain_text(invitee)
    viewer.check("invitation")
    viewer.page.get_by_label("Your name").fill("Vera Viewer")
    viewer.page.get_by_label("Password").fill("Viewer-of-Omnify-2026!")
    viewer.page.get_by_role("button", name="Create account and join").click()
    viewer.wait_for_notice(re.compile(rf"{org}(\?|$)"), "Welcome! You joined the organization.")
    viewer.check("joined as viewer")

    # As a viewer: no Apply (the recommendation itself is shown), no Archive, no invitation form.
    viewer.goto(f"{org}/recommendations?client_id={planted.client_id}", "viewer inbox")
    card = viewer.page.locator(f"article[aria-labelledby='rec-{planted.recommendation_id}']")
    expect(card.get_by_role("heading", name=planted.title)).to_be_visible()
    expect(viewer.page.get_by_role("button", name="Apply")).to_have_count(0)
    expect(viewer.page.get_by_role("button", name="Dismiss")).to_have_count(0)
    viewer.goto(f"{org}/clients", "viewer clients")
    expect(viewer.page.get_by_role("link", name=re.compile(".")).filter(
        has_text=re.compile(r"Acme Outdoor|Bright Smiles"))).not_to_have_count(0)
    expect(viewer.page.get_by_role("button", name="Archive")).to_have_count(0)
    viewer.goto(f"{org}/settings/team", "viewer team")
    expect(viewer.page.get_by_role("row").filter(has_text=invitee)).to_contain_text("viewer")
    expect(viewer.page.get_by_role("button", name="Send invitation")).to_have_count(0)
    expect(viewer.page.get_by_role("button", name="Remove")).to_have_count(0)

    # A write forced anyway (a form with a valid CSRF token, built in the page) is refused: a 403 page.
    for path, permission in ((f"/recommendations/{planted.recommendation_id}/apply", "actions:apply"),
                             (f"/clients/{planted.client_id}/archive", "clients:write"),
                             ("/settings/invitations", "invitations:manage")):
        viewer.expect_status(403)
        with viewer.page.expect_navigation() as nav:
            viewer.page.evaluate("""([action, email]) => {
                const form = document.createElement('form');
                form.method = 'post'; form.action = action;
                for (const [name, value] of [['csrf_token', document.body.dataset.csrf], ['email', email],
                                             ['role', 'admin']]) {
                  const input = document.createElement('input');
                  input.type = 'hidden'; input.name = name; input.value = value; form.appendChild(input);
                }
                document.body.appendChild(form); form.submit();
            }""", [org + path, f"forced-{uuid.uuid4().hex[:6]}@example.com"])
        response = nav.value
        assert response is not None and response.status == 403, (path, response and response.status)
        expect(viewer.page.get_by_role("heading", level=1)).to_have_text("Not allowed")
        expect(viewer.page.locator("main")).to_contain_text(f"Your role (viewer) does not allow {permission}.")
        viewer.check(f"refused {permission}")
        viewer.page.go_back()
        viewer.page.wait_for_url(re.compile(r"/settings/team$"))
    viewer.console_errors[:] = [e for e in viewer.console_errors if "status of 403" not in e]
    viewer.assert_clean()

    # Nothing was written: the recommendation is still open and the client still listed, for the owner.
    walk.goto(f"{org}/recommendations?client_id={planted.client_id}", "owner inbox after the viewer")
    owner_card = walk.page.locator(f"article[aria-labelledby='rec-{planted.recommendation_id}']")
    expect(owner_card.get_by_role("button", name="Apply")).to_have_count(1)
    walk.assert_clean()
