"""Module boundaries the design relies on: importing does nothing, and `pipelines` stays orchestration-free."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import PROJECT_ROOT

MODULES = ["pipelines." + p.stem for p in (PROJECT_ROOT / "pipelines").glob("*.py") if p.stem != "__init__"]


def test_importing_every_module_loads_no_airflow_and_no_heavy_libraries(tmp_path):
    code = (
        "import sys, importlib\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
        "heavy = [m for m in ('airflow', 'great_expectations', 'mlflow', 'lightgbm') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    env = {"PM_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported at module level: {done.stdout.strip()}"
    assert list(tmp_path.iterdir()) == [], "importing created files"
    assert len(MODULES) >= 6


def test_no_module_imports_airflow_anywhere():
    """``pipelines`` is orchestration-free: no import of Airflow, not even inside a function (the dag.test()
    runner is ``dags/_local_run.py``)."""
    for path in (PROJECT_ROOT / "pipelines").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import airflow", "from airflow")), f"{path}: {line}"


def test_model_inputs_cannot_reach_the_ground_truth():
    """Features and labels read the lake only; the truth is for the oracle (pipelines/oracle.py) and tests."""
    for name in ("features.py", "labels.py"):
        text = (PROJECT_ROOT / "pipelines" / name).read_text()
        for needle in ('"truth"', "truth_dir", "oracle", "CHURN_TRUTH", "TRUTH_TABLES"):
            assert needle not in text, f"{name} mentions {needle}"
