"""`python -m bench [--quick]`: run every benchmark in order, each in its own process, then write the docs.

Each benchmark writes bench/results/<name>.json; this runner adds bench/results/run.json (what ran, with
which command, how long, exit code, load average before/after) and regenerates docs/benchmarks.md from
all the JSON files (`bench/report.py`). A failing benchmark is recorded and the rest still run.
`--quick` targets ≤ 5 minutes on a 2-core machine; the full set takes about an hour (10-minute pacing runs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import RESULTS, machine_facts
from bench.report import render

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True, kw_only=True)
class Bench:
    """One benchmark: its results file and its arguments in quick and full mode."""

    name: str
    target: list[str]
    quick: list[str]
    full: list[str]


BENCHES = [
    Bench(name="pacing", target=["bench/bench_pacing.py"], quick=["--seconds", "8"], full=[]),
    Bench(name="decode", target=["bench/bench_decode.py"], quick=["--quick"], full=[]),
    Bench(
        name="simulator_sink",
        target=["bench/bench_simulator_sink.py"],
        quick=["--sessions", "300", "--seconds", "10"],
        full=["--sessions", "300", "--seconds", "60"],
    ),
    Bench(name="capacity", target=["-m", "bench.bench_capacity"], quick=["--quick"], full=[]),
    Bench(name="memory", target=["-m", "bench.bench_memory"], quick=["--quick"], full=[]),
    Bench(name="overhead", target=["-m", "bench.bench_overhead"], quick=["--quick"], full=[]),
    Bench(name="soak", target=["-m", "bench.bench_soak"], quick=["--quick"], full=[]),
]


def _command(bench: Bench, quick: bool) -> list[str]:
    return [sys.executable, *bench.target, *(bench.quick if quick else bench.full)]


def _shown(bench: Bench, quick: bool) -> str:
    """The command as a person would type it from the repo root."""
    return " ".join(["uv run python", *bench.target, *(bench.quick if quick else bench.full)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short set (≤ 5 min on 2 cores)")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run only these")
    parser.add_argument("--report-only", action="store_true", help="just regenerate docs/benchmarks.md")
    args = parser.parse_args(argv)
    runs = []
    if not args.report_only:
        started = time.monotonic()
        for bench in BENCHES:
            if args.only and bench.name not in args.only:
                continue
            load_before = os.getloadavg()[0]
            print(f"== {bench.name}: {_shown(bench, args.quick)}", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            code = subprocess.call(_command(bench, args.quick), cwd=ROOT)
            runs.append(
                {
                    "name": bench.name,
                    "command": _shown(bench, args.quick),
                    "exit_code": code,
                    "seconds": round(time.monotonic() - t0, 1),
                    "loadavg_1min_before": round(load_before, 2),
                    "loadavg_1min_after": round(os.getloadavg()[0], 2),
                }
            )
            print(f"== {bench.name}: exit {code} in {runs[-1]['seconds']} s", file=sys.stderr, flush=True)
        summary = {
            "mode": "quick" if args.quick else "full",
            "command": "uv run python -m bench" + (" --quick" if args.quick else ""),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "total_s": round(time.monotonic() - started, 1),
            "machine": machine_facts(),
            "runs": runs,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(render(RESULTS))
    print(f"wrote {DOCS}", file=sys.stderr)
    return 1 if any(r["exit_code"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
