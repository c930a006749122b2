"""What every benchmark shares: the project's paths, the local stage's environment, robust
statistics for a noisy shared machine, and writing results."""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
LAYER_DIR = PROJECT_DIR / "layers" / "core" / "python"
RESULTS_DIR = PROJECT_DIR / "bench" / "results"
REGION = "us-east-1"
OPERATOR_HEADERS = {
    "Authorization": "Bearer local-operator-token",
    "Content-Type": "application/json",
}


def ensure_import_paths() -> None:
    """The API Lambda's import roots: the project (`/var/task`) and the core layer
    (`/opt/python`), ahead of anything installed."""
    for path in (str(LAYER_DIR), str(PROJECT_DIR)):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)


def local_stage_environment() -> dict[str, str]:
    """The variables the local stage's Lambdas run with (from `.chalice/config.json`), plus a
    region and dummy credentials, as the tests' `local_env` fixture sets them."""
    ensure_import_paths()
    from crm_local.provision import stage_environment

    env = dict(stage_environment("local", PROJECT_DIR))
    env.update(
        {
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
    )
    return env


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linearly interpolated between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary_ms(seconds: Iterable[float]) -> dict[str, Any]:
    """Median, p90, p99, min and max of durations given in seconds, in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
    }


# A row of the summary table: (figure, value, target, verdict); target and verdict may be "".
Row = tuple[str, str, str, str]
OK, MISSED, FAILED = "OK", "MISSED", "FAILED"


def verdict(met: bool | None, failed: int = 0, sample: str | None = None) -> str:
    """The verdict on a figure. A target is judged only on operations that all succeeded: when
    any measured operation failed (an unexpected status, a workflow that did not succeed, an
    inexact report), the figure says nothing about the code (a request that fails early makes
    fewer calls) and the verdict is FAILED, with how many failed and what one of them saw.
    `met` None: the figure has no target, and only a failure gives it a verdict."""
    if failed:
        return f"{FAILED} ({failed} failed, e.g. {sample or '?'})"
    if met is None:
        return ""
    return OK if met else MISSED


def verdict_word(text: str) -> str:
    """OK, MISSED, FAILED or "" from a verdict."""
    return text.split(" ", 1)[0] if text else ""


@dataclass
class Failures:
    """The measured operations behind a figure, and those that did not succeed."""

    operations: int = 0
    failed: int = 0
    sample: str | None = None

    def check(self, ok: bool, seen: str) -> bool:
        """Count one operation; `seen` (its status, its answer) is kept if it is the first
        that failed."""
        self.operations += 1
        if not ok:
            self.failed += 1
            if self.sample is None:
                self.sample = seen
        return ok

    def add(self, other: Failures | Mapping[str, Any]) -> Failures:
        failed = other.failed if isinstance(other, Failures) else int(other.get("failed", 0))
        operations = (
            other.operations if isinstance(other, Failures) else int(other.get("operations", 0))
        )
        sample = other.sample if isinstance(other, Failures) else other.get("sample")
        self.operations += operations
        self.failed += failed
        if self.sample is None and failed:
            self.sample = sample
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"operations": self.operations, "failed": self.failed, "sample": self.sample}


def judged(met: bool | None, failures: Failures | Mapping[str, Any] | None) -> str:
    """`verdict` of a figure from the failures (a `Failures` or its `as_dict()`) behind it."""
    f = Failures().add(failures) if failures is not None else Failures()
    return verdict(met, f.failed, f.sample)


def ratio(numerator: float, denominator: float) -> float | None:
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return None
    return round(numerator / denominator, 3)


def write_result(name: str, result: Mapping[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(
        json.dumps(result, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8"
    )
    return path


def machine() -> dict[str, Any]:
    """Where and when the figures were taken (load average: how busy the machine was)."""
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "cpus": os.cpu_count(),
        "platform": sys.platform,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
