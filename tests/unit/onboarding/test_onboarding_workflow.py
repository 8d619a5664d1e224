"""The campaign-idea workflow table and the onboarding step arithmetic (pure rules)."""

from __future__ import annotations

import itertools
import uuid

from omnify.campaigns.models import IdeaStatus
from omnify.campaigns.service import TRANSITIONS, allowed_transitions
from omnify.core.db import utcnow
from omnify.onboarding.service import Progress, Step


def test_every_status_reaches_archived_and_archived_is_final() -> None:
    assert set(TRANSITIONS) == set(IdeaStatus)
    assert TRANSITIONS[IdeaStatus.ARCHIVED] == frozenset()
    for status in IdeaStatus:
        if status is not IdeaStatus.ARCHIVED:
            assert IdeaStatus.ARCHIVED in TRANSITIONS[status]
    # the happy path exists, and nothing skips review
    chain = [IdeaStatus.DRAFT, IdeaStatus.IN_REVIEW, IdeaStatus.APPROVED, IdeaStatus.LAUNCHED, IdeaStatus.ARCHIVED]
    for a, b in itertools.pairwise(chain):
        assert b in TRANSITIONS[a]
    assert IdeaStatus.APPROVED not in TRANSITIONS[IdeaStatus.DRAFT]
    assert IdeaStatus.LAUNCHED not in TRANSITIONS[IdeaStatus.IN_REVIEW]
    assert allowed_transitions("in_review") == [IdeaStatus.DRAFT, IdeaStatus.APPROVED, IdeaStatus.ARCHIVED]


def _steps(*done: bool) -> list[Step]:
    return [Step(f"s{i}", f"S{i}", d, None, "GET", "/") for i, d in enumerate(done)]


def test_progress_status_and_next_step() -> None:
    cid = uuid.uuid4()
    fresh = Progress(cid, _steps(False, False, False, False), [], False, None)
    assert (fresh.status, fresh.progress, fresh.next_step and fresh.next_step.key) == ("not_started", 0.0, "s0")
    half = Progress(cid, _steps(True, False, True, False), [], False, None)
    assert (half.status, half.progress, half.next_step and half.next_step.key) == ("in_progress", 0.5, "s1")
    done = Progress(cid, _steps(True, True, True), [], False, utcnow())
    assert (done.status, done.progress, done.next_step, done.all_done) == ("completed", 1.0, None, True)
    # completion is a milestone: it stays completed when a step regresses later
    regressed = Progress(cid, _steps(True, False, True), [], False, utcnow())
    assert regressed.status == "completed" and regressed.progress == 0.6667
