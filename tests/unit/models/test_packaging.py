"""What a registered model carries: the platform's code without compiled files or deployment resources, exact pins
of the installed versions, and no copy of the checkout's uv project; inside the project the checkout's code wins."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipelines.models import packaging
from pipelines.models.propensity import PlatformPyfunc, pyfunc_input
from pipelines.models.registry import load_champion, mlflow_store, train_and_register
from pipelines.models.tables import split_frame
from tests.conftest import PROJECT_ROOT
from tests.unit.models.test_propensity import CATEGORICAL, FAST, FEATURES, make_frame


def test_requirements_pin_the_installed_versions():
    pins = dict(line.split("==") for line in packaging.pip_requirements())
    assert list(pins) == list(packaging.MODEL_DISTRIBUTIONS)
    assert {"mlflow", "lightgbm", "numpy", "pandas", "scikit-learn"} <= set(pins)
    assert pins == {name: importlib.metadata.version(name) for name in pins}
    env = packaging.conda_env()
    assert env["dependencies"][-1] == {"pip": packaging.pip_requirements()}
    assert env["dependencies"][0] == f"python={sys.version.split()[0]}"


def test_the_code_copy_leaves_out_compiled_files_and_bundled_resources(tmp_path, monkeypatch):
    source = tmp_path / "src" / "pipelines"
    for rel, text in {
        "__init__.py": "",
        "models/__init__.py": "",
        "models/propensity.py": "X = 1\n",
        "models/__pycache__/propensity.cpython-311.pyc": "compiled",
        "stray.pyc": "compiled",
        "_bundle/templates/report.md.j2": "resource",
    }.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_text(text)
    monkeypatch.setattr(packaging, "_package_dir", lambda: source)
    copy = packaging.copy_code(tmp_path / "out")
    assert copy == tmp_path / "out" / "pipelines"
    files = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
    assert files == ["__init__.py", "models/__init__.py", "models/propensity.py"]
    assert (copy / "models" / "propensity.py").read_text() == "X = 1\n"


def test_the_real_package_copy_holds_the_models_wing(tmp_path):
    copy = packaging.copy_code(tmp_path)
    assert (copy / "models" / "propensity.py").read_bytes() == (
        PROJECT_ROOT / "pipelines" / "models" / "propensity.py"
    ).read_bytes()
    assert not [p for p in copy.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]


@pytest.mark.slow
def test_a_model_logged_from_the_checkout_carries_code_and_pins_but_no_uv_project(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(PROJECT_ROOT)  # a uv project: MLflow would copy its uv.lock and pyproject.toml
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    train, valid, test = split_frame(make_frame(n=2000), "churned", seed=1)
    result = train_and_register(
        train,
        valid,
        test,
        features=FEATURES,
        categorical=CATEGORICAL,
        label="churned",
        config=replace(FAST, model_name="churn_packaged"),
        tracking_uri=uri,
        experiment="unit-tests",
    )
    with mlflow_store(uri):
        local = Path(mlflow.artifacts.download_artifacts(f"models:/churn_packaged/{result.version}"))
    names = {p.name for p in local.iterdir()}
    assert {"code", "data", "MLmodel", "requirements.txt", "python_env.yaml", "conda.yaml"} <= names
    assert not {"uv.lock", "pyproject.toml", ".python-version"} & names
    assert (local / "requirements.txt").read_text().split() == packaging.pip_requirements()
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["code"] == "code" and flavor["loader_module"] == "pipelines.models.propensity"
    assert (local / "code" / "pipelines" / "models" / "registry.py").is_file()

    # Loading puts the model's code/ first on sys.path, yet the checkout's already-imported package serves it.
    before = sys.path[:]
    try:
        loaded = load_champion("churn_packaged", uri)
        assert any(Path(p).name == "code" for p in sys.path[: len(sys.path) - len(before)])
        # A submodule imported after the load is found through the package's own __path__: the checkout's.
        origin = importlib.util.find_spec("pipelines.readout.stats").origin
        assert Path(origin).is_relative_to(PROJECT_ROOT / "pipelines"), origin
    finally:
        sys.path[:] = before
    unwrapped = loaded.unwrap_python_model()
    assert isinstance(unwrapped, PlatformPyfunc)
    assert Path(inspect.getfile(type(unwrapped.model))).is_relative_to(PROJECT_ROOT / "pipelines")
    served = np.asarray(loaded.predict(pyfunc_input(test, FEATURES, CATEGORICAL))).ravel()
    np.testing.assert_array_equal(served, result.model.predict_proba(test))
