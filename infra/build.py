"""Build the deployable artifact of a stage, offline: `python -m infra.build --stage prod
--out build/package` (what `make package` runs).

Steps: stage app.py, the stage's config, its IAM policy and `functions/` (as `vendor/functions`,
since chalice only packages app.py, chalicelib/ and vendor/) in `<out>/../staging`; run
`chalice package` there (it downloads Lambda wheels of requirements.txt from PyPI); zip the core
layer (`crm`); write the build context of the analytics image; merge the resources of
`infra.resources` into chalice's template, and make the analytics functions image functions.

The analytics functions (`ANALYTICS_FUNCTIONS`) load pandas, pyarrow, numpy and scipy: about
320 MB unzipped even pruned, past the 250 MB a zip function may hold with its layers. They run
from a container image instead (10 GB), built with docker from `<out>/analytics-image/`
(decision 71); every other function stays a zip function with the core layer.

The output directory holds `template.json` (chalice's `sam.json` merged with infra; `sam.json`
itself is removed so there is one template to deploy), `deployment.zip`, `core-layer.zip`,
`analytics-image/` and a README with the deploy commands.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import template as cfn
from infra.permissions import load_map
from infra.resources import ANALYTICS_FUNCTIONS, all_resources

PROJECT_DIR = Path(__file__).resolve().parent.parent
CORE_LAYER = "CoreLayer"
CORE_LAYER_ZIP = "core-layer.zip"
TEMPLATE = "template.json"
# ANALYTICS_FUNCTIONS (infra.resources): the functions of app.py (by name) that load pandas,
# pyarrow, numpy or scipy. They, and only they, run from the analytics image.
LAMBDA_PLATFORM = "manylinux2014_x86_64"  # python3.11 runs on Amazon Linux 2 (glibc 2.26)
# Lambda's limit for a function's code and all its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT = 262_144_000
# Lambda's limit for an image, uncompressed, with all its layers (the base image's too).
LAMBDA_IMAGE_LIMIT = cfn.IMAGE_LIMIT
ANALYTICS_IMAGE_DIR = "analytics-image"
ANALYTICS_IMAGE_PARAMETER = "AnalyticsImageUri"
# AWS's base image for the functions' Python: the runtime and its interface client.
BASE_IMAGE = "public.ecr.aws/lambda/python:{version}"
# The image's packages: the functions' own and the analytics', (project file, context file).
IMAGE_REQUIREMENTS = (
    ("requirements.txt", "requirements.txt"),
    ("layers/analytics/requirements.txt", "analytics-requirements.txt"),
)
# The image's code beside its packages, in the task root: (project path, path there). The
# chalice runtime (`chalice/`, what `chalice package` puts in deployment.zip) joins them.
IMAGE_CODE = (
    ("app.py", "app.py"),
    ("functions", "functions"),
    ("layers/core/python/crm", "crm"),
    ("layers/analytics/python/crm_analytics", "crm_analytics"),
)
CHALICE_RUNTIME = "chalice"

Log = Callable[[str], None]


@dataclass
class BuildResult:
    out: Path
    template: Path
    artifacts: dict[str, Path]
    unzipped_bytes: dict[str, int]
    image_context: Path
    seconds: dict[str, float] = field(default_factory=dict)


def stage_config(
    stage: str, project_dir: Path = PROJECT_DIR
) -> tuple[dict[str, Any], dict[str, str]]:
    """The stage's section of `.chalice/config.json` and its environment (global, then stage)."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    stages = config.get("stages", {})
    if stage not in stages:
        raise SystemExit(f"no stage {stage!r} in .chalice/config.json (have {sorted(stages)})")
    env = dict(config.get("environment_variables", {}))
    env.update(stages[stage].get("environment_variables", {}))
    return stages[stage], env


def app_name(project_dir: Path = PROJECT_DIR) -> str:
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    return str(config["app_name"])


def secrets_path(env: dict[str, str], stage: str) -> str:
    source = env.get("CRM_SECRETS_SOURCE", "")
    return source.removeprefix("ssm:") if source.startswith("ssm:/") else f"/crm/{stage}/"


class UnsafeStage(SystemExit):
    """The stage may not be built for the cloud as configured."""


def check_stage(stage: str, env: dict[str, str]) -> None:
    """Refuse a cloud build that would serve a shop with a placeholder: the local stage, the
    local payment provider or an example sender outside the test stages (`crm.config`, which
    refuses the same at cold start)."""
    from crm.adapters.payments import PROVIDERS
    from crm.config import unsafe_outside_tests

    problems = unsafe_outside_tests({**env, "CRM_STAGE": stage}, at_build=True)
    payments = env.get("CRM_PAYMENTS", "").strip()
    if payments and payments not in PROVIDERS:
        problems.append(f"CRM_PAYMENTS={payments!r} is no payment provider ({sorted(PROVIDERS)})")
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise UnsafeStage(
            f"refusing to build stage {stage!r} for the cloud:\n{listed}\n"
            f"(see .chalice/config.json, stages.{stage}.environment_variables)"
        )


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))}


def stage_project(stage: str, staging: Path, project_dir: Path = PROJECT_DIR) -> None:
    """The tree `chalice package` runs in: the app, its config and policy, and `functions/`."""
    stage_section, env = stage_config(stage, project_dir)
    if staging.exists():
        shutil.rmtree(staging)
    (staging / ".chalice").mkdir(parents=True)
    shutil.copy2(project_dir / "app.py", staging / "app.py")
    shutil.copy2(project_dir / "requirements.txt", staging / "requirements.txt")
    shutil.copy2(project_dir / ".chalice" / "config.json", staging / ".chalice" / "config.json")
    shutil.copytree(project_dir / "functions", staging / "vendor" / "functions", ignore=_ignore)
    if not stage_section.get("autogen_policy", True):
        policy = stage_section.get("iam_policy_file", f"policy-{stage}.json")
        document = cfn.function_policy(stage, secrets_path(env, stage))
        # Generated, never committed: it is a CloudFormation fragment (Fn::Sub, Fn::GetAtt),
        # which chalice copies verbatim into each function's role.
        (staging / ".chalice" / policy).write_text(json.dumps(document, indent=2))


def chalice_package(stage: str, staging: Path, out: Path, project_dir: Path = PROJECT_DIR) -> None:
    env = dict(os.environ)
    # chalice imports app.py to find its functions; app.py imports the core layer.
    core = str(project_dir / "layers" / "core" / "python")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (core, env.get("PYTHONPATH")) if p)
    # chalice refuses to run without a region, though the template it writes has none.
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    command = [
        sys.executable,
        "-c",
        "import sys; from chalice.cli import main; sys.exit(main())",
        "package",
        "--stage",
        stage,
        str(out),
    ]
    done = subprocess.run(
        command, cwd=staging, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"chalice package failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


def _zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    # A fixed timestamp keeps the zip (and so the S3 key `aws cloudformation package` derives
    # from its hash) unchanged when the code is, so a deploy publishes no needless layer.
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = ((mode & 0o777) | 0o444) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def zip_tree(root: Path, dest: Path, prefix: str, *, bytecode: bool) -> Path:
    """Zip every file under `root` as `<prefix>/<relative path>`, deterministically."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root)
            if not bytecode and (
                "__pycache__" in relative.parts or path.suffix in (".pyc", ".pyo")
            ):
                continue
            archive.writestr(
                _zip_info(f"{prefix}/{relative.as_posix()}", path.stat().st_mode), path.read_bytes()
            )
    return dest


def build_core_layer(out: Path, project_dir: Path = PROJECT_DIR) -> Path:
    """`python/crm/...`: Lambda puts a layer's `python/` on the path."""
    return zip_tree(
        project_dir / "layers" / "core" / "python" / "crm",
        out / CORE_LAYER_ZIP,
        "python/crm",
        bytecode=False,
    )


def pip_install_command(
    python_version: str, target: Path, requirements: Iterable[Path]
) -> list[str]:
    """pip installing wheels of the Lambda platform (never this machine's) into `target`:
    what the Dockerfile's `pip install` puts in the image, run anywhere."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        # The venv's own packages are no concern of the image.
        "--no-warn-conflicts",
        "--platform",
        LAMBDA_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        "--target",
        str(target),
    ]
    for path in requirements:
        command += ["-r", str(path)]
    return command


def _image_code() -> list[str]:
    """The context's code, as the task root holds it."""
    return [CHALICE_RUNTIME, *(inside for _, inside in IMAGE_CODE)]


def dockerfile(python_version: str) -> str:
    requirements = [name for _, name in IMAGE_REQUIREMENTS]
    continued = " \\\n        "
    install = continued.join(
        ['pip install --no-cache-dir --only-binary=:all: --target "${LAMBDA_TASK_ROOT}"']
        + [f"-r /tmp/requirements/{name}" for name in requirements]
    )
    copies = "\n".join(f"COPY {name} ${{LAMBDA_TASK_ROOT}}/{name}" for name in _image_code())
    compiled = continued.join(f"${{LAMBDA_TASK_ROOT}}/{name}" for name in _image_code())
    functions = ", ".join(ANALYTICS_FUNCTIONS)
    return f"""# The analytics functions ({functions}): pandas, pyarrow, numpy and scipy
# pass the 250 MB of a zip function; an image may hold 10 GB. Written by `make package`
# (infra/build.py); the package's README.md says how to build, push and deploy it.
FROM {BASE_IMAGE.format(version=python_version)}

# Lambda wheels only, as tests/integration/test_package_limits.py installs them to measure.
COPY {" ".join(requirements)} /tmp/requirements/
RUN {install} \\
    && rm -rf /tmp/requirements

{copies}
# The task root is read-only at run time: compiled once here, not at every cold start.
RUN python -m compileall -q{continued}{compiled}

# Each function runs its own handler (ImageConfig.Command in the template).
CMD ["app.{ANALYTICS_FUNCTIONS[0]}"]
"""


def write_image_context(
    out: Path, deployment: Path, python_version: str, project_dir: Path = PROJECT_DIR
) -> Path:
    """`<out>/analytics-image/`: the Dockerfile, the requirements it installs, the app's code,
    and the chalice runtime of `deployment` (the one every zip function runs)."""
    context = out / ANALYTICS_IMAGE_DIR
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    for source, name in IMAGE_REQUIREMENTS:
        shutil.copy2(project_dir / source, context / name)
    for source, inside in IMAGE_CODE:
        path = project_dir / source
        if path.is_dir():
            shutil.copytree(path, context / inside, ignore=_ignore)
        else:
            shutil.copy2(path, context / inside)
    with zipfile.ZipFile(deployment) as archive:
        runtime = [n for n in archive.namelist() if n.startswith(f"{CHALICE_RUNTIME}/")]
        if not runtime:
            raise RuntimeError(f"no {CHALICE_RUNTIME}/ in {deployment.name}")
        archive.extractall(context, members=runtime)
    (context / "Dockerfile").write_text(dockerfile(python_version))
    return context


def image_content(context: Path, target: Path, python_version: str) -> int:
    """What the Dockerfile puts in the task root, built here without docker: the packages as
    Lambda wheels (pip's cache is used) and the context's code. Returns its size in bytes."""
    if target.exists():
        shutil.rmtree(target)
    command = pip_install_command(
        python_version, target, [context / name for _, name in IMAGE_REQUIREMENTS]
    )
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip install of the analytics image failed:\n{done.stderr}")
    for name in _image_code():
        source = context / name
        if source.is_dir():
            shutil.copytree(source, target / name, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target / name)
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python_version:
        # As the Dockerfile's compileall (pip compiled the packages already).
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "0"]
            + [str(target / name) for name in _image_code()],
            check=True,
            capture_output=True,
        )
    return tree_size(target)


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def unzipped_size(path: Path) -> int:
    with zipfile.ZipFile(path) as archive:
        return sum(info.file_size for info in archive.infolist())


def _check_sizes(template: dict[str, Any], sizes: dict[str, int], code_size: int) -> list[str]:
    """Refuse a zip function whose code and layers pass Lambda's unzipped limit (an image
    function's image is built by docker; the package test measures what it holds)."""
    problems = []
    for function_id, function in cfn.functions_of(template).items():
        if cfn.is_image(function):
            continue
        total = code_size + sum(
            sizes.get(layer["Ref"], 0)
            for layer in function["Properties"].get("Layers", [])
            if isinstance(layer, dict) and "Ref" in layer
        )
        if total > LAMBDA_UNZIPPED_LIMIT:
            problems.append(
                f"{function_id}: {total:,} bytes unzipped with its layers "
                f"(Lambda allows {LAMBDA_UNZIPPED_LIMIT:,})"
            )
    return problems


def deploy_instructions(stage: str, out: Path, env: dict[str, str]) -> str:
    path = secrets_path(env, stage)
    template = out / TEMPLATE
    packaged = out / "packaged.yaml"
    context = out / ANALYTICS_IMAGE_DIR
    secrets = "\n".join(
        f"aws ssm put-parameter --name {path}{name} --type SecureString --value '<{name}>'"
        for name in ("operator_token", "shopify_secret", "webhook_secret", "logistics_secret")
    )
    repository = f"shop-crm-{stage}-analytics"
    registry = "<account>.dkr.ecr.<region>.amazonaws.com"
    return f"""# Deploying stage `{stage}`

Built by `make package`. `{TEMPLATE}` is chalice's `sam.json` merged with `infra/`; the
zips beside it are the code (`deployment.zip`) and the core layer, `{ANALYTICS_IMAGE_DIR}/`
the build context of the image the analytics functions ({", ".join(ANALYTICS_FUNCTIONS)})
run from (pandas, pyarrow, numpy and scipy are too large for a zip function). Paths in the
template are relative to it.

Once per account and region: a bucket for the artifacts, a repository for the image, and the
secrets (SecureString parameters, which CloudFormation cannot create; add `--overwrite` to
rotate one):

```sh
aws s3 mb s3://<artifact-bucket>
aws ecr create-repository --repository-name {repository}
{secrets}
```

Each deploy: build and push the image under a new tag (CloudFormation updates the functions
only when `AnalyticsImageUri` changes), then package and deploy the template (IAM roles
without fixed names need CAPABILITY_IAM; the SAM transform needs CAPABILITY_AUTO_EXPAND):

```sh
TAG=$(git rev-parse --short HEAD)
aws ecr get-login-password | docker login --username AWS --password-stdin {registry}
# x86_64, as the functions; no provenance attestation (Lambda refuses its manifest list)
docker build --platform linux/amd64 --provenance=false \\
    -t {registry}/{repository}:$TAG {context}
docker push {registry}/{repository}:$TAG
aws cloudformation package --template-file {template} \\
    --s3-bucket <artifact-bucket> --output-template-file {packaged}
aws cloudformation deploy --template-file {packaged} --stack-name shop-crm-{stage} \\
    --s3-bucket <artifact-bucket> --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \\
    --parameter-overrides SenderEmail=<the shop's sending address> \\
        AnalyticsImageUri={registry}/{repository}:$TAG [OpsAlertEmail=<address>]
aws cloudformation describe-stacks --stack-name shop-crm-{stage} --query 'Stacks[0].Outputs'
```

`SenderEmail` must be an SES identity of the account (the address or its domain);
`OpsAlertEmail` subscribes an address to the alarms; `AnalyticsImageUri` is the image just
pushed (ECR, same account and region: whoever deploys needs `ecr:BatchGetImage` and
`ecr:GetDownloadUrlForLayer` on it). The outputs give the API's URL (`EndpointURL`) and the
cloud names of the tables, buckets, topics, queues, the Glue database and the Athena
workgroup. Buckets are named `<configured name>-<account>-<region>`; tables and buckets are
kept when the stack is deleted.
"""


def build(
    stage: str,
    out: Path,
    *,
    project_dir: Path = PROJECT_DIR,
    log: Log = print,
) -> BuildResult:
    out = out.resolve()
    staging = out.parent / "staging"
    seconds: dict[str, float] = {}
    started = time.monotonic()

    def step(name: str, since: float) -> float:
        now = time.monotonic()
        seconds[name] = round(now - since, 1)
        log(f"  {name}: {seconds[name]} s")
        return now

    _, env = stage_config(stage, project_dir)
    check_stage(stage, env)
    log(f"Building stage {stage} into {out}")
    if out.exists():
        shutil.rmtree(out)
    stage_project(stage, staging, project_dir)
    mark = step("staging", started)
    chalice_package(stage, staging, out, project_dir)
    mark = step("chalice package", mark)
    chalice_template = json.loads((out / "sam.json").read_text())
    functions = cfn.functions_of(chalice_template)
    runtime = next(iter(functions.values()))["Properties"]["Runtime"]  # e.g. python3.11

    artifacts = {
        "deployment": out / "deployment.zip",
        CORE_LAYER: build_core_layer(out, project_dir),
    }
    layers = {CORE_LAYER: (f"./{CORE_LAYER_ZIP}", "crm: domain, store, adapters, config")}
    mark = step("core layer", mark)
    context = write_image_context(
        out, artifacts["deployment"], runtime.removeprefix("python"), project_dir
    )
    mark = step("analytics image context", mark)

    template = cfn.merge(
        chalice_template,
        all_resources(),
        stage,
        env,
        permissions=load_map(),
        app_name=app_name(project_dir),
        layers=layers,
        every_function_layers=[CORE_LAYER],
        secrets_path=secrets_path(env, stage),
    )
    template["Description"] = f"shop-crm, stage {stage} (built by infra.build)"
    cfn.use_image(template, ANALYTICS_FUNCTIONS, ANALYTICS_IMAGE_PARAMETER)
    cycle = cfn.find_cycle(template)
    if cycle:
        raise RuntimeError("dependency cycle in the template: " + " -> ".join(cycle))

    sizes = {name: unzipped_size(path) for name, path in artifacts.items()}
    problems = _check_sizes(template, sizes, sizes["deployment"])
    if problems:
        raise RuntimeError("too large for Lambda:\n" + "\n".join(problems))

    (out / TEMPLATE).write_text(json.dumps(template, indent=1) + "\n")
    (out / "sam.json").unlink()
    (out / "README.md").write_text(
        deploy_instructions(
            stage, out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out, env
        )
    )
    step("merge", mark)
    seconds["total"] = round(time.monotonic() - started, 1)
    result = BuildResult(
        out=out,
        template=out / TEMPLATE,
        artifacts=artifacts,
        unzipped_bytes=sizes,
        image_context=context,
        seconds=seconds,
    )
    log(summary(result))
    return result


def summary(result: BuildResult) -> str:
    lines = [f"Built in {result.seconds.get('total')} s: {result.template}"]
    for name, path in result.artifacts.items():
        lines.append(
            f"  {path.name}: {path.stat().st_size / 1e6:.2f} MB zipped, "
            f"{result.unzipped_bytes[name] / 1e6:.2f} MB unzipped"
        )
    lines.append(
        f"  {result.image_context.name}/: the analytics image's build context "
        f"({', '.join(ANALYTICS_FUNCTIONS)}; docker builds it)"
    )
    lines.append(f"Deploy: see {result.out / 'README.md'}")
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m infra.build", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--out", type=Path, default=Path("build/package"))
    args = parser.parse_args(list(argv) if argv is not None else None)
    build(args.stage, args.out)


if __name__ == "__main__":
    main()
