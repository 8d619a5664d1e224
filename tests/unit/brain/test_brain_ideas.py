"""Idea generator: deterministic rules, and the OpenAI-compatible provider against a real HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from omnify.brain.ideas import IdeaProvider, IdeaProviderError, generate_ideas, rule_based_ideas
from omnify.brain.llm import OpenAICompatibleIdeaProvider
from omnify.brain.types import CampaignIdea
from tests.chat_server import ChatServer, chat_answer, serve_chat

PROFILE = {
    "name": "Linen & Co",
    "industry": "apparel",
    "products": ["linen shirt"],
    "platforms": ["meta", "tiktok", "google"],
    "goals": ["sales", "retention"],
    "daily_budget": 1000,
}
PERFORMANCE = {
    "currency": "EUR",
    "platforms": [
        {"platform": "meta", "spend": 6000, "revenue": 24000},
        {"platform": "tiktok", "spend": 3000, "revenue": 4500},
    ],
    "creatives": [
        {"ad_id": "ad1", "name": "Summer linen", "platform": "meta", "spend": 3000, "roas": 6.0},
        {"ad_id": "ad2", "name": "Beach day", "platform": "tiktok", "spend": 2000, "roas": 1.2,
         "fatigued": True, "wasted_spend": 700.0, "ctr_drop": 0.4},
        {"ad_id": "ad3", "name": "Office", "platform": "meta", "spend": 1000, "roas": 2.0},
    ],
    "audiences": [{"name": "Yoga lovers", "platform": "meta", "spend": 1500, "roas": 5.0}],
    "ltv": {"at_risk_customers": 120, "at_risk_value": 9000.0, "high_value_customers": 400},
}  # fmt: skip


def test_rules_are_deterministic_and_ranked_by_impact() -> None:
    a = rule_based_ideas(PROFILE, PERFORMANCE, n=10, as_of=date(2024, 11, 1))
    b = rule_based_ideas(dict(PROFILE), json.loads(json.dumps(PERFORMANCE)), n=10, as_of=date(2024, 11, 1))
    assert [i.to_dict() for i in a] == [i.to_dict() for i in b]
    rules = [i.evidence["rule"] for i in a]
    assert rules[:3] == ["shift_platform", "win_back", "refresh_creative"]  # 1125, 900, 700 EUR
    shift = next(i for i in a if i.evidence["rule"] == "shift_platform")
    assert shift.expected_impact == pytest.approx(0.15 * 3000 * (4.0 - 1.5))
    refresh = next(i for i in a if i.evidence["rule"] == "refresh_creative")
    assert refresh.creative_angle and refresh.creative_angle in refresh.title
    assert "seasonal" in rules and "Black Friday" in next(i.title for i in a if i.evidence["rule"] == "seasonal")
    assert {i.key for i in a} == {i.key for i in b} and len({i.key for i in a}) == len(a)
    json.dumps([i.to_dict() for i in a])


def test_empty_inputs_give_no_ideas_and_no_crash() -> None:
    assert rule_based_ideas({}, {}) == []
    assert generate_ideas({}, {"platforms": "garbage", "creatives": [None, 3]}) == []


def test_n_limits_the_ideas() -> None:
    assert len(rule_based_ideas(PROFILE, PERFORMANCE, n=2)) == 2
    assert rule_based_ideas(PROFILE, PERFORMANCE, n=0) == []


class _Failing:
    name = "broken"

    def generate(self, profile: Any, performance: Any, n: int) -> list[CampaignIdea]:
        raise IdeaProviderError("endpoint down")


def test_failing_provider_falls_back_to_rules() -> None:
    provider: IdeaProvider = _Failing()
    ideas = generate_ideas(PROFILE, PERFORMANCE, provider=provider)
    assert ideas and all(i.source == "rules" for i in ideas)
    assert ideas[0].evidence["provider_error"] == "endpoint down"


# --------------------------------------------------------------------------- real HTTP server
@pytest.fixture
def llm_server() -> Iterator[ChatServer]:
    yield from serve_chat()


def test_llm_provider_parses_ideas(llm_server: ChatServer) -> None:
    ideas_json = json.dumps(
        {"ideas": [{"title": "UGC linen try-on", "rationale": "ROAS 6.0 on meta", "platform": "tiktok",
                    "audience": None, "creative_angle": "try-on", "suggested_daily_budget": 50}]}
    )  # fmt: skip
    llm_server.answers.append((200, chat_answer(ideas_json)))
    provider = OpenAICompatibleIdeaProvider(llm_server.url, api_key="sk-test-secret", model="m1")
    ideas = generate_ideas(PROFILE, PERFORMANCE, n=3, provider=provider)
    assert len(ideas) == 1
    idea = ideas[0]
    assert idea.title == "UGC linen try-on" and idea.source == "llm:m1" and idea.suggested_daily_budget == 50.0
    assert idea.key.startswith("idea:llm:")
    req = llm_server.seen[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == "Bearer sk-test-secret"
    assert req["body"]["model"] == "m1" and req["body"]["response_format"] == {"type": "json_object"}
    user = json.loads(req["body"]["messages"][1]["content"])
    assert user["ideas_wanted"] == 3 and user["profile"]["name"] == "Linen & Co"
    assert "sk-test-secret" not in repr(provider)


@pytest.mark.parametrize(
    "answer",
    [
        (500, b'{"error": "boom"}'),
        (200, b"not json"),
        (200, chat_answer("this is not json")),
        (200, chat_answer(json.dumps({"ideas": [{"title": "", "rationale": "x"}]}))),
        (200, chat_answer(json.dumps({"ideas": [{"title": "t", "rationale": "r", "suggested_daily_budget": "lots"}]}))),
        (200, chat_answer(json.dumps({"ideas": []}))),
    ],
    ids=["http-500", "non-json", "content-not-json", "empty-title", "bad-budget", "no-ideas"],
)
def test_llm_provider_errors_fall_back(llm_server: ChatServer, answer: tuple[int, bytes]) -> None:
    llm_server.answers.append(answer)
    provider = OpenAICompatibleIdeaProvider(llm_server.url)
    with pytest.raises(IdeaProviderError):
        provider.generate(PROFILE, PERFORMANCE, 3)
    llm_server.answers.append(answer)
    ideas = generate_ideas(PROFILE, PERFORMANCE, provider=provider)
    assert ideas and ideas[0].source == "rules" and "provider_error" in ideas[0].evidence


def test_llm_provider_unreachable_endpoint() -> None:
    provider = OpenAICompatibleIdeaProvider("http://127.0.0.1:9/v1", timeout=1.0)
    with pytest.raises(IdeaProviderError, match="unreachable"):
        provider.generate(PROFILE, PERFORMANCE, 1)
