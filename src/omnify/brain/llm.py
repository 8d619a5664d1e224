"""OpenAI-compatible chat endpoint as an :class:`~omnify.brain.ideas.IdeaProvider`.

This is the only module of ``omnify.brain`` that performs I/O. Nothing in the brain
imports it: the service layer builds a provider from settings when the client has the
LLM assistant switched on (it is off by default) and passes it to
:func:`omnify.brain.ideas.generate_ideas`. ``httpx`` is imported when the first request
is made, so importing this module costs nothing.

The endpoint is any server speaking ``POST {base_url}/chat/completions`` (OpenAI,
Azure OpenAI via its compatible path, vLLM, Ollama, LiteLLM ...). The model is asked for
a JSON object ``{"ideas": [...]}``; every answer is validated field by field, and any
network error, non-2xx status or malformed answer raises
:class:`~omnify.brain.ideas.IdeaProviderError`, on which the caller falls back to the
deterministic ideas. The API key is sent as a bearer token and never logged or echoed
in errors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from omnify.brain.ideas import IdeaProviderError
from omnify.brain.types import CampaignIdea, to_jsonable

SYSTEM_PROMPT = (
    "You are a senior performance marketer. From the client profile and the performance "
    "summary (JSON), propose concrete campaign ideas that build on what performs. Answer "
    'with a JSON object {"ideas": [{"title": str, "rationale": str, "platform": str|null, '
    '"audience": str|null, "creative_angle": str|null, "suggested_daily_budget": number|null}]} '
    "and nothing else. Cite the numbers you rely on in the rationale."
)
_MAX_FIELD = 2000


class OpenAICompatibleIdeaProvider:
    name = "openai-compatible"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str = "gpt-4o-mini",
        timeout: float = 20.0,
        temperature: float = 0.2,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.temperature = temperature
        self._api_key = api_key

    def __repr__(self) -> str:  # never show the key
        return f"OpenAICompatibleIdeaProvider(base_url={self.base_url!r}, model={self.model!r})"

    def _request(self, body: dict[str, Any]) -> Any:
        import httpx  # lazy: keeps the brain's import path free of HTTP clients

        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            with httpx.Client(timeout=self.timeout) as client:
                resp = client.post(f"{self.base_url}/chat/completions", json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise IdeaProviderError(f"LLM endpoint unreachable: {type(exc).__name__}") from exc
        if resp.status_code >= 300:
            raise IdeaProviderError(f"LLM endpoint answered HTTP {resp.status_code}")
        try:
            return resp.json()
        except ValueError as exc:
            raise IdeaProviderError("LLM endpoint answered with non-JSON") from exc

    def generate(self, profile: Mapping[str, Any], performance: Mapping[str, Any], n: int) -> list[CampaignIdea]:
        payload = {"profile": to_jsonable(profile), "performance": to_jsonable(performance), "ideas_wanted": n}
        body = {
            "model": self.model,
            "temperature": self.temperature,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": json.dumps(payload, sort_keys=True)},
            ],
        }
        data = self._request(body)
        try:
            content = data["choices"][0]["message"]["content"]
            parsed = json.loads(content)
            raw_ideas = parsed["ideas"]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise IdeaProviderError("LLM answer is not a JSON object with an 'ideas' list") from exc
        if not isinstance(raw_ideas, list):
            raise IdeaProviderError("LLM answer: 'ideas' is not a list")
        ideas = [self._idea(item) for item in raw_ideas[:n]]
        if not ideas:
            raise IdeaProviderError("LLM answer contained no ideas")
        return ideas

    def _idea(self, item: Any) -> CampaignIdea:
        if not isinstance(item, Mapping):
            raise IdeaProviderError("LLM answer: an idea is not an object")
        title = _text(item.get("title"))
        rationale = _text(item.get("rationale"))
        if not title or not rationale:
            raise IdeaProviderError("LLM answer: an idea lacks a title or rationale")
        budget = item.get("suggested_daily_budget")
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 <= budget < 1e9
        ):
            raise IdeaProviderError("LLM answer: suggested_daily_budget is not a non-negative number")
        digest = hashlib.sha256(title.lower().encode("utf-8")).hexdigest()[:16]
        return CampaignIdea(
            key=f"idea:llm:{digest}",
            title=title,
            rationale=rationale,
            platform=_text(item.get("platform")) or None,
            audience=_text(item.get("audience")) or None,
            creative_angle=_text(item.get("creative_angle")) or None,
            suggested_daily_budget=None if budget is None else float(budget),
            expected_impact=None,
            confidence=0.4,
            source=f"llm:{self.model}",
            evidence={"provider": self.name, "model": self.model},
        )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise IdeaProviderError("LLM answer: a text field is not a string")
    return value.strip()[:_MAX_FIELD]
