"""Cold start of the API Lambda: `import app` in fresh interpreters, against `import boto3,
chalice` measured in the same run.

Every sample is a new `sys.executable` process (cwd = project root, sys.path = project root and
layers/core/python first, as /var/task and /opt/python are on Lambda) with only the local
stage's environment, a region and dummy credentials. Three variants run interleaved, their
order rotating every round, so that drift on the shared machine hits all of them alike:

- `python`: nothing imported (the interpreter's own start, for context);
- `floor`:  `import boto3, chalice` (what any Chalice app on boto3 pays anyway);
- `app`:    `import app` (what the API Lambda does at init).

Inside the child, `time.perf_counter()` brackets the import only. The process figure is the
monotonic clock from just before the spawn to just after the import (interpreter start
included, exit excluded). After the measured import, `app` children also report, outside the
measured window: which heavy modules are loaded; the import time of modules that a first
upsert needs but `import app` did not load; and a first and a second `POST /customers` through
`app(event, context)` with AWS answered by canned responses (no network), so the first
request's remaining one-off cost (botocore client creation, data loaded on first use) shows as
first minus second.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from bench.common import (
    LAYER_DIR,
    PROJECT_DIR,
    local_stage_environment,
    machine,
    ratio,
    summary_ms,
    write_result,
)

NAME = "cold_start"
TARGET_RATIO = 1.3
VARIANTS = ("python", "floor", "app")
HEAVY = (
    "pandas",
    "numpy",
    "pyarrow",
    "pydantic",
    "phonenumbers",
    "pynamodb",
    "boto3",
    "botocore",
    "moto",
)
# What a first upsert may import lazily (timed one by one, when `import app` left them out).
FIRST_REQUEST_MODULES = (
    "crm.store.customers",
    "crm.store.models",
    "pynamodb.models",
    "pynamodb.transactions",
    "phonenumbers",
)
FLOOR_PACKAGES = ("boto3", "chalice")
MARK = "BENCH_COLD_START "

# The child. argv: variant, extras ("1" to run the after-import part), then sys.path entries.
# Nothing but `time` and `sys` is imported before the measured window.
CHILD = r"""
import time
M0 = time.clock_gettime(time.CLOCK_MONOTONIC)
import sys
variant, extras, roots = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
sys.path[:0] = roots
before = len(sys.modules)
t0 = time.perf_counter()
if variant == "app":
    import app
elif variant == "floor":
    import boto3, chalice
t1 = time.perf_counter()
M1 = time.clock_gettime(time.CLOCK_MONOTONIC)
out = {"variant": variant, "import_s": t1 - t0, "mono_start": M0, "mono_imported": M1,
       "modules": len(sys.modules), "modules_added": len(sys.modules) - before}
if variant == "app" and extras:
    out["heavy"] = {m: m in sys.modules for m in HEAVY}
    lazy = {}
    for name in FIRST_REQUEST_MODULES:
        if name in sys.modules:
            lazy[name] = {"loaded_by_app": True, "import_ms": 0.0}
            continue
        t = time.perf_counter()
        try:
            __import__(name)
            lazy[name] = {"loaded_by_app": False,
                          "import_ms": (time.perf_counter() - t) * 1000}
        except Exception as exc:
            lazy[name] = {"loaded_by_app": False, "error": repr(exc)}
    out["lazy_imports"] = lazy
    out.update(first_requests(app.app))
import json
print(MARK + json.dumps(out), flush=True)
"""

# Defined in the child before CHILD runs (outside the measured window, nothing imported).
CHILD_HELPERS = r'''
def first_requests(chalice_app):
    """Two POST /customers through the Lambda entry point, AWS answered with canned
    responses (no identity owned, write accepted): the first pays every one-off cost, the
    second not."""
    import io, json, sys, time
    import botocore.session
    from botocore.awsrequest import AWSResponse

    class Raw:
        def __init__(self, body):
            self.body = body
        def stream(self, **_):
            yield self.body

    calls = []

    def canned(request, event_name, **_):
        operation = event_name.split(".", 1)[1]
        calls.append(operation)
        answer = {}
        if operation.endswith(".BatchGetItem"):  # nothing found: a new customer
            asked = json.loads(request.body or b"{}").get("RequestItems", {})
            answer = {"Responses": {table: [] for table in asked}, "UnprocessedKeys": {}}
        return AWSResponse(request.url, 200, {"x-amzn-requestid": "bench"},
                           Raw(json.dumps(answer).encode()))

    original = botocore.session.Session.create_client

    clients = []

    def create_client(self, *args, **kwargs):
        t = time.perf_counter()
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-send.*.*", canned)
        clients.append(time.perf_counter() - t)
        return client

    botocore.session.Session.create_client = create_client

    class Context:
        function_name = "shop-crm-local-api_handler"
        function_version = "$LATEST"
        memory_limit_in_mb = 512
        invoked_function_arn = ("arn:aws:lambda:us-east-1:123456789012:function:"
                                "shop-crm-local-api_handler")
        aws_request_id = "bench"
        log_group_name = "/aws/lambda/shop-crm-local-api_handler"
        log_stream_name = "bench"

        @staticmethod
        def get_remaining_time_in_millis():
            return 30000

    def event(n):
        body = {"email": f"cold{n}@example.com", "phone": f"+8613700000{n:03d}",
                "first_name": "Ada", "last_name": "Bench"}
        return {
            "resource": "/customers", "path": "/customers", "httpMethod": "POST",
            "headers": {"content-type": "application/json",
                        "authorization": "Bearer local-operator-token"},
            "multiValueHeaders": None, "queryStringParameters": None,
            "multiValueQueryStringParameters": None, "pathParameters": None,
            "stageVariables": None, "isBase64Encoded": False, "body": json.dumps(body),
            "requestContext": {"resourcePath": "/customers", "httpMethod": "POST",
                               "path": "/api/customers", "stage": "api",
                               "requestId": f"bench-{n}", "identity": {"sourceIp": "127.0.0.1"}},
        }

    out = {}
    real_stdout = sys.stdout
    for n, label in ((1, "first"), (2, "second")):
        modules = set(sys.modules)
        del calls[:]
        del clients[:]
        sys.stdout = io.StringIO()  # EMF metrics and logs of the request
        t = time.perf_counter()
        try:
            response = chalice_app(event(n), Context())
            status = response.get("statusCode")
        except Exception as exc:
            status = repr(exc)
        elapsed = time.perf_counter() - t
        sys.stdout = real_stdout
        packages = {}
        for name in set(sys.modules) - modules:
            top = name.split(".", 1)[0]
            packages[top] = packages.get(top, 0) + 1
        out[label + "_request"] = {"ms": elapsed * 1000, "status": status,
                                   "aws_calls": list(calls), "new_modules": packages,
                                   "clients_created": len(clients),
                                   "client_creation_ms": sum(clients) * 1000}
    botocore.session.Session.create_client = original
    return out
'''


def _child_env() -> dict[str, str]:
    """Only what the Lambda would have: the stage's variables, a region, dummy credentials,
    no AWS config files, no endpoint override, no PYTHONPATH."""
    home = tempfile.mkdtemp(prefix="bench-cold-")
    env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TZ") if key in os.environ}
    env.update(local_stage_environment())
    env.update(
        {
            "HOME": home,
            "AWS_CONFIG_FILE": os.path.join(home, "config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials"),
        }
    )
    return env


def _child_source() -> str:
    constants = (
        f"HEAVY = {HEAVY!r}\nFIRST_REQUEST_MODULES = {FIRST_REQUEST_MODULES!r}\nMARK = {MARK!r}\n"
    )
    # The helpers are defined first but only executed after the measured import.
    return CHILD.replace("import sys\n", "import sys\n" + constants + CHILD_HELPERS, 1)


def _spawn(
    variant: str, env: Mapping[str, str], extras: bool, importtime: bool = False
) -> tuple[dict[str, Any], str]:
    args = [sys.executable]
    if importtime:
        args += ["-X", "importtime"]
    args += [
        "-c",
        _child_source(),
        variant,
        "1" if extras else "0",
        str(PROJECT_DIR),
        str(LAYER_DIR),
    ]
    spawn = time.clock_gettime(time.CLOCK_MONOTONIC)
    proc = subprocess.run(
        args,
        cwd=PROJECT_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{variant} child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    sample = json.loads(lines[-1][len(MARK) :])
    sample["process_to_imported_s"] = sample["mono_imported"] - spawn
    sample["interpreter_start_s"] = sample["mono_start"] - spawn
    return sample, proc.stderr


# -- -X importtime ------------------------------------------------------------------------------

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)\s*$")


def parse_importtime(stderr: str) -> list[tuple[str, int, float, float]]:
    """(module, depth, self_ms, cumulative_ms) per line of `-X importtime` output."""
    rows = []
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if match:
            self_us, cumulative_us, indent, name = match.groups()
            rows.append(
                (name, (len(indent) - 1) // 2, int(self_us) / 1000, int(cumulative_us) / 1000)
            )
    return rows


def _measured_part(
    rows: list[tuple[str, int, float, float]], root: set[str]
) -> list[tuple[str, int, float, float]]:
    """The lines inside the measured import: the top-level entries named in `root` and
    everything nested under them (importtime prints children before their parent)."""
    keep: list[tuple[str, int, float, float]] = []
    pending: list[tuple[str, int, float, float]] = []
    for row in rows:
        pending.append(row)
        if row[1] == 0:
            if row[0] in root:
                keep.extend(pending)
            pending = []
    return keep


def importtime_profile(env: Mapping[str, str], repeats: int = 3) -> dict[str, Any]:
    """Where `import app` spends its time, by top-level package (self time summed, median of
    `repeats` runs), and which of it the floor (`import boto3, chalice`) does not pay."""
    per_variant: dict[str, list[dict[str, float]]] = {"app": [], "floor": []}
    cumulative: list[dict[str, tuple[int, float]]] = []
    for _ in range(repeats):
        for variant, root in (("floor", {"boto3", "chalice"}), ("app", {"app"})):
            _, stderr = _spawn(variant, env, extras=False, importtime=True)
            rows = _measured_part(parse_importtime(stderr), root)
            by_package: dict[str, float] = defaultdict(float)
            for name, _depth, self_ms, _cum in rows:
                by_package[name.split(".", 1)[0]] += self_ms
            per_variant[variant].append(dict(by_package))
            if variant == "app":
                cumulative.append({name: (depth, cum) for name, depth, _s, cum in rows})

    def medians(samples: list[dict[str, float]]) -> dict[str, float]:
        names = {n for s in samples for n in s}
        return {n: round(statistics.median(s.get(n, 0.0) for s in samples), 2) for n in names}

    app, floor = medians(per_variant["app"]), medians(per_variant["floor"])
    beyond = {
        name: {
            "app_self_ms": ms,
            "floor_self_ms": floor.get(name, 0.0),
            "extra_ms": round(ms - floor.get(name, 0.0), 2),
        }
        for name, ms in app.items()
    }
    top_beyond = sorted(beyond.items(), key=lambda kv: -kv[1]["extra_ms"])
    names = {n for c in cumulative for n in c}
    tree = []
    for name in names:
        depth = next(c[name][0] for c in cumulative if name in c)
        if 1 <= depth <= 3:
            cum = statistics.median(c[name][1] if name in c else 0.0 for c in cumulative)
            tree.append({"module": name, "depth_under_app": depth, "cumulative_ms": round(cum, 2)})
    tree.sort(key=lambda r: -r["cumulative_ms"])
    return {
        "repeats": repeats,
        "note": "self time summed by top-level package inside the measured import; "
        "-X importtime itself inflates every figure",
        "app_total_self_ms": round(sum(app.values()), 2),
        "floor_total_self_ms": round(sum(floor.values()), 2),
        "app_by_package_ms": dict(sorted(app.items(), key=lambda kv: -kv[1])[:30]),
        "floor_by_package_ms": dict(sorted(floor.items(), key=lambda kv: -kv[1])[:30]),
        "top_beyond_floor": [
            {"package": n, **v} for n, v in top_beyond[:15] if v["extra_ms"] > 0.2
        ],
        "top_cumulative_under_app": tree[:25],
    }


# -- the benchmark ------------------------------------------------------------------------------


def run(n: int = 25, warmup: int = 2, importtime_repeats: int = 3) -> dict[str, Any]:
    env = _child_env()
    started = time.perf_counter()
    for _ in range(warmup):  # page cache and bytecode are warm for every variant alike
        for variant in VARIANTS:
            _spawn(variant, env, extras=variant == "app")
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for i in range(n):
        shift = i % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            samples[variant].append(_spawn(variant, env, extras=variant == "app")[0])

    figures: dict[str, Any] = {}
    for variant, runs in samples.items():
        figures[variant] = {
            "import": summary_ms(s["import_s"] for s in runs),
            "process_to_imported": summary_ms(s["process_to_imported_s"] for s in runs),
            "interpreter_start": summary_ms(s["interpreter_start_s"] for s in runs),
            "modules_loaded": runs[-1]["modules"],
            "modules_added_by_import": runs[-1]["modules_added"],
        }
    app_runs = samples["app"]
    paired = [
        a["import_s"] / f["import_s"] for a, f in zip(app_runs, samples["floor"], strict=True)
    ]
    import_ratio = ratio(
        figures["app"]["import"]["median_ms"], figures["floor"]["import"]["median_ms"]
    )
    process_ratio = ratio(
        figures["app"]["process_to_imported"]["median_ms"],
        figures["floor"]["process_to_imported"]["median_ms"],
    )

    last = app_runs[-1]
    lazy = {}
    for name in FIRST_REQUEST_MODULES:
        entries = [s["lazy_imports"][name] for s in app_runs]
        timed = [e["import_ms"] / 1000 for e in entries if "import_ms" in e]
        lazy[name] = {
            "loaded_by_app": entries[-1].get("loaded_by_app", False),
            **({"error": entries[-1]["error"]} if "error" in entries[-1] else {}),
            "import_ms_median": summary_ms(timed).get("median_ms"),
        }
    lazy_total = summary_ms(
        sum(e.get("import_ms", 0.0) for e in s["lazy_imports"].values()) / 1000 for s in app_runs
    )
    first = summary_ms(s["first_request"]["ms"] / 1000 for s in app_runs)
    second = summary_ms(s["second_request"]["ms"] / 1000 for s in app_runs)
    extra = summary_ms(
        (s["first_request"]["ms"] - s["second_request"]["ms"]) / 1000 for s in app_runs
    )
    clients = summary_ms(s["first_request"]["client_creation_ms"] / 1000 for s in app_runs)
    first_request = {
        "lazy_imports": lazy,
        "lazy_imports_total": lazy_total,
        "first_request": first,
        "second_request": second,
        "first_minus_second": extra,
        "first_request_extra_total_median_ms": round(
            lazy_total["median_ms"] + extra["median_ms"], 2
        ),
        "first_request_clients_created": last["first_request"]["clients_created"],
        "first_request_client_creation": clients,
        "first_request_status": last["first_request"]["status"],
        "second_request_status": last["second_request"]["status"],
        "aws_calls_answered_canned": last["first_request"]["aws_calls"],
        "first_request_new_modules_by_package": last["first_request"]["new_modules"],
        "note": "lazy imports are timed after `import app`; the first request then runs with "
        "them loaded, so its extra cost over the second is client creation and other "
        "first-use work. AWS answered with canned responses, no network.",
    }

    profile = importtime_profile(env, importtime_repeats)
    result = {
        "name": NAME,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "n": n,
        "order": "interleaved; variant order rotates each round",
        "import_ratio_app_vs_floor": import_ratio,
        "import_ratio_paired_median": round(statistics.median(paired), 3),
        "process_ratio_app_vs_floor": process_ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": import_ratio is not None and import_ratio <= TARGET_RATIO,
        "import_app_minus_floor_median_ms": round(
            figures["app"]["import"]["median_ms"] - figures["floor"]["import"]["median_ms"], 2
        ),
        "variants": figures,
        "heavy_modules_after_import_app": last["heavy"],
        "first_request": first_request,
        "importtime": profile,
    }
    write_result(NAME, result)
    return result


def summary_rows(result: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    v = result["variants"]
    for variant, label in (("app", "import app"), ("floor", "import boto3, chalice")):
        imp, proc = v[variant]["import"], v[variant]["process_to_imported"]
        rows.append(
            (
                f"{label} (n={imp['n']})",
                f"import median {imp['median_ms']:.1f} ms (p90 {imp['p90_ms']:.1f}, "
                f"min {imp['min_ms']:.1f}); process {proc['median_ms']:.1f} ms "
                f"(p90 {proc['p90_ms']:.1f})",
                "",
            )
        )
    proc = v["python"]["process_to_imported"]
    rows.append(
        (
            f"empty interpreter (n={proc['n']})",
            f"process {proc['median_ms']:.1f} ms (p90 {proc['p90_ms']:.1f}, "
            f"min {proc['min_ms']:.1f})",
            "",
        )
    )
    verdict = f"<= {result['target_ratio']}: " + ("OK" if result["meets_target"] else "MISSED")
    rows.append(
        (
            "ratio import app / floor",
            f"{result['import_ratio_app_vs_floor']} (paired median "
            f"{result['import_ratio_paired_median']}; +"
            f"{result['import_app_minus_floor_median_ms']} ms)",
            verdict,
        )
    )
    rows.append(("ratio process app / floor", f"{result['process_ratio_app_vs_floor']}", ""))
    heavy = result["heavy_modules_after_import_app"]
    rows.append(
        (
            "heavy modules after import app",
            ", ".join(k for k, loaded in heavy.items() if loaded) or "none",
            "",
        )
    )
    fr = result["first_request"]
    lazy = ", ".join(
        f"{k} {d['import_ms_median']} ms"
        for k, d in fr["lazy_imports"].items()
        if not d["loaded_by_app"]
    )
    rows.append(
        (
            "first request: lazy imports",
            f"{fr['lazy_imports_total']['median_ms']:.1f} ms ({lazy or 'none'})",
            "",
        )
    )
    rows.append(
        (
            "first request: first vs second POST",
            f"{fr['first_request']['median_ms']:.1f} vs "
            f"{fr['second_request']['median_ms']:.1f} ms (extra "
            f"{fr['first_minus_second']['median_ms']:.1f}); status "
            f"{fr['first_request_status']}/{fr['second_request_status']}",
            "",
        )
    )
    rows.append(
        (
            "first request: botocore clients built",
            f"{fr['first_request_clients_created']} clients, "
            f"{fr['first_request_client_creation']['median_ms']:.1f} ms of the first "
            "request",
            "",
        )
    )
    rows.append(
        ("first request: total extra", f"{fr['first_request_extra_total_median_ms']} ms", "")
    )
    top = result["importtime"]["top_beyond_floor"][:6]
    rows.append(
        (
            "importtime beyond floor (self ms)",
            ", ".join(f"{t['package']} +{t['extra_ms']}" for t in top) or "none",
            "",
        )
    )
    return rows
