"""Benchmarks (`python -m bench [--quick]`): shared helpers — machine facts, percentiles, RSS, results."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS",
    "command_line",
    "machine_facts",
    "pct",
    "peak_rss_mib",
    "pin_to",
    "rss_mib",
    "write_result",
]

RESULTS = Path(__file__).parent / "results"
PACKAGES = ("azure-ai-voicelive", "aiohttp", "av", "soxr", "numpy", "azure-storage-blob")


def machine_facts() -> dict[str, Any]:
    """Cores, CPU model, Python and the versions of the packages on the hot paths."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


def command_line() -> str:
    """The command that produced a result, as typed from the repo root."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(".py"):
        module = Path(argv[0]).resolve().relative_to(Path(__file__).resolve().parents[1])
        return "uv run python -m " + ".".join(module.with_suffix("").parts) + " " + " ".join(argv[1:])
    return "uv run python " + " ".join(argv)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile `q` in [0, 100]; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100.0 * len(ordered))) - 1]


def pin_to(index: int) -> int | None:
    """Pin this process to the `index`-th CPU it may run on; returns the CPU, or None when impossible."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    cpu = cpus[index % len(cpus)]
    os.sched_setaffinity(0, {cpu})
    return cpu


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return math.nan


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return math.nan


def write_result(name: str, result: dict[str, Any], out: Path | None = None) -> Path:
    """Write one benchmark's JSON (with machine facts and the command) to bench/results/<name>.json."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"benchmark": name, "command": command_line(), "machine": machine_facts(), **result}
    path.write_text(json.dumps(body, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: object) -> object:
    return str(value)
