"""What importing app.py costs the API Lambda's cold start: no heavy data libraries, and no
AWS client built at import time."""

import json
import os
import subprocess
import sys

from tests.conftest import LOCAL_ENV, PROJECT_DIR

PROBE = """
import json, sys
import botocore.session
created = []
original = botocore.session.Session.create_client
def spy(self, *a, **k):
    created.append(a[0] if a else k.get("service_name"))
    return original(self, *a, **k)
botocore.session.Session.create_client = spy
import app
print(json.dumps({"heavy": sorted(m for m in ("pandas", "numpy", "pyarrow") if m in sys.modules),
                  "clients": created, "routes": len(app.app.routes)}))
"""


def _import_app(env_overrides=None):
    env = {
        **os.environ,
        **LOCAL_ENV,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR), str(PROJECT_DIR / "layers/core/python")]),
        **(env_overrides or {}),
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_importing_app_loads_no_pandas_numpy_or_pyarrow_and_builds_no_client():
    result = _import_app()
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["heavy"] == []
    assert probe["clients"] == []
    assert probe["routes"] > 0


def test_a_stage_with_a_missing_variable_fails_at_import():
    result = _import_app({"CRM_CUSTOMERS_TABLE": ""})
    assert result.returncode != 0
    assert "CRM_CUSTOMERS_TABLE" in result.stderr
