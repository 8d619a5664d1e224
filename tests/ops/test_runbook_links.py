"""Every alert rule in deploy/monitoring links to an existing section of docs/runbooks/alerts.md.

The anchor check uses GitHub's heading-slug rules, because that is where on-call engineers click
the link. It also checks the labels and annotations Alertmanager routing and the pager rely on, so
a rule without a severity/team cannot reach anyone unnoticed.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "monitoring" / "rules"
RUNBOOK = ROOT / "docs" / "runbooks" / "alerts.md"
RUNBOOK_REPO_PATH = "docs/runbooks/alerts.md"


def github_slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower-case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_anchors(markdown: str) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = github_slug(match.group(1))
            n = seen.get(slug, 0)
            anchors.add(slug if n == 0 else f"{slug}-{n}")
            seen[slug] = n + 1
    return anchors


def alert_rules() -> list[tuple[str, dict[str, object]]]:
    rules: list[tuple[str, dict[str, object]]] = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rules.append((f"{path.name}:{rule['alert']}:{rule['labels'].get('severity')}", rule))
    return rules


ALERTS = alert_rules()


def check_rule(rule: dict[str, object], anchors: set[str]) -> list[str]:
    """Problems with one rule's runbook link and routing metadata (empty list = fine)."""
    problems: list[str] = []
    labels = rule.get("labels") or {}
    annotations = rule.get("annotations") or {}
    assert isinstance(labels, dict) and isinstance(annotations, dict)
    for key in ("severity", "team", "tenant_impact"):
        if not labels.get(key):
            problems.append(f"label {key} missing")
    if labels.get("severity") not in {"critical", "warning", "info"}:
        problems.append(f"severity {labels.get('severity')!r} is not critical/warning/info")
    for key in ("summary", "description", "runbook_url"):
        if not annotations.get(key):
            problems.append(f"annotation {key} missing")
    url = urlparse(str(annotations.get("runbook_url", "")))
    if not url.path.endswith(RUNBOOK_REPO_PATH):
        problems.append(f"runbook_url {url.geturl()!r} does not point at {RUNBOOK_REPO_PATH}")
    if not url.fragment:
        problems.append("runbook_url has no #anchor")
    elif url.fragment not in anchors:
        problems.append(f"anchor #{url.fragment} is not a heading of {RUNBOOK_REPO_PATH}")
    return problems


def test_rules_exist() -> None:
    # Guards against a glob or path change that would make every parametrized case vanish.
    assert len(ALERTS) >= 15


@pytest.mark.parametrize(("rule_id", "rule"), ALERTS, ids=[a[0] for a in ALERTS])
def test_alert_has_runbook_section(rule_id: str, rule: dict[str, object]) -> None:
    anchors = runbook_anchors(RUNBOOK.read_text(encoding="utf-8"))
    assert check_rule(rule, anchors) == [], rule_id


def test_check_catches_a_missing_section() -> None:
    """The check itself fails when the anchor is absent or the URL points elsewhere."""
    anchors = runbook_anchors("# Title\n\n## OmnifyAPIDown\n\ntext\n")
    good = {
        "labels": {"severity": "critical", "team": "platform", "tenant_impact": "all"},
        "annotations": {
            "summary": "s",
            "description": "d",
            "runbook_url": "https://github.com/omnify/omnify/blob/main/docs/runbooks/alerts.md#omnifyapidown",
        },
    }
    assert check_rule(good, anchors) == []
    missing = {**good, "annotations": {**good["annotations"], "runbook_url": good["annotations"]["runbook_url"] + "x"}}
    assert any("not a heading" in p for p in check_rule(missing, anchors))
    elsewhere = {**good, "annotations": {**good["annotations"], "runbook_url": "https://wiki/x#omnifyapidown"}}
    assert any("does not point at" in p for p in check_rule(elsewhere, anchors))
    unrouted = {**good, "labels": {"severity": "critical"}}
    assert any("team" in p for p in check_rule(unrouted, anchors))


def test_slug_rules() -> None:
    assert github_slug("OmnifyAPIDown") == "omnifyapidown"
    assert github_slug("Rollback (manual)") == "rollback-manual"
    assert runbook_anchors("## A\n## A\n```\n## not a heading\n```\n") == {"a", "a-1"}


def test_every_runbook_alert_section_has_a_rule() -> None:
    """The reverse direction: no stale sections for alerts that were deleted or renamed."""
    names = {github_slug(str(rule["alert"])) for _, rule in ALERTS}
    sections = {a for a in runbook_anchors(RUNBOOK.read_text(encoding="utf-8")) if a.startswith("omnify")}
    assert sections - names == set()
