"""Checks that a registered platform model stands alone: it loads and predicts in a process where the project is
not importable (:func:`check_standalone`), and ``mlflow models serve`` answers it from an environment built from
the model's own requirements (:func:`check_served`). The integration tests call them on models they already
trained and registered.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from tests.conftest import PROJECT_ROOT

# Imported by a library only when it is installed (sklearn.utils._optional_dependencies): no requirement.
OPTIONAL_IMPORTS = frozenset({"rich"})
UV = PROJECT_ROOT / ".tools" / "bin" / "uv"
SERVE_TIMEOUT_S = 600.0

# Run with `python -I -S`: no site processing, so neither the venv's site-packages nor the project's editable
# install are on sys.path; the site-packages folder is then added as a plain path (no .pth files are read).
_STANDALONE = r"""
import json, sys, time
site_packages, uri, name, out = sys.argv[1:5]
sys.path.append(site_packages)
try:
    import pipelines.models.propensity
except ModuleNotFoundError:
    pass
else:
    raise SystemExit(f"the project is importable here: {pipelines.__file__}")
# An editable install leaves a `pipelines` folder without code in site-packages (the wheel's _bundle resources),
# which imports as an empty namespace package: forget it, as a fresh process would not have it imported.
for key in [k for k in sys.modules if k == "pipelines" or k.startswith("pipelines.")]:
    del sys.modules[key]
import importlib.metadata
import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow.models import Model

mlflow.set_tracking_uri(uri)
mlflow.set_registry_uri(uri)
model_uri = f"models:/{name}@champion"
local = mlflow.artifacts.download_artifacts(model_uri)
example = Model.load(local).load_input_example(local)
before = set(sys.modules)
started = time.perf_counter()
model = mlflow.pyfunc.load_model(model_uri)
predictions = np.asarray(model.predict(example), dtype=float).ravel()
seconds = time.perf_counter() - started
tops = {m.partition(".")[0] for m in set(sys.modules) - before} - {"pipelines"}  # the model's own code
owners = importlib.metadata.packages_distributions()
with open(out, "w") as fh:
    json.dump(
        {
            "predictions": predictions.tolist(),
            "imported": sorted({d for t in tops for d in owners.get(t, ())}),
            "pipelines": sys.modules["pipelines"].__file__,
            "seconds": seconds,
        },
        fh,
    )
"""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _in_project(tracking_uri: str, name: str) -> tuple[Path, np.ndarray]:
    """The champion's local artifact folder and its predictions on its logged input example, in this process
    (the project's own ``pipelines``, as the batch scoring reads it)."""
    import mlflow
    from mlflow.models import Model

    import pipelines
    from pipelines.models.propensity import PlatformPyfunc
    from pipelines.models.registry import load_champion, mlflow_store

    with mlflow_store(tracking_uri):
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion"))
    example = Model.load(str(local)).load_input_example(str(local))
    assert example is not None and len(example) > 0, f"{name}: no input example logged"
    package = Path(pipelines.__file__).resolve().parent
    path_before = sys.path[:]
    try:
        # Loading prepends the model's code/ to sys.path; the project's already-imported package must still win.
        pyfunc = load_champion(name, tracking_uri)
        unwrapped = pyfunc.unwrap_python_model()
        assert isinstance(unwrapped, PlatformPyfunc), type(unwrapped)
        model_file = Path(inspect.getfile(type(unwrapped.model))).resolve()
        assert model_file.is_relative_to(package), f"{name}: the model's class came from {model_file}"
        assert Path(sys.modules["pipelines"].__file__).resolve().parent == package
        return local, np.asarray(pyfunc.predict(example), dtype=float).ravel()
    finally:
        sys.path[:] = path_before


def _requirements(local: Path) -> dict[str, str]:
    """Canonical name -> pinned version of the model's requirements.txt; every line must be an exact pin."""
    pins = {}
    for line in (local / "requirements.txt").read_text().split():
        name, sep, version = line.partition("==")
        assert sep and version, f"requirements.txt line {line!r} is not an exact pin"
        pins[_canonical(name)] = version
    return pins


def check_standalone(tracking_uri: str, name: str, workdir: Path) -> dict:
    """Assert that ``models:/<name>@champion`` in the store at ``tracking_uri`` carries the platform's code and
    exact pins of what it imports, and loads and predicts its logged input example in a process where the
    project is not importable exactly as it does here. Returns the in-project predictions, the model's local
    folder, the code's size in bytes and the standalone load+predict seconds."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    local, expected = _in_project(tracking_uri, name)

    assert not (local / "uv.lock").exists() and not (local / "pyproject.toml").exists(), sorted(
        local.iterdir()
    )
    code = local / "code" / "pipelines"
    assert (code / "models" / "propensity.py").is_file(), f"{name}: no platform code in {local / 'code'}"
    compiled = [p for p in code.rglob("*") if p.name == "__pycache__" or p.suffix in (".pyc", ".pyo")]
    assert compiled == [], compiled[:5]
    pins = _requirements(local)
    installed = {n: importlib.metadata.version(n) for n in pins}
    assert pins == installed, f"{name}: requirements {pins} differ from the installed versions {installed}"
    python_env = (local / "python_env.yaml").read_text()
    assert "-r requirements.txt" in python_env and f"python: {sys.version.split()[0]}" in python_env

    out = workdir / f"standalone_{name}.json"
    site_packages = sysconfig.get_paths()["purelib"]
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", _STANDALONE, site_packages, tracking_uri, name, str(out)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")},
    )
    assert proc.returncode == 0, (
        f"{name}: standalone load failed\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    result = json.loads(out.read_text())
    assert "/code/pipelines/" in result["pipelines"], f"{name}: pipelines came from {result['pipelines']}"
    np.testing.assert_array_equal(np.asarray(result["predictions"]), expected, err_msg=name)
    unpinned = {_canonical(d) for d in result["imported"]} - set(pins) - OPTIONAL_IMPORTS
    unpinned -= {"mlflow-skinny", "mlflow-tracing"}  # MLflow's own parts, pinned by mlflow==<version>
    assert unpinned == set(), f"{name}: loading imports {sorted(unpinned)}, absent from requirements {pins}"
    return {
        "local": local,
        "expected": expected,
        "code_bytes": sum(p.stat().st_size for p in code.rglob("*") if p.is_file()),
        "seconds": result["seconds"],
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass


def check_served(tracking_uri: str, name: str, workdir: Path, standalone: dict) -> float:
    """Assert that ``mlflow models serve --env-manager uv`` builds the model's own environment (from its
    requirements, in a fresh env root under ``workdir``) and answers the logged serving example with the
    in-project predictions (``standalone`` is what :func:`check_standalone` returned). The server binds 127.0.0.1
    on a free port and its process group is stopped also on failure. Returns the seconds from start to answer."""
    assert UV.is_file(), f"uv is absent: {UV} (make .venv bootstraps it)"
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    body = (standalone["local"] / "serving_input_example.json").read_bytes()
    port = _free_port()
    log = workdir / f"serve_{name}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{UV.parent}{os.pathsep}{env.get('PATH', '')}",
        UV_PYTHON_DOWNLOADS="never",
        MLFLOW_ENV_ROOT=str(workdir / "envs"),
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_REGISTRY_URI=tracking_uri,
    )
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@champion"]
    command += ["--env-manager", "uv", "-h", "127.0.0.1", "-p", str(port)]
    started = time.perf_counter()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        answer = None
        while answer is None:
            elapsed = time.perf_counter() - started
            if proc.poll() is not None or elapsed > SERVE_TIMEOUT_S:
                raise AssertionError(
                    f"mlflow models serve for {name} (exit code {proc.returncode}) did not answer within "
                    f"{elapsed:.0f} s; its log:\n{log.read_text(errors='replace')[-8000:]}"
                )
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
            except urllib.error.HTTPError as exc:
                raise AssertionError(
                    f"{name}: /invocations answered {exc.code}: {exc.read()[:2000]!r}\n"
                    f"{log.read_text(errors='replace')[-6000:]}"
                ) from exc
            except (urllib.error.URLError, ConnectionError):
                time.sleep(1.0)
        seconds = time.perf_counter() - started
        served = np.asarray(answer["predictions"], dtype=float).ravel()
        np.testing.assert_array_equal(
            served,
            standalone["expected"],
            err_msg=f"{name} served:\n{log.read_text(errors='replace')[-4000:]}",
        )
        return seconds
    finally:
        _stop(proc)
