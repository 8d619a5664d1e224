"""The benchmark gate (bench/gate.py) fails on a real drop against a baseline commit measured in
the same run, and passes on noise: driven end to end on a scratch git repository."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gate", ROOT / "bench" / "gate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gate"] = module
    spec.loader.exec_module(module)
    return module


gate = _load()
FAKE = gate.Bench(
    "fake",
    "bench/fake.py",
    ("--smoke",),
    (gate.Figure("throughput.rows_per_second", "higher"), gate.Figure("seconds", "lower"),
     gate.Figure("quality.f1", "higher")),
)


def test_judge_tolerates_noise_and_fails_a_drop_in_either_direction() -> None:
    base = [{"throughput": {"rows_per_second": 1000}, "seconds": 2.0, "quality": {"f1": 0.9}}]
    noisy = [{"throughput": {"rows_per_second": 750}, "seconds": 2.7, "quality": {"f1": 0.9}}]
    assert not any(v.failed for v in gate.judge(FAKE, noisy, base, 0.30))
    slower = [{"throughput": {"rows_per_second": 1000}, "seconds": 3.0, "quality": {"f1": 0.9}}]
    [fig] = [v for v in gate.judge(FAKE, slower, base, 0.30) if v.failed]
    assert fig.figure == "seconds" and fig.ratio == pytest.approx(2 / 3)
    worse = [{"throughput": {"rows_per_second": 690}, "seconds": 2.0, "quality": {"f1": 0.5}}]
    assert {v.figure for v in gate.judge(FAKE, worse, base, 0.30) if v.failed} == {
        "throughput.rows_per_second", "quality.f1"}


def test_signed_higher_figures_rise_from_negative_baselines() -> None:
    assert gate.ratio_of(-0.1, 0.2, "higher") == pytest.approx(4.0)
    assert gate.ratio_of(-0.1, -0.2, "higher") == pytest.approx(0.0)
    assert gate.ratio_of(0.5, 0.25, "higher") == pytest.approx(0.5)
    assert gate.ratio_of(0.0, -0.1, "higher") == 0.0


def test_best_run_of_each_side_is_compared_and_missing_figures_are_handled() -> None:
    base = [{"throughput": {"rows_per_second": 500}, "seconds": 5.0},
            {"throughput": {"rows_per_second": 1000}, "seconds": 2.0}]
    cur = [{"throughput": {"rows_per_second": 400}, "seconds": 9.0},
           {"throughput": {"rows_per_second": 950}, "seconds": 2.1}]
    verdicts = {v.figure: v for v in gate.judge(FAKE, cur, base, 0.30)}
    assert verdicts["throughput.rows_per_second"].ratio == pytest.approx(0.95)
    assert verdicts["seconds"].ratio == pytest.approx(2 / 2.1)
    # quality.f1: in neither output -> the current tree must print it; a baseline without it is fine
    assert verdicts["quality.f1"].failed and "lacks" in verdicts["quality.f1"].note
    new_figure = gate.judge(FAKE, [{**cur[1], "quality": {"f1": 0.8}}], base, 0.30)
    assert not any(v.failed for v in new_figure)


def test_parse_output_takes_the_json_object_after_log_lines() -> None:
    assert gate.parse_output('{"a": 1}\n') == {"a": 1}
    assert gate.parse_output('warming up\nstill going\n{\n  "a": {"b": 2}\n}\n') == {"a": {"b": 2}}
    assert gate.parse_output("Traceback (most recent call last):\n  boom\n") is None


BENCH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    assert sys.argv[1:] == ["--smoke"], sys.argv
    rows = float((Path(__file__).parents[1] / "src" / "rows.txt").read_text())
    print("some log line")
    print(json.dumps({"throughput": {"rows_per_second": rows}, "seconds": 1000 / rows, "quality": {"f1": 0.9}}))
    """
)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo: Path, rows: float, message: str) -> None:
    (repo / "src" / "rows.txt").write_text(str(rows))
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    (repo / "src").mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "bench" / "fake.py").write_text(BENCH_SCRIPT)
    _commit(repo, 1000, "baseline")
    monkeypatch.setattr(gate, "ROOT", repo)
    monkeypatch.setattr(gate, "BENCHES", (FAKE,))
    return repo


def test_gate_fails_on_a_regressed_commit_and_passes_on_a_tolerable_one(repo: Path, tmp_path: Path) -> None:
    _commit(repo, 600, "40 % slower")
    out = tmp_path / "verdicts.json"
    assert gate.main(["--repeats", "1", "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["baseline"] == _git(repo, "rev-parse", "HEAD~1")
    failed = {v["figure"] for v in report["verdicts"] if v["failed"]}
    assert failed == {"throughput.rows_per_second", "seconds"}
    assert not (tmp_path / "repo" / ".git" / "worktrees").exists() or not any(
        (tmp_path / "repo" / ".git" / "worktrees").iterdir()), "the baseline worktree is left behind"

    _commit(repo, 800, "recovered to within 30 % of its parent")
    assert gate.main(["--repeats", "1"]) == 0


def test_gate_compares_against_the_branch_point_of_main(repo: Path) -> None:
    branch_point = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "-b", "feature")
    _commit(repo, 650, "regression")
    _commit(repo, 640, "unrelated change on top of it")
    assert gate.resolve_baseline(None) == branch_point
    assert gate.main(["--repeats", "1"]) == 1  # HEAD~1 alone would have hidden it


def test_new_bench_without_baseline_is_reported_not_failed(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "bench" / "fake.py").rename(repo / "bench" / "old.py")
    _commit(repo, 1000, "the bench does not exist at the baseline")
    (repo / "bench" / "old.py").rename(repo / "bench" / "fake.py")
    _commit(repo, 1000, "bench added")
    assert gate.main(["--repeats", "1"]) == 0
    assert "does not exist in this tree" in capsys.readouterr().out


def test_a_broken_current_bench_fails_and_none_skips_the_comparison(repo: Path) -> None:
    (repo / "bench" / "fake.py").write_text("raise SystemExit('crashed')\n")
    _commit(repo, 1000, "broken bench")
    assert gate.main(["--repeats", "1"]) == 1
    (repo / "bench" / "fake.py").write_text(BENCH_SCRIPT)
    _commit(repo, 10, "100x slower, but no baseline asked for")
    assert gate.main(["--repeats", "1", "--baseline", "none"]) == 0
