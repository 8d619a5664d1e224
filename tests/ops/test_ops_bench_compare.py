"""The perf gate (deploy/ci/compare_bench.py) must fail on a real regression and pass on noise."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compare_bench", ROOT / "deploy" / "ci" / "compare_bench.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_bench"] = module
    spec.loader.exec_module(module)
    return module


cb = _load()

BASE = {"brain_eval": {"fatigue": {"precision": 0.90, "recall": 0.80, "seconds": 10.0, "n_series": 500}}}


def _run(tmp_path: Path, current: dict[str, object]) -> int:
    (tmp_path / "base.json").write_text(json.dumps(BASE))
    (tmp_path / "cur.json").write_text(json.dumps(current))
    return int(cb.main(["compare", str(tmp_path / "base.json"), str(tmp_path / "cur.json")]))


def test_direction_names() -> None:
    assert cb.direction("a.requests_per_second") == "higher"
    assert cb.direction("a.p95_latency_ms") == "lower"
    assert cb.direction("a.seconds") == "lower"
    assert cb.direction("a.n_series") == "info"


def test_noise_within_tolerance_passes(tmp_path: Path) -> None:
    cur = {"brain_eval": {"fatigue": {"precision": 0.895, "recall": 0.81, "seconds": 11.5, "n_series": 900}}}
    assert _run(tmp_path, cur) == 0


def test_slower_beyond_tolerance_fails(tmp_path: Path) -> None:
    cur = {"brain_eval": {"fatigue": {"precision": 0.90, "recall": 0.80, "seconds": 13.0, "n_series": 500}}}
    assert _run(tmp_path, cur) == 1


def test_quality_drop_fails(tmp_path: Path) -> None:
    cur = {"brain_eval": {"fatigue": {"precision": 0.85, "recall": 0.80, "seconds": 10.0, "n_series": 500}}}
    assert _run(tmp_path, cur) == 1


def test_missing_judged_figure_fails(tmp_path: Path) -> None:
    cur = {"brain_eval": {"fatigue": {"precision": 0.90, "seconds": 10.0}}}
    assert _run(tmp_path, cur) == 1


def test_merge_keys_by_script_name(tmp_path: Path, capsys: object) -> None:
    (tmp_path / "brain_eval.json").write_text('{"x": 1}')
    (tmp_path / "api_load.json").write_text('{"rps": 2}')
    assert cb.main(["merge", str(tmp_path / "brain_eval.json"), str(tmp_path / "api_load.json")]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert json.loads(out) == {"brain_eval": {"x": 1}, "api_load": {"rps": 2}}
