"""Compare benchmark results with the last release's (the perf-regression gate of perf.yml).

Each script in bench/ prints one JSON object. ``merge`` combines them into one document keyed by
script name; ``compare`` flattens baseline and current documents to dotted paths and judges every
numeric figure whose *name* says which direction is better:

* lower is better: names containing seconds, _ms, latency, duration, elapsed, time, error, mae,
  rmse, false_positive, fpr
* higher is better: names containing per_second, rps, throughput, ops, accuracy, precision,
  recall, f1, auc, hit_rate, coverage, detected

Anything else (counts, seeds, sizes) is reported but never fails the gate, because it says nothing
about quality. Timing figures get a wider tolerance than quality figures: shared CI runners are
noisy, model quality is not.

    python deploy/ci/compare_bench.py merge bench-results/*.json > bench-results.json
    python deploy/ci/compare_bench.py compare baseline.json bench-results.json [--summary FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

LOWER = ("seconds", "_ms", "latency", "duration", "elapsed", "time", "error", "mae", "rmse", "false_positive", "fpr")
HIGHER = (
    "per_second",
    "rps",
    "throughput",
    "ops",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "auc",
    "hit_rate",
    "coverage",
    "detected",
)
TIMING = ("seconds", "_ms", "latency", "duration", "elapsed", "time", "per_second", "rps", "throughput", "ops")

Direction = Literal["lower", "higher", "info"]


@dataclass(frozen=True)
class Verdict:
    path: str
    baseline: float
    current: float
    direction: Direction
    change: float  # relative, signed: +0.10 = 10 % larger
    regressed: bool


def flatten(doc: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves by dotted path; booleans are not numbers here."""
    out: dict[str, float] = {}
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out.update(flatten(value, f"{prefix}[{i}]"))
    elif isinstance(doc, int | float) and not isinstance(doc, bool):
        out[prefix] = float(doc)
    return out


def direction(path: str) -> Direction:
    name = path.rsplit(".", 1)[-1].lower()
    # "per_second" must win over "second": check higher-is-better first.
    if any(token in name for token in HIGHER):
        return "higher"
    if any(token in name for token in LOWER):
        return "lower"
    return "info"


def judge(
    baseline: dict[str, float], current: dict[str, float], timing_tol: float, quality_tol: float
) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for path in sorted(baseline.keys() & current.keys()):
        base, cur = baseline[path], current[path]
        way = direction(path)
        change = (cur - base) / abs(base) if base else (0.0 if cur == base else float("inf"))
        name = path.rsplit(".", 1)[-1].lower()
        tol = timing_tol if any(token in name for token in TIMING) else quality_tol
        if way == "lower":
            regressed = change > tol
        elif way == "higher":
            regressed = change < -tol
        else:
            regressed = False
        verdicts.append(Verdict(path, base, cur, way, change, regressed))
    return verdicts


def report(verdicts: list[Verdict], missing: list[str]) -> str:
    lines = ["| figure | baseline | current | change | better | verdict |", "|---|---:|---:|---:|---|---|"]
    for v in verdicts:
        mark = "REGRESSION" if v.regressed else ("-" if v.direction == "info" else "ok")
        lines.append(f"| `{v.path}` | {v.baseline:.6g} | {v.current:.6g} | {v.change:+.1%} | {v.direction} | {mark} |")
    for path in missing:
        lines.append(f"| `{path}` | present | missing | | | REGRESSION |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    merge = sub.add_parser("merge", help="combine per-script JSON files into one document")
    merge.add_argument("files", nargs="+", type=Path)
    cmp_ = sub.add_parser("compare", help="fail on regressions against a baseline")
    cmp_.add_argument("baseline", type=Path)
    cmp_.add_argument("current", type=Path)
    cmp_.add_argument("--timing-tolerance", type=float, default=0.20)
    cmp_.add_argument("--quality-tolerance", type=float, default=0.02)
    cmp_.add_argument("--summary", type=Path, help="append a Markdown table here (GITHUB_STEP_SUMMARY)")
    args = parser.parse_args(argv)

    if args.command == "merge":
        merged = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in args.files}
        print(json.dumps(merged, indent=2, sort_keys=True))
        return 0

    baseline = flatten(json.loads(args.baseline.read_text(encoding="utf-8")))
    current = flatten(json.loads(args.current.read_text(encoding="utf-8")))
    verdicts = judge(baseline, current, args.timing_tolerance, args.quality_tolerance)
    # A judged figure that disappeared is a regression: a benchmark silently dropping out must not pass.
    missing = sorted(p for p in baseline.keys() - current.keys() if direction(p) != "info")
    table = report(verdicts, missing)
    print(table)
    if args.summary:
        with args.summary.open("a", encoding="utf-8") as fh:
            fh.write("### Benchmarks vs last release\n\n" + table)
    regressions = [v.path for v in verdicts if v.regressed] + missing
    if regressions:
        print(f"{len(regressions)} regression(s): " + ", ".join(regressions), file=sys.stderr)
        return 1
    judged = sum(1 for v in verdicts if v.direction != "info")
    print(f"no regression in {judged} judged figures ({len(verdicts)} compared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
