"""The package's limits, measured on what `make package` builds: the analytics image's content,
installed as its Dockerfile installs it (Lambda wheels for the functions' Python on x86_64, the
same requirement files), fits Lambda's 10 GB image limit and runs its handlers from itself
alone; every zip function, code and layers unzipped, fits Lambda's 250 MB; no zip function
carries pandas, pyarrow, numpy or scipy.

The image's packages come from PyPI (about 100 MB the first time; pip's own cache after). The
measured sizes are printed at the end of the run ("package sizes")."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from infra import build
from infra.template import app_function_names, functions_of, is_image

pytestmark = [pytest.mark.slow, pytest.mark.pypi]

PROJECT_DIR = Path(__file__).resolve().parents[2]
DATA_LIBRARIES = ("pandas", "pyarrow", "numpy", "scipy")
# The base image (public.ecr.aws/lambda/python: the runtime, its interface client, the OS)
# counts toward the 10 GB too. It cannot be measured offline (a few hundred MB uncompressed):
# a whole GB is set aside for it.
BASE_IMAGE_ALLOWANCE = 1024**3


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> build.BuildResult:
    out = tmp_path_factory.mktemp("limits") / "package"
    return build.build("prod", out, log=lambda _line: None)


@pytest.fixture(scope="module")
def template(package: build.BuildResult) -> dict[str, Any]:
    return json.loads(package.template.read_text())


def python_version(template: dict[str, Any]) -> str:
    runtimes = {
        f["Properties"]["Runtime"] for f in functions_of(template).values() if not is_image(f)
    }
    [runtime] = runtimes
    return str(runtime).removeprefix("python")


@pytest.fixture(scope="module")
def image(
    package: build.BuildResult, template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, int]:
    """The image's task root, as its Dockerfile fills it, and its size in bytes."""
    target = tmp_path_factory.mktemp("image") / "task"
    size = build.image_content(package.image_context, target, python_version(template))
    return target, size


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def test_the_analytics_image_fits_lambda_s_image_limit(
    image: tuple[Path, int], record_property: Any
) -> None:
    target, size = image
    record_property(
        "size: analytics image content",
        f"{_mb(size)}, with the base image's allowance {_mb(size + BASE_IMAGE_ALLOWANCE)} "
        f"(Lambda allows 10 GB: {build.LAMBDA_IMAGE_LIMIT:,} bytes)",
    )

    assert size + BASE_IMAGE_ALLOWANCE <= build.LAMBDA_IMAGE_LIMIT
    tops = {p.name for p in target.iterdir()}
    assert {*DATA_LIBRARIES, "crm", "crm_analytics", "functions", "chalice", "app.py"} <= tops
    # What makes it an image: past what a zip function may hold.
    assert size > build.LAMBDA_UNZIPPED_LIMIT


CHECK = """
import importlib, json, sys
sys.path[:0] = [sys.argv[1]]
import app
handlers = json.loads(sys.argv[2])
resolved = {h: callable(getattr(app, h.rpartition(".")[2], None)) for h in handlers}
for module in ("functions.analytics", "crm_analytics.clv", "crm_analytics.segments",
               "crm_analytics.snapshot", "crm_analytics.reports", "crm_analytics.athena"):
    importlib.import_module(module)
files = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
print(json.dumps({
    "resolved": resolved,
    "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3:])),
    "outside": sorted({f for f in files if "-packages" in f and not f.startswith(sys.argv[1])})[:5],
}))
"""


def test_the_image_s_handlers_and_the_analytics_run_from_its_content_alone(
    image: tuple[Path, int], template: dict[str, Any]
) -> None:
    target, _ = image
    if f"{sys.version_info.major}.{sys.version_info.minor}" != python_version(template):
        pytest.skip("the image's wheels are for another Python than this one")
    functions = functions_of(template)
    handlers = sorted(
        f["Properties"]["ImageConfig"]["Command"][0] for f in functions.values() if is_image(f)
    )
    env = {"AWS_DEFAULT_REGION": "us-east-1"}
    for function in functions.values():
        for var, value in function["Properties"]["Environment"]["Variables"].items():
            env[var] = value if isinstance(value, str) else f"dummy-{var.lower()}"

    # -S -I: the stdlib and the image's task root, nothing of this machine's.
    done = subprocess.run(
        [
            sys.executable,
            "-S",
            "-I",
            "-c",
            CHECK,
            str(target),
            json.dumps(handlers),
            *DATA_LIBRARIES,
        ],
        env=env,
        cwd=target.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert handlers == ["app.analytics", "app.reports", "app.segmentation"]
    assert report["resolved"] == {h: True for h in handlers}
    assert report["loaded"] == sorted(DATA_LIBRARIES)
    assert report["outside"] == []


def _unzipped(path: Path) -> int:
    with zipfile.ZipFile(path) as archive:
        return sum(info.file_size for info in archive.infolist())


def _zip_functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = app_function_names(template)
    return {names[f]: body for f, body in functions_of(template).items() if not is_image(body)}


def _artifacts(package: build.BuildResult, template: dict[str, Any], function: dict) -> list[Path]:
    """The zips a function is made of: its code and each of its layers' content."""
    props = function["Properties"]
    paths = [package.out / props["CodeUri"]]
    for layer in props.get("Layers", []):
        paths.append(package.out / template["Resources"][layer["Ref"]]["Properties"]["Content"])
    return paths


def test_every_zip_function_fits_lambda_s_unzipped_limit_with_its_layers(
    package: build.BuildResult, template: dict[str, Any], record_property: Any
) -> None:
    zips = _zip_functions(template)
    sizes = {
        name: sum(_unzipped(p) for p in _artifacts(package, template, body))
        for name, body in zips.items()
    }
    largest = max(sizes, key=sizes.__getitem__)
    record_property(
        "size: largest zip function",
        f"{largest}, {_mb(sizes[largest])} unzipped with its layers "
        f"(Lambda allows 250 MB: {build.LAMBDA_UNZIPPED_LIMIT:,} bytes)",
    )

    assert {"api_handler", "operator", "import_step", "low_stock"} <= set(zips)
    assert not set(zips) & set(build.ANALYTICS_FUNCTIONS)
    assert {n: s for n, s in sizes.items() if s > build.LAMBDA_UNZIPPED_LIMIT} == {}


def test_no_zip_function_carries_the_analytics_libraries(
    package: build.BuildResult, template: dict[str, Any]
) -> None:
    carried: dict[str, set[str]] = {}
    for name, body in _zip_functions(template).items():
        for path in _artifacts(package, template, body):
            with zipfile.ZipFile(path) as archive:
                parts = {p for n in archive.namelist() for p in n.split("/")[:2]}
            found = {
                lib
                for lib in DATA_LIBRARIES
                if lib in parts or any(p.startswith(f"{lib}-") for p in parts)
            }
            if found:
                carried.setdefault(name, set()).update(found)

    assert carried == {}
