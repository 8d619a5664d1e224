"""The demo user's recommendations inbox and actions history pass the Walk checks (axe at
both widths, no console error, no foreign request)."""

from __future__ import annotations

import re

from .conftest import Served
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
