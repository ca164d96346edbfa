"""Module boundaries the design relies on: importing does nothing, `pipelines` stays orchestration-free, and each
wing imports only the wings below it
(data ← features ← models ← campaigns ← readout ← monitoring ← jobs ← web ← cli)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "pipelines"
MODULES = sorted(
    ".".join(p.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
)

# The stack, bottom first. A module may import its own wing and the wings below it, and the base modules
# (config, runs, progress, templating) from anywhere; the base imports nothing but other base modules.
WINGS = ("data", "features", "models", "campaigns", "readout", "monitoring", "jobs", "web", "decide", "cli")
# Peers at the top of the stack: neither imports the other.
PEERS = {("decide", "web"), ("web", "decide")}
BASE = ("config", "runs", "progress", "templating")
# The synthetic bank and its oracle read the lake's schema and compare models with the truth; only the top of the
# stack (a job that reports the oracle, the CLI that generates a bank) may use them.
SYNTHETIC_MAY_IMPORT = ("data", "features", "models")
SYNTHETIC_USERS = ("jobs", "cli")


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imported(path: Path) -> set[str]:
    """Every ``pipelines`` module a file imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pipelines"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if (
                node.module == "pipelines"
                or node.module.count(".") == 1
                and node.module.startswith("pipelines.")
            ):
                found.update(
                    f"{node.module}.{a.name}" for a in node.names
                )  # `from pipelines.data import gates`
            elif node.module.startswith("pipelines."):
                found.add(node.module)
    return found


def _allowed(importer: str, imported: str) -> bool:
    if imported == importer or imported in BASE:
        return True
    if importer in BASE:
        return False
    if importer == "synthetic":
        return imported in SYNTHETIC_MAY_IMPORT
    if imported == "synthetic":
        return importer in SYNTHETIC_USERS
    if (importer, imported) in PEERS:
        return False
    return WINGS.index(imported) <= WINGS.index(importer)


def wing_violations(root: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        importer = _wing(module)
        if not importer:
            continue
        for target in sorted(_imported(path)):
            imported = _wing(target)
            if imported and not _allowed(importer, imported):
                problems.append(f"{module} imports {target} ({importer} may not use {imported})")
    return problems


def test_each_wing_imports_only_the_wings_below_it():
    problems = wing_violations()
    assert not problems, "\n".join(problems)


def test_the_wing_check_catches_an_upward_import(tmp_path):
    """The check above could fail: a features module that imports a campaign module is reported."""
    pkg = tmp_path / "pipelines"
    for wing in ("features", "campaigns", "synthetic"):
        (pkg / wing).mkdir(parents=True)
    (pkg / "features" / "wide.py").write_text(
        "def f():\n    from pipelines.campaigns.spec import load_spec\n"
    )
    (pkg / "campaigns" / "spec.py").write_text("from pipelines.synthetic import oracle\n")
    (pkg / "config.py").write_text("from pipelines.data import storage\n")
    assert wing_violations(pkg) == [
        "pipelines.campaigns.spec imports pipelines.synthetic.oracle (campaigns may not use synthetic)",
        "pipelines.config imports pipelines.data.storage (config may not use data)",
        "pipelines.features.wide imports pipelines.campaigns.spec (features may not use campaigns)",
    ]


def test_every_module_is_in_a_wing_or_the_base():
    stray = [m for m in MODULES if _wing(m) and _wing(m) not in (*WINGS, *BASE, "synthetic")]
    assert not stray, f"modules outside the wings {WINGS} and the base {BASE}: {stray}"


def test_no_module_is_over_600_lines():
    long = {
        str(p.relative_to(PROJECT_ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert not long, f"split these by reason to change: {long}"


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
    assert len(MODULES) >= 30


def test_no_module_imports_airflow_anywhere():
    """``pipelines`` is orchestration-free: no import of Airflow, not even inside a function (the dag.test()
    runner is ``dags/_local_run.py``)."""
    for path in PACKAGE.rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import airflow", "from airflow")), f"{path}: {line}"


def test_model_inputs_cannot_reach_the_ground_truth():
    """Features and labels read the lake only; the truth is for the oracle (pipelines/synthetic/) and tests."""
    for path in (PACKAGE / "features").rglob("*.py"):
        text = path.read_text()
        for needle in ('"truth"', "truth_dir", "oracle", "CHURN_TRUTH", "TRUTH_TABLES"):
            assert needle not in text, f"{path.name} mentions {needle}"
