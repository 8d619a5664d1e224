"""Account and settings flows in a real Chromium against `omnify up`, every page checked by
the Walk (axe at both widths, no console error, no request to another origin):

- password reset from the e-mailed link (the file e-mail backend of `omnify up`);
- a form posted without its CSRF token is refused with a page that says why;
- Settings → Webhooks: an endpoint aimed at a receiver in this process, the secret shown
  once, a test event delivered by the worker and seen in the delivery log.

A notice from a redirect (``?flash=``) is awaited by its text, not in the URL: app.js drops
the parameter from the address bar as soon as the page loads (a reload must not repeat it).
"""

from __future__ import annotations

import email
import email.policy
import re
import time
import uuid

from playwright.sync_api import Dialog, expect
from standardwebhooks.webhooks import Webhook

from tests.webhook_receiver import hook_receiver

from .conftest import Served
from .harness import Walk
from .test_pages import sign_in

PASSWORD = "Settle-the-Settings-2026!"
NEW_PASSWORD = "A-brand-new-passphrase-77"
MAIL_WAIT = 60.0


def sign_up(walk: Walk, who: str) -> str:
    """A new user with a new organization; returns the e-mail address."""
    address = f"{who}-{uuid.uuid4().hex[:8]}@example.com"
    walk.goto("/signup", "sign up")
    walk.page.get_by_label("Your name").fill(who.title())
    walk.page.get_by_label("Work e-mail").fill(address)
    walk.page.get_by_label("Password").fill(PASSWORD)
    walk.page.get_by_label("Agency or company name").fill(f"{who.title()} Agency")
    walk.page.get_by_role("button", name="Create account").click()
    walk.page.wait_for_url(re.compile(r"/orgs/[^/]+$"))
    return address


def text_of(raw: str) -> str:
    """The plain-text part of an .eml as a mail client shows it (transfer encoding undone)."""
    message = email.message_from_string(raw, policy=email.policy.default)
    part = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    assert part is not None, raw[:500]
    return str(part.get_content())


def reset_link(served: Served, address: str) -> str:
    deadline = time.monotonic() + MAIL_WAIT
    while time.monotonic() < deadline:
        for raw in reversed(served.mails_to(address)):
            found = re.search(r"https?://\S+/reset-password\?token=[^\s\"'<>]+", text_of(raw))
            if found:
                return found.group(0)
        time.sleep(0.5)
    raise AssertionError(f"no password-reset e-mail to {address} within {MAIL_WAIT:.0f} s")


def test_password_reset_from_the_emailed_link(walk: Walk, served: Served) -> None:
    page = walk.page
    address = sign_up(walk, "forgetful")
    page.get_by_label(f"Account: {address}").click()
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#flash")).to_contain_text("You are signed out")

    page.get_by_role("link", name="Forgot your password?").click()
    page.wait_for_url(re.compile(r"/forgot-password$"))
    walk.check("forgot password")
    page.get_by_label("E-mail").fill(address)
    page.get_by_role("button", name="Send the reset link").click()
    expect(page.locator("#flash")).to_contain_text("a reset link is on its way")
    walk.check("reset link sent")

    link = reset_link(served, address)
    assert link.startswith(served.origin + "/reset-password?token="), link
    walk.goto(link.removeprefix(served.origin), "choose a new password")  # the exact link of the mail
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    expect(page.locator("#flash")).to_contain_text("Your password was changed")
    walk.check("password changed")

    walk.expect_status(401)  # the old password is refused (Chromium logs the 401 page load)
    page.get_by_label("E-mail").fill(address)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("E-mail or password is wrong")
    walk.check("old password refused")
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/orgs/[^/]+$"))
    walk.check("signed in with the new password")
    # The link worked once: opening it again and using it is refused.
    walk.expect_status(400)
    page.goto(link)
    page.get_by_label("New password").fill(NEW_PASSWORD + "-again")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid or has expired")
    walk.check("used reset link refused")


def test_a_form_without_its_csrf_token_is_refused(walk: Walk) -> None:
    page = walk.page
    sign_up(walk, "tokenless")
    walk.goto("/settings/profile", "profile")
    before = page.get_by_label("Name", exact=True).input_value()
    page.evaluate("""() => document.querySelectorAll('form[action="/settings/profile"] input[name=csrf_token]')
                      .forEach(input => input.remove())""")
    page.get_by_label("Name", exact=True).fill("Changed Without Token")
    walk.expect_status(403)
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_load_state("load")
    expect(page.locator("main h1")).to_have_text("Security token missing or stale")
    expect(page.locator("main")).to_contain_text("security token is missing or stale")
    assert page.url.endswith("/settings/profile")
    walk.check("form without csrf token refused")

    # Nothing changed; the same form with its token goes through.
    walk.goto("/settings/profile", "profile after the refusal")
    assert page.get_by_label("Name", exact=True).input_value() == before
    # A script posting without the token (another site's form would have none) is refused too.
    refused = page.request.post(walk.origin + "/settings/profile", form={"name": "Forged"})
    assert refused.status == 403
    page.get_by_label("Name", exact=True).fill("Changed With Token")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#flash")).to_contain_text("Profile saved.")
    assert page.get_by_label("Name", exact=True).input_value() == "Changed With Token"
    walk.check("profile saved with its token")


def test_webhook_endpoint_secret_once_test_event_and_delivery_log(walk: Walk, served: Served) -> None:
    page = walk.page
    page.on("dialog", lambda dialog: _accept(dialog))  # rotate and delete ask first
    sign_up(walk, "hooked")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Webhooks").click()
    page.wait_for_url(re.compile(r"/webhooks$"))
    expect(page.get_by_role("heading", name="No webhook endpoint yet")).to_be_visible()
    walk.check("webhooks, none yet")
    webhooks_url = page.url

    with hook_receiver() as receiver:
        page.get_by_label("Endpoint URL").fill(receiver.url)
        page.get_by_label("Description (optional)").fill("Browser receiver")
        page.locator("#et-sync-completed").check()
        page.locator("#et-action-applied").check()
        page.get_by_role("button", name="Create endpoint").click()
        secret_box = page.locator("#endpoint-secret")
        expect(secret_box).to_be_visible()
        secret = secret_box.inner_text().strip()
        assert secret.startswith("whsec_"), secret
        walk.check("endpoint created, secret shown once")

        # Coming back to the endpoint never shows the secret again (only its first characters).
        page.get_by_role("link", name="All webhook endpoints").click()
        page.get_by_role("link", name=receiver.url).click()
        page.wait_for_url(re.compile(r"/webhooks/[0-9a-f-]{36}$"))
        expect(page.locator("#endpoint-secret")).to_have_count(0)
        assert secret not in page.content() and secret[:10] in page.content()
        walk.check("endpoint page, secret hidden")

        page.get_by_role("button", name="Send a test event").click()
        expect(page.locator("#flash")).to_contain_text("Test event queued")
        # The worker of `omnify up` delivers it; the log polls itself (HTMX) until it is done.
        delivered = page.locator("#delivery-log tr[data-status=succeeded]")
        expect(delivered).to_have_count(1, timeout=60_000)
        expect(delivered).to_contain_text("webhook.test")
        expect(delivered).to_contain_text("HTTP 200")
        walk.check("test event delivered")
        [hit] = receiver.received()
        payload = Webhook(secret).verify(hit.body, hit.headers)  # signed with the secret shown once
        assert payload["type"] == "webhook.test" and hit.path == "/omnify-hooks"

        delivered.get_by_role("link", name=re.compile("Details")).click()
        page.wait_for_url(re.compile(r"/deliveries/[0-9a-f-]{36}$"))
        expect(page.locator("main")).to_contain_text("This is a test event from Omnify.")
        walk.check("delivery detail")
        page.go_back()

        page.get_by_label("Status").select_option("failed")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(re.compile(r"status=failed"))
        expect(page.get_by_role("heading", name="No failed delivery")).to_be_visible()
        walk.check("delivery log, dead letters only")

        page.get_by_role("button", name="Rotate secret").click()
        rotated = page.locator("#endpoint-secret")
        expect(rotated).to_be_visible()
        assert rotated.inner_text().strip() not in (secret, "")
        walk.check("secret rotated, shown once")

    page.get_by_role("button", name="Delete endpoint").click()
    expect(page.locator("#flash")).to_contain_text("Webhook endpoint deleted.")
    expect(page.get_by_role("heading", name="No webhook endpoint yet")).to_be_visible()
    assert page.url.startswith(webhooks_url)
    walk.check("endpoint deleted")


def test_signed_in_pages_checked(walk: Walk, served: Served) -> None:
    """The demo organization's webhooks page (an admin's view) passes the Walk checks too."""
    sign_in(walk, served.demo_email, served.demo_password)
    org = re.search(r"/orgs/[^/]+", walk.page.url)
    assert org
    walk.goto(org.group(0) + "/webhooks", "demo webhooks")
    walk.goto("/settings/notifications", "notification preferences")


def _accept(dialog: Dialog) -> None:
    dialog.accept()
