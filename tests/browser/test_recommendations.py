"""The demo user's recommendations inbox and actions history pass the Walk checks (axe at
both widths, no console error, no foreign request), and the apply leg of issue 15's walk:
the brain's own ``pause_ad`` recommendation from the demo's synced days (a creative wear-out
the Meta sandbox carries), with its evidence chart (daily CTR, the onset marked) -> Apply
(confirmed) -> the actions history shows it applied -> the Meta sandbox holds the ad paused
-> the audit log lists the action -> Undo (confirmed) -> the ad is active again at the sandbox."""

from __future__ import annotations

import re

from .apply_leg import apply_then_undo
from .conftest import Served
from .demo_data import brain_pause_ad
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
    rec = brain_pause_ad(served)  # made by the brain from the demo's synced days, not planted
    sign_in(walk, served.demo_email, served.demo_password)
    assert walk.page.url.split("?")[0].endswith(f"/orgs/{rec.org_id}")
    apply_then_undo(walk, served, rec)
    walk.assert_clean()
