"""The wheel deploys onto an existing Airflow: it carries the DAG files, campaign specs, expectation suites and report
templates, and an installed copy reads them from the package while writing only where the settings say (the current
directory or ``PM_HOME``), never inside site-packages.

The installed copy runs in a fresh interpreter that cannot see the checkout: ``-I -S`` (no current directory, no
``site``, so the editable install's ``.pth`` is not processed) with the wheel's target folder and the environment's
site-packages as plain paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

UV = PROJECT_ROOT / ".tools" / "bin" / "uv"
RESOURCES = ("dags", "campaigns", "expectations", "templates", "sources")

PROBE = r"""
import json, os, sys
target, site_packages = sys.argv[1], sys.argv[2]
sys.path[:0] = [target, site_packages]

import pipelines
from pipelines import config
from pipelines.campaigns.spec import load_specs
from pipelines.templating import TEMPLATES_DIR

settings = config.load_settings()
# As Airflow's DAG processor parses a bundle (it puts the bundle's folder on sys.path, for dags/_wiring.py).
from airflow.dag_processing.dagbag import BundleDagBag

folder = str(settings.dags_dir)
bag = BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name="precision-marketing")
print("PROBE " + json.dumps({
    "package": pipelines.__file__,
    "checkout": config.is_checkout(),
    "paths": {k: str(v) for k, v in settings.model_dump().items() if k.endswith(("_dir", "home"))},
    "database_url": settings.database_url,
    "templates": str(TEMPLATES_DIR),
    "specs": [s.name for s in load_specs(settings.campaigns_dir)],
    "dags": sorted(bag.dag_ids),
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not UV.exists():
        pytest.fail(
            f"{UV} is missing: run the tests through `make test`, which installs uv there", pytrace=False
        )
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [str(UV), "build", "--wheel", "--out-dir", str(out), str(PROJECT_ROOT)],
        check=True,
        capture_output=True,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_carries_the_dags_specs_suites_and_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for resource in RESOURCES:
        prefix = f"pipelines/_bundle/{resource}/"
        shipped = {n.removeprefix(prefix) for n in names if n.startswith(prefix)}
        folder = PROJECT_ROOT / resource  # with sub-folders (templates/web/)
        in_checkout = {
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        }
        assert shipped == in_checkout, (resource, sorted(in_checkout ^ shipped))
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.slow
def test_an_installed_wheel_parses_its_dags_and_writes_only_under_its_home(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [str(UV), "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )
    work = tmp_path / "work"
    work.mkdir()
    bundle = target / "pipelines" / "_bundle"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(bundle / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX": "regexp",
        "PM_DAGS_DIR": str(bundle / "dags"),
    }
    site_packages = sysconfig.get_paths()["purelib"]
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(target), site_packages],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("PROBE ")]
    probe = json.loads(line.removeprefix("PROBE "))

    assert probe["package"] == str(target / "pipelines" / "__init__.py")
    assert probe["checkout"] is False
    paths = probe["paths"]
    # Read-only resources come from the package; everything written goes under the current directory.
    assert paths["campaigns_dir"] == str(bundle / "campaigns")
    assert paths["expectations_dir"] == str(bundle / "expectations")
    assert probe["templates"] == str(bundle / "templates")
    for name in ("home", "data_dir", "mlruns_dir", "airflow_home"):
        expected = {"airflow_home": tmp_path / "airflow"}.get(name, work)
        assert Path(paths[name]).is_relative_to(expected), (name, paths[name])
    assert probe["database_url"] == f"sqlite:///{work / 'data' / 'campaigns.db'}"
    for name, where in paths.items():
        assert not Path(where).is_relative_to(site_packages), (name, where)

    specs = sorted(p.stem for p in (PROJECT_ROOT / "campaigns").glob("*.yaml"))
    realtime = {
        p.stem
        for p in (PROJECT_ROOT / "campaigns").glob("*.yaml")
        if "trigger" in yaml.safe_load(p.read_text())
    }
    assert probe["specs"] == specs
    assert not probe["import_errors"], probe["import_errors"]
    assert set(probe["dags"]) == {
        "churn_training",
        "value_training",
        "campaign_models_training",
        "campaign_readout",
        "model_monitoring",
        "decision_runs",
        # a real-time campaign (a trigger) has no scoring DAG
        *(f"campaign_scoring__{name}" for name in specs if name not in realtime),
        *(f"ingest__{p.stem}" for p in (PROJECT_ROOT / "sources").glob("*.yaml")),  # the wheel's own mappings
    }
    assert not (work / "data").exists(), "reading the settings and parsing the DAGs must not create folders"
