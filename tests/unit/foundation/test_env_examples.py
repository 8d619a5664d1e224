"""The two env examples document every setting, and the development one loads as is.

A setting added to the code without a line in ``.env.example`` and
``.env.production.example`` fails here, so operators never meet an undocumented knob.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from omnify.jobs.config import JobsSettings
from omnify.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = (ROOT / ".env.example", ROOT / ".env.production.example")


def _variables() -> list[str]:
    return ([f"OMNIFY_{name.upper()}" for name in Settings.model_fields]
            + [f"OMNIFY_JOBS_{name.upper()}" for name in JobsSettings.model_fields])


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_setting_is_documented(example: Path) -> None:
    text = example.read_text()
    missing = [v for v in _variables() if not re.search(rf"^#?\s*{v}=", text, re.MULTILINE)]
    assert missing == [], f"{example.name} does not document: {', '.join(missing)}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_no_unknown_variables(example: Path) -> None:
    known = set(_variables())
    named = set(re.findall(r"^#?\s*(OMNIFY_[A-Z0-9_]+)=", example.read_text(), re.MULTILINE))
    assert named - known == set(), "documented but not read by the code"


def test_development_example_loads_as_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _variables():
        monkeypatch.delenv(name, raising=False)
    loaded = Settings(_env_file=EXAMPLES[0])  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert loaded.env == "development" and loaded.database_url == defaults.database_url
    assert loaded.cors_origins == ["http://127.0.0.1:8000", "http://localhost:8000"]
    assert loaded.ideas_llm_base_url is None and loaded.rate_limit_enabled is True
