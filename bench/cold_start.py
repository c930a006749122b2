"""Cold start of every Lambda of the app, with the prod stage's environment: `import app` (and
what each non-HTTP Lambda's handler imports) in fresh interpreters, against `import boto3,
chalice` measured in the same run; and the API Lambda's first request against the floor's
first DynamoDB call.

Every sample is a new `sys.executable` process (cwd = project root, sys.path = project root and
layers/core/python first, as /var/task and /opt/python are on Lambda) whose environment holds
only the prod stage's variables (`crm_local.provision.stage_environment("prod")`, as
`.chalice/config.json` gives them to `chalice package`), what Lambda itself sets (region,
`AWS_EXECUTION_ENV`, the function's name and memory), dummy credentials, and a dummy for the
one variable the deployed template adds (`CRM_SENDER_EMAIL`, a template parameter, which
`crm.config` asks for at import inside Lambda). No real secret is needed: the prod stage reads
its secrets from SSM at first use, and SSM is answered by the canned responses below.

Variants, run interleaved, their order rotating every round, so that drift on the shared
machine hits all of them alike:

- `python`: nothing imported (the interpreter's own start, for context);
- `floor`: `import boto3, chalice` (what any Chalice app on boto3 pays anyway); then, after the
  import is timed, one raw DynamoDB call: a plain boto3 client created and one `put_item`;
- `app`: `import app` (what the API Lambda does at init); then two `POST /customers` through
  the Lambda entry point `app.app(event, context)`;
- one per non-HTTP Lambda of app.py (`@app.lambda_function`, `@app.schedule`, `@app.on_*`,
  read from app.py with `ast`): `import app`, then the entry modules its handler imports
  (`from functions import X` inside the handler), which is the init that Lambda pays.

Every AWS call of the children is answered by canned responses registered on every botocore
client (`before-send`, no network): nothing found, writes accepted, SSM parameters present.
The floor's call and the app's requests are timed from the start of the import to the answer,
the canned mechanism's set-up included in both (it imports `botocore.session`, which the first
request would import anyway).
"""

from __future__ import annotations

import ast
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.common import (
    LAYER_DIR,
    PROJECT_DIR,
    REGION,
    Failures,
    Row,
    ensure_import_paths,
    judged,
    machine,
    ratio,
    summary_ms,
    write_result,
)

NAME = "cold_start"
STAGE = "prod"
TARGET_RATIO = 1.15
# The template sets it from a parameter (infra/template.py); `crm.config` refuses an example
# address, so the dummy is a name no mail can reach but not one of RFC 2606's.
DUMMY_SENDER = "orders@shop.bench"
MEMORY_MB = "512"
HEAVY = (
    "pandas",
    "numpy",
    "pyarrow",
    "pydantic",
    "phonenumbers",
    "pynamodb",
    "boto3",
    "botocore",
    "aws_xray_sdk",
    "moto",
)
FLOOR_PACKAGES = ("boto3", "chalice")
# Decorators of app.py that declare an HTTP entry point (served by the API Lambda) or the
# authorizer (a Lambda whose init is `import app` alone: figure (a)).
HTTP_DECORATORS = frozenset({"route", "authorizer", "middleware"})
BASE_VARIANTS = ("python", "floor", "app")
MARK = "BENCH_COLD_START "

# The child. argv: variant, entry modules (comma-separated), extras ("1": run the part after
# the import), then sys.path entries. Nothing but `time` and `sys` before the measured window.
CHILD = r"""
import time
M0 = time.clock_gettime(time.CLOCK_MONOTONIC)
import sys
variant, entry, extras, roots = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4:]
sys.path[:0] = roots
before = len(sys.modules)
t0 = time.perf_counter()
if variant == "floor":
    import boto3, chalice
elif variant != "python":
    import app
t1 = time.perf_counter()
entry_error = None
for module in filter(None, entry.split(",")):
    try:
        __import__(module)
    except Exception as exc:
        entry_error = f"{module}: {exc!r}"
t2 = time.perf_counter()
M1 = time.clock_gettime(time.CLOCK_MONOTONIC)
out = {"variant": variant, "import_s": t1 - t0, "entry_s": t2 - t1, "init_s": t2 - t0,
       "mono_start": M0, "mono_imported": M1, "modules": len(sys.modules),
       "modules_added": len(sys.modules) - before, "entry_error": entry_error}
if variant != "python":
    out["heavy"] = [m for m in HEAVY if m in sys.modules]
if extras and variant == "floor":
    out.update(floor_call(t0))
elif extras and variant == "app":
    out.update(first_requests(app.app, t0))
import json
print(MARK + json.dumps(out), flush=True)
"""

# Defined in the child before CHILD runs (outside the measured window, nothing imported).
CHILD_HELPERS = r'''
def canned_aws():
    """Answer every AWS call of every botocore client created from now on, without network:
    nothing found, writes accepted, SSM parameters present (the `_previous` ones absent)."""
    import json, time
    import botocore.session
    from botocore.awsrequest import AWSResponse

    class Raw:
        def __init__(self, body):
            self.body = body
        def stream(self, **_):
            yield self.body

    calls, clients = [], []

    def answer(request, event_name, **_):
        operation = event_name.split(".", 1)[1]
        calls.append(operation)
        asked = json.loads(request.body or b"{}")
        status, body = 200, {}
        if operation.endswith(".BatchGetItem"):
            body = {"Responses": {t: [] for t in asked.get("RequestItems", {})},
                    "UnprocessedKeys": {}}
        elif operation.endswith((".Query", ".Scan")):
            body = {"Items": [], "Count": 0, "ScannedCount": 0}
        elif operation.endswith(".GetParameter"):
            name = asked.get("Name", "")
            if name.endswith("_previous"):
                status, body = 400, {"__type": "ParameterNotFound", "message": name}
            else:
                body = {"Parameter": {"Name": name, "Type": "SecureString", "Version": 1,
                                      "Value": "bench-secret"}}
        return AWSResponse(request.url, status, {"x-amzn-requestid": "bench"},
                           Raw(json.dumps(body).encode()))

    original = botocore.session.Session.create_client

    def create_client(self, *args, **kwargs):
        t = time.perf_counter()
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-send.*.*", answer)
        clients.append(time.perf_counter() - t)
        return client

    botocore.session.Session.create_client = create_client
    return calls, clients


def floor_call(t0):
    """One DynamoDB call with a plain boto3 client, as an app that talks to AWS makes it."""
    import os, time
    start = time.perf_counter()
    calls, clients = canned_aws()
    import boto3
    client = boto3.client("dynamodb")
    try:
        answer = client.put_item(TableName=os.environ["CRM_CUSTOMERS_TABLE"],
                                 Item={"customer_id": {"S": "cus_bench"}})
        status = answer["ResponseMetadata"]["HTTPStatusCode"]
    except Exception as exc:
        status = repr(exc)
    end = time.perf_counter()
    return {"first_call": {"s": end - start, "init_and_first_s": end - t0, "status": status,
                           "aws_calls": list(calls), "clients_created": len(clients),
                           "client_creation_s": sum(clients)}}


def first_requests(chalice_app, t0):
    """Two POST /customers through the Lambda entry point: the first pays every one-off cost
    left after the import (lazy imports, botocore clients, data loaded on first use)."""
    import io, json, os, sys, time
    start = time.perf_counter()
    calls, clients = canned_aws()

    class Context:
        function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "api_handler")
        function_version = "$LATEST"
        memory_limit_in_mb = 512
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
        aws_request_id = "bench"
        log_group_name = "/aws/lambda/" + function_name
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
                        "authorization": "Bearer bench-secret"},
            "multiValueHeaders": None, "queryStringParameters": None,
            "multiValueQueryStringParameters": None, "pathParameters": None,
            "stageVariables": None, "isBase64Encoded": False, "body": json.dumps(body),
            "requestContext": {"resourcePath": "/customers", "httpMethod": "POST",
                               "path": "/api/customers", "stage": "api",
                               "requestId": f"bench-{n}", "identity": {"sourceIp": "127.0.0.1"},
                               "authorizer": {"principalId": "operator"}},
        }

    out = {}
    real_stdout = sys.stdout
    for n, label in ((1, "first"), (2, "second")):
        modules = set(sys.modules)
        del calls[:]
        del clients[:]
        sys.stdout = io.StringIO()  # EMF metrics and logs of the request
        t = start if n == 1 else time.perf_counter()
        try:
            response = chalice_app(event(n), Context())
            status = response.get("statusCode")
        except Exception as exc:
            status = repr(exc)
        end = time.perf_counter()
        sys.stdout = real_stdout
        packages = {}
        for name in set(sys.modules) - modules:
            top = name.split(".", 1)[0]
            packages[top] = packages.get(top, 0) + 1
        out[label + "_request"] = {"s": end - t, "init_and_first_s": end - t0, "status": status,
                                   "aws_calls": list(calls), "new_modules": packages,
                                   "clients_created": len(clients),
                                   "client_creation_s": sum(clients)}
    return out
'''


# -- what is measured ---------------------------------------------------------------------------


def lambda_handlers(app_file: Path = PROJECT_DIR / "app.py") -> list[dict[str, Any]]:
    """Every non-HTTP Lambda that app.py declares (`@app.lambda_function`, `@app.schedule`,
    `@app.on_s3_event`, ...), with the entry modules its handler imports (`from functions
    import X`, `import functions.X`), read from the source with `ast`."""
    tree = ast.parse(app_file.read_text(encoding="utf-8"))
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            func = call.func if call is not None else decorator
            if not (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "app"
                and func.attr not in HTTP_DECORATORS
            ):
                continue
            name = node.name
            for keyword in call.keywords if call is not None else []:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    name = str(keyword.value.value)
            found.append(
                {
                    "lambda": name,
                    "handler": f"app.{node.name}",
                    "trigger": func.attr,
                    "entry_modules": entry_modules(node),
                }
            )
    return found


def entry_modules(handler: ast.FunctionDef) -> list[str]:
    modules: list[str] = []
    for node in ast.walk(handler):
        if isinstance(node, ast.ImportFrom) and node.module == "functions":
            modules += [f"functions.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("functions."):
            modules.append(str(node.module))
        elif isinstance(node, ast.Import):
            modules += [a.name for a in node.names if a.name.startswith("functions.")]
    return list(dict.fromkeys(modules))


def prod_environment(function: str = "api_handler") -> dict[str, str]:
    """What the prod stage's Lambda `function` runs with: the stage's variables, what Lambda
    sets, dummy credentials, and the dummy sender (see the module's docstring)."""
    ensure_import_paths()
    from crm_local.provision import stage_environment
    from infra.build import app_name
    from infra.template import cloud_function_name

    env = dict(stage_environment(STAGE, PROJECT_DIR))
    physical = cloud_function_name(app_name(PROJECT_DIR), STAGE, function)
    env.update(
        {
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
            "AWS_LAMBDA_FUNCTION_NAME": physical,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": MEMORY_MB,
            "CRM_SENDER_EMAIL": DUMMY_SENDER,
        }
    )
    return env


def _child_env(function: str = "api_handler") -> dict[str, str]:
    """Only what the Lambda would have: no AWS config files, no endpoint override, no
    PYTHONPATH."""
    home = tempfile.mkdtemp(prefix="bench-cold-")
    env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TZ") if key in os.environ}
    env.update(prod_environment(function))
    env.update(
        {
            "HOME": home,
            "AWS_CONFIG_FILE": os.path.join(home, "config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials"),
        }
    )
    return env


def _child_source() -> str:
    constants = f"HEAVY = {HEAVY!r}\nMARK = {MARK!r}\n"
    # The helpers are defined first but only executed after the measured import.
    return CHILD.replace("import sys\n", "import sys\n" + constants + CHILD_HELPERS, 1)


def _spawn(
    variant: str,
    env: Mapping[str, str],
    entry: tuple[str, ...] = (),
    extras: bool = True,
    importtime: bool = False,
) -> tuple[dict[str, Any], str]:
    args = [sys.executable]
    if importtime:
        args += ["-X", "importtime"]
    args += [
        "-c",
        _child_source(),
        variant,
        ",".join(entry),
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
        for variant, root in (("floor", set(FLOOR_PACKAGES)), ("app", {"app"})):
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


def _is_2xx(status: Any) -> bool:
    return isinstance(status, int) and 200 <= status < 300


def _variant_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "import": summary_ms(s["import_s"] for s in runs),
        "init": summary_ms(s["init_s"] for s in runs),
        "process_to_imported": summary_ms(s["process_to_imported_s"] for s in runs),
        "interpreter_start": summary_ms(s["interpreter_start_s"] for s in runs),
        "modules_loaded": runs[-1]["modules"],
        "modules_added_by_import": runs[-1]["modules_added"],
    }


def _paired(
    a: list[dict[str, Any]], b: list[dict[str, Any]], key: Any, key_b: Any = None
) -> float | None:
    """Median of the per-round ratios a/b (a cross-check less sensitive to drift)."""
    key_b = key_b or key
    pairs = [key(x) / key_b(y) for x, y in zip(a, b, strict=False) if key_b(y)]
    return round(statistics.median(pairs), 3) if pairs else None


def run(n: int = 25, warmup: int = 2, importtime_repeats: int = 3) -> dict[str, Any]:
    handlers = lambda_handlers()
    envs = {"api_handler": _child_env()}
    variants: dict[str, tuple[str, tuple[str, ...], dict[str, str]]] = {
        v: (v, (), envs["api_handler"]) for v in BASE_VARIANTS
    }
    for h in handlers:
        variants[h["lambda"]] = ("lambda", tuple(h["entry_modules"]), _child_env(h["lambda"]))
    names = list(variants)

    started = time.perf_counter()
    for _ in range(warmup):  # page cache and bytecode are warm for every variant alike
        for name in names:
            kind, entry, env = variants[name]
            _spawn(kind, env, entry)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for i in range(n):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            kind, entry, env = variants[name]
            samples[name].append(_spawn(kind, env, entry)[0])

    figures = {name: _variant_figures(samples[name]) for name in BASE_VARIANTS}
    app_runs, floor_runs = samples["app"], samples["floor"]
    floor_ms = figures["floor"]["import"]["median_ms"]

    # (a) init: import app against the floor.
    import_ratio = ratio(figures["app"]["import"]["median_ms"], floor_ms)

    # (b) init + the first request against the floor + one raw DynamoDB call.
    request_failures, call_failures = Failures(), Failures()
    for s in app_runs:
        status = s["first_request"]["status"]
        request_failures.check(_is_2xx(status), f"first POST /customers answered {status}")
        status = s["second_request"]["status"]
        request_failures.check(_is_2xx(status), f"second POST /customers answered {status}")
    for s in floor_runs:
        status = s["first_call"]["status"]
        call_failures.check(_is_2xx(status), f"the floor's put_item answered {status}")
    app_first = summary_ms(s["first_request"]["init_and_first_s"] for s in app_runs)
    floor_first = summary_ms(s["first_call"]["init_and_first_s"] for s in floor_runs)
    last = app_runs[-1]
    first_request = {
        "what": "from the start of `import app` to the first POST /customers' answer, through "
        "app.app(event, context), AWS answered by canned responses; the floor: from the start "
        "of `import boto3, chalice` to the answer of one put_item by a plain boto3 client",
        "init_and_first_request": app_first,
        "floor_init_and_one_dynamodb_call": floor_first,
        "ratio": ratio(app_first["median_ms"], floor_first["median_ms"]),
        "ratio_paired_median": _paired(
            app_runs,
            floor_runs,
            lambda s: s["first_request"]["init_and_first_s"],
            lambda s: s["first_call"]["init_and_first_s"],
        ),
        "first_request": summary_ms(s["first_request"]["s"] for s in app_runs),
        "second_request": summary_ms(s["second_request"]["s"] for s in app_runs),
        "first_minus_second": summary_ms(
            s["first_request"]["s"] - s["second_request"]["s"] for s in app_runs
        ),
        "floor_call": summary_ms(s["first_call"]["s"] for s in floor_runs),
        "statuses": dict(
            Counter(
                f"{s['first_request']['status']}/{s['second_request']['status']}" for s in app_runs
            )
        ),
        "failures": request_failures.as_dict(),
        "floor_failures": call_failures.as_dict(),
        "clients_created": last["first_request"]["clients_created"],
        "client_creation": summary_ms(s["first_request"]["client_creation_s"] for s in app_runs),
        "aws_calls_answered_canned": last["first_request"]["aws_calls"],
        "floor_aws_calls_answered_canned": floor_runs[-1]["first_call"]["aws_calls"],
        "new_modules_by_package": last["first_request"]["new_modules"],
    }

    # (c) each non-HTTP Lambda: import app + its entry modules.
    lambdas: dict[str, Any] = {}
    for h in handlers:
        runs = samples[h["lambda"]]
        failures = Failures()
        for s in runs:
            failures.check(s["entry_error"] is None, f"import {s['entry_error']}")
        init = summary_ms(s["init_s"] for s in runs)
        lambdas[h["lambda"]] = {
            **h,
            "init": init,
            "import_app": summary_ms(s["import_s"] for s in runs),
            "entry_import": summary_ms(s["entry_s"] for s in runs),
            "ratio_vs_floor": ratio(init["median_ms"], floor_ms),
            "ratio_paired_median": _paired(runs, floor_runs, lambda s: s["init_s"]),
            "heavy_modules_loaded": runs[-1]["heavy"],
            "modules_loaded": runs[-1]["modules"],
            "failures": failures.as_dict(),
        }

    everything = Failures().add(request_failures).add(call_failures)
    for x in lambdas.values():
        everything.add(x["failures"])
    profile = importtime_profile(envs["api_handler"], importtime_repeats)
    result = {
        "name": NAME,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "stage": STAGE,
        "environment": {
            "variables": sorted(envs["api_handler"]),
            "dummies": {"CRM_SENDER_EMAIL": DUMMY_SENDER, "AWS credentials": "testing"},
        },
        "n": n,
        "order": "interleaved; variant order rotates each round",
        "import_ratio_app_vs_floor": import_ratio,
        "import_ratio_paired_median": _paired(app_runs, floor_runs, lambda s: s["import_s"]),
        "process_ratio_app_vs_floor": ratio(
            figures["app"]["process_to_imported"]["median_ms"],
            figures["floor"]["process_to_imported"]["median_ms"],
        ),
        "target_ratio": TARGET_RATIO,
        "meets_target": import_ratio is not None and import_ratio <= TARGET_RATIO,
        "import_app_minus_floor_median_ms": round(
            figures["app"]["import"]["median_ms"] - floor_ms, 2
        ),
        "variants": figures,
        "heavy_modules_after_import_app": last["heavy"],
        "heavy_modules_after_import_floor": floor_runs[-1]["heavy"],
        "first_request": first_request,
        "lambdas": lambdas,
        "importtime": profile,
        "failures": everything.as_dict(),
    }
    write_result(NAME, result)
    return result


def summary_rows(result: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    v = result["variants"]
    for variant, label in (("app", "init: import app"), ("floor", "floor: import boto3, chalice")):
        imp, proc = v[variant]["import"], v[variant]["process_to_imported"]
        rows.append(
            (
                f"{label} (n={imp['n']})",
                f"median {imp['median_ms']:.1f} ms (p90 {imp['p90_ms']:.1f}, "
                f"min {imp['min_ms']:.1f}); process {proc['median_ms']:.1f} ms "
                f"(p90 {proc['p90_ms']:.1f})",
                "",
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
            "",
        )
    )
    fr = result["first_request"]
    # The init is only lean if the app then works: the first request must answer 2xx.
    rows.append(
        (
            f"(a) ratio init app / floor, {result['stage']} environment",
            f"{result['import_ratio_app_vs_floor']} (paired median "
            f"{result['import_ratio_paired_median']}; "
            f"{result['import_app_minus_floor_median_ms']:+} ms)",
            f"<= {result['target_ratio']}, first request 2xx",
            judged(result["meets_target"], fr["failures"]),
        )
    )
    rows.append(("ratio process app / floor", f"{result['process_ratio_app_vs_floor']}", "", ""))
    a, f = fr["init_and_first_request"], fr["floor_init_and_one_dynamodb_call"]
    rows.append(
        (
            "(b) init + first POST /customers vs floor + one DynamoDB call",
            f"{a['median_ms']:.1f} vs {f['median_ms']:.1f} ms: ratio {fr['ratio']} "
            f"(paired median {fr['ratio_paired_median']})",
            "first request 2xx",
            judged(True, Failures().add(fr["failures"]).add(fr["floor_failures"])),
        )
    )
    rows.append(
        (
            "first request alone; second request",
            f"{fr['first_request']['median_ms']:.1f} ms; {fr['second_request']['median_ms']:.1f} "
            f"ms (statuses {', '.join(f'{k} x{n}' for k, n in fr['statuses'].items())}); "
            f"{fr['clients_created']} botocore clients built in "
            f"{fr['client_creation']['median_ms']:.1f} ms; AWS calls "
            f"{', '.join(fr['aws_calls_answered_canned']) or 'none'}",
            "",
            "",
        )
    )
    rows.append(
        (
            "heavy modules after import app",
            ", ".join(result["heavy_modules_after_import_app"]) or "none",
            "",
            "",
        )
    )
    for name, x in result["lambdas"].items():
        modules = " + ".join(x["entry_modules"]) or "nothing more"
        rows.append(
            (
                f"(c) init {name} ({x['trigger']}: import app + {modules})",
                f"median {x['init']['median_ms']:.1f} ms, ratio {x['ratio_vs_floor']} to the "
                f"floor; heavy: {', '.join(x['heavy_modules_loaded']) or 'none'}",
                "",
                judged(None, x["failures"]),
            )
        )
    top = result["importtime"]["top_beyond_floor"][:6]
    rows.append(
        (
            "importtime beyond floor (self ms)",
            ", ".join(f"{t['package']} +{t['extra_ms']}" for t in top) or "none",
            "",
            "",
        )
    )
    return rows
