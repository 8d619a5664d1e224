"""Benchmark gate: every registered bench's smoke run, on this tree and on a baseline commit,
measured in the same run on the same machine; a figure that drops more than 30 % fails.

    .venv/bin/python bench/gate.py                       # baseline: merge-base with main, else HEAD~1
    .venv/bin/python bench/gate.py --baseline v0.3.0 --repeats 3 --only brain_eval
    OMNIFY_BENCH_BASELINE=none .venv/bin/python bench/gate.py   # smoke runs only, no comparison

Why a baseline from the same run: absolute timings on a shared 2-CPU runner swing by 2x with the
load, so a stored baseline (or a release asset) says nothing. Here the baseline commit is checked
out in a temporary git worktree and each bench runs alternately on both trees (A B A B ...); per
figure the best value of each side is kept (the least disturbed run) and the ratio
current / baseline (or baseline / current when lower is better) must stay >= 1 - max_drop.
Deterministic quality figures (seeded F1 scores) compare exactly the same way.

A bench plugs in with one ``Bench`` entry in ``BENCHES``: the script, the arguments of its smoke
mode (small sizes: seconds, not minutes), and the figures of its JSON output that are gated,
each with the direction that is better. The script must print one JSON object (its last output
line may be followed by nothing else but whitespace) and may exit non-zero when its own absolute
targets are missed (brain_eval does on a loaded machine): the gate compares, it does not judge
absolute numbers. A bench the baseline commit does not have yet (or cannot run) is reported and
not compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Figure:
    path: str  # dotted path into the bench's JSON output
    better: Better


@dataclass(frozen=True)
class Bench:
    name: str
    script: str  # relative to the repository root
    smoke_args: tuple[str, ...]
    figures: tuple[Figure, ...]
    env: dict[str, str] = field(default_factory=dict)


PG_URL = os.environ.get("OMNIFY_BENCH_DATABASE_URL") or os.environ.get(
    "OMNIFY_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)

BENCHES: tuple[Bench, ...] = (
    Bench(
        "brain_eval",
        "bench/brain_eval.py",
        ("--quick",),
        (
            # worst of the quick mode's seeds (bench/brain_eval.py's "worst" block)
            Figure("brain_run.seconds_median", "lower"),
            Figure("worst.fatigue_f1", "higher"),
            Figure("worst.anomaly_f1", "higher"),
            Figure("worst.anomaly_recall", "higher"),
            Figure("worst.budget_plan_fraction_of_oracle", "higher"),
            Figure("worst.budget_path_fraction_after_10_steps", "higher"),
            Figure("ltv_simulated.holdout_mae_purchases_12m", "lower"),
        ),
    ),
    Bench(
        "sync_backfill",
        "bench/sync_backfill.py",
        ("--days", "30"),
        (Figure("rows_per_second", "higher"), Figure("incremental_seconds", "lower"),
         # issue 16: the sync's write path over COPY of the same rows, both timed in the run
         Figure("sync_ingest_over_copy", "higher"), Figure("incremental_rows_written", "lower")),
        env={"OMNIFY_BENCH_DATABASE_URL": PG_URL},
    ),
    Bench(
        # issue 16: Omnify over a bare Starlette+asyncpg route, both measured in the run
        "api_load",
        "bench/api_load.py",
        ("--smoke", "--quiet-timeout", "20"),
        (Figure("summary.uncached_rps_ratio", "higher"), Figure("summary.cached_rps_ratio", "higher")),
        env={"OMNIFY_BENCH_DATABASE_URL": PG_URL},
    ),
    Bench(
        # issue 19: rule evaluation over a preloaded frame vs a plain-Python reference, both in the run
        "rules",
        "bench/rules.py",
        ("--rules", "200", "--ads", "200", "--baseline-rules", "10"),
        (Figure("speedup", "higher"),),
    ),
)


# ----------------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class Verdict:
    bench: str
    figure: str
    better: Better
    baseline: float | None
    current: float | None
    ratio: float | None  # >1 is better than the baseline, whatever the direction
    failed: bool
    note: str = ""


def lookup(doc: Any, path: str) -> float | None:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    if isinstance(doc, bool) or not isinstance(doc, int | float):
        return None
    return float(doc)


def best(values: Sequence[float], better: Better) -> float:
    return max(values) if better == "higher" else min(values)


def ratio_of(baseline: float, current: float, better: Better) -> float:
    """current relative to baseline, oriented so that >1 is an improvement.

    "Higher" figures may be signed (a budget plan's share of the oracle's uplift is negative
    when the plan loses money): the ratio is ``1 + (current - baseline) / |baseline|``, which
    is ``current / baseline`` for a positive baseline and still says "better" when a negative
    figure rises towards zero (a plain quotient would call -0.1 -> 0.2 a drop).
    """
    if better == "higher":
        if not baseline:
            return 1.0 if current == baseline else float("inf") if current > baseline else 0.0
        return 1.0 + (current - baseline) / abs(baseline)
    return baseline / current if current else (1.0 if current == baseline else float("inf"))


def judge(
    bench: Bench,
    current_runs: Sequence[dict[str, Any]],
    baseline_runs: Sequence[dict[str, Any]],
    max_drop: float,
) -> list[Verdict]:
    out: list[Verdict] = []
    for fig in bench.figures:
        cur = [v for v in (lookup(r, fig.path) for r in current_runs) if v is not None]
        if not cur:
            out.append(Verdict(bench.name, fig.path, fig.better, None, None, None, True,
                               "the current tree's output lacks this figure"))
            continue
        current = best(cur, fig.better)
        base = [v for v in (lookup(r, fig.path) for r in baseline_runs) if v is not None]
        if not base:
            out.append(Verdict(bench.name, fig.path, fig.better, None, current, None, False, "no baseline figure"))
            continue
        baseline = best(base, fig.better)
        ratio = ratio_of(baseline, current, fig.better)
        out.append(Verdict(bench.name, fig.path, fig.better, baseline, current, ratio, ratio < 1.0 - max_drop))
    return out


# ----------------------------------------------------------------------------- running
def parse_output(stdout: str) -> dict[str, Any] | None:
    """The bench's JSON object: the whole output, or its last top-level ``{ ... }`` block."""
    text = stdout.strip()
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, dict) else None
    except json.JSONDecodeError:
        pass
    start = text.rfind("\n{")
    if start < 0:
        return None
    try:
        doc = json.loads(text[start + 1:])
    except json.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def run_bench(tree: Path, bench: Bench, timeout: float) -> tuple[dict[str, Any] | None, str]:
    script = tree / bench.script
    if not script.exists():
        return None, f"{bench.script} does not exist in this tree"
    env = {**os.environ, **bench.env, "PYTHONPATH": str(tree / "src")}
    try:
        proc = subprocess.run(
            [sys.executable, str(script), *bench.smoke_args],
            cwd=tree, env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    doc = parse_output(proc.stdout)
    if doc is None:
        return None, f"exit {proc.returncode}, no JSON object on stdout: {proc.stderr.strip()[-1500:]}"
    return doc, f"exit {proc.returncode}"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def resolve_baseline(requested: str | None) -> str | None:
    """A commit id, or None for no comparison. Default: where this branch left main, or the
    previous commit when this *is* main."""
    if requested and requested.lower() == "none":
        return None
    candidates = [requested] if requested else []
    if not requested:
        head = git("rev-parse", "HEAD")
        for main in ("origin/main", "main"):
            try:
                base = git("merge-base", "HEAD", main)
            except subprocess.CalledProcessError:
                continue
            if base != head:
                candidates.append(base)
                break
        candidates.append("HEAD~1")
    for ref in candidates:
        try:
            return git("rev-parse", "--verify", f"{ref}^{{commit}}")
        except subprocess.CalledProcessError:
            continue
    raise SystemExit(f"bench gate: cannot resolve a baseline commit ({', '.join(candidates)}); "
                     "a shallow clone needs fetch-depth 0, or set OMNIFY_BENCH_BASELINE=none to skip")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=os.environ.get("OMNIFY_BENCH_BASELINE"),
                        help="git ref of the baseline (default: merge-base with main, else HEAD~1; 'none')")
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("OMNIFY_BENCH_REPEATS", "2")))
    parser.add_argument("--max-drop", type=float, default=0.30, help="largest tolerated relative drop")
    parser.add_argument("--only", action="append", default=[], help="bench name (repeatable)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per bench run")
    parser.add_argument("--json", type=Path, help="write the verdicts here too")
    args = parser.parse_args(argv)

    benches = [b for b in BENCHES if not args.only or b.name in args.only]
    unknown = set(args.only) - {b.name for b in BENCHES}
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(sorted(unknown))}")
    baseline = resolve_baseline(args.baseline)
    load = os.getloadavg()[0]
    print(f"bench gate: baseline {baseline[:12] if baseline else 'none'}, {args.repeats} run(s) per side, "
          f"max drop {args.max_drop:.0%}, load average {load:.2f}", flush=True)

    failed = False
    verdicts: list[Verdict] = []
    workdir = Path(tempfile.mkdtemp(prefix="omnify-bench-gate-"))
    base_tree = workdir / "baseline"
    try:
        if baseline:
            git("worktree", "add", "--detach", "--quiet", str(base_tree), baseline)
        for bench in benches:
            current_runs: list[dict[str, Any]] = []
            baseline_runs: list[dict[str, Any]] = []
            base_note = ""
            for i in range(args.repeats):
                doc, note = run_bench(ROOT, bench, args.timeout)
                print(f"  {bench.name} current #{i + 1}: {note}", flush=True)
                if doc is not None:
                    current_runs.append(doc)
                if baseline and (i == 0 or baseline_runs):
                    doc, base_note = run_bench(base_tree, bench, args.timeout)
                    print(f"  {bench.name} baseline #{i + 1}: {base_note}", flush=True)
                    if doc is not None:
                        baseline_runs.append(doc)
            if not current_runs:
                failed = True
                verdicts.append(Verdict(bench.name, "*", "higher", None, None, None, True,
                                        "the current tree's smoke run produced no figures"))
                continue
            if baseline and not baseline_runs:
                print(f"  {bench.name}: no baseline figures ({base_note}); not compared", flush=True)
            found = judge(bench, current_runs, baseline_runs, args.max_drop)
            failed |= any(v.failed for v in found)
            verdicts.extend(found)
    finally:
        if baseline and base_tree.exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=False)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"{'bench':<14} {'figure':<40} {'baseline':>12} {'current':>12} {'ratio':>7}  verdict")
    for v in verdicts:
        fmt = lambda x: "-" if x is None else f"{x:.4g}"  # noqa: E731
        verdict = "FAIL" if v.failed else "ok"
        print(f"{v.bench:<14} {v.figure:<40} {fmt(v.baseline):>12} {fmt(v.current):>12} {fmt(v.ratio):>7}  "
              f"{verdict} {v.note}".rstrip())
    if args.json:
        args.json.write_text(json.dumps({"baseline": baseline, "load_average_1m": load,
                                         "verdicts": [v.__dict__ for v in verdicts]}, indent=2))
    print(f"bench gate: {'FAILED' if failed else 'passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
