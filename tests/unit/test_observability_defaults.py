"""Logger and Metrics have the stage's names even when `crm.observability` is imported before
the stage's environment is set (a test worker that imported it in a unit test, a tool): a
Metrics without a namespace fails on its 100th metric, which once broke a webhook mid-suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_hundred_metrics_flush_without_the_stage_environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "CRM_", "AWS_"))}
    env["PYTHONPATH"] = str(ROOT / "layers" / "core" / "python")
    code = (
        "import io, contextlib\n"
        "from crm.observability import logger, metrics\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    for _ in range(150):\n"
        "        metrics.add_metric(name='Things', unit='Count', value=1)\n"
        "print(metrics.namespace, logger.service, 'ShopCRM' in out.getvalue())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ShopCRM", "crm", "True"]
