"""What a registered model carries so that it loads and predicts without this checkout: the platform's code and
a complete, pinned environment.

The pickled pyfunc (:func:`propensity.pyfunc_parts`) refers to platform classes by name, so MLflow logs a copy of
the ``pipelines`` package with the model (``code_paths``, :func:`copy_code`): loading puts the model's ``code/``
folder first on ``sys.path``, so ``pipelines.models.*`` resolve from it where the project is not installed. Inside
the project the already-imported ``pipelines`` wins: a package's submodules are found through its own
``__path__``, never through ``sys.path``, so the checkout's code and the model's copy are never mixed.

:func:`pip_requirements` pins, at the installed versions, every third-party distribution that loading and
predicting a platform model imports (:data:`MODEL_DISTRIBUTIONS`); the model's ``requirements.txt``,
``python_env.yaml`` and ``conda.yaml`` come from it, so ``mlflow models serve`` can build the model's own
environment. Nothing here imports MLflow.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
from pathlib import Path
from typing import Any

# What loading and predicting a platform model imports, measured in a process without the project
# (tests/integration/standalone.py checks it for churn, value, response and uplift: every distribution the load
# imports beyond MLflow's own loader must be listed here). Each is pinned to the installed version; what they
# require besides is left to the resolver.
MODEL_DISTRIBUTIONS = (
    "mlflow",  # the pyfunc loader, and the scoring server of `mlflow models serve`
    "lightgbm",  # the boosters the pickle rebuilds (CalibratedModel, ValueModel, the uplift learners)
    "numpy",  # arrays in the pickle (the calibrator's thresholds) and every prediction
    "pandas",  # the feature frame in, the category encoding
    "scikit-learn",  # pipelines.models.evaluate imports sklearn.metrics at module level, propensity imports it
    "scipy",  # imported by sklearn.metrics and lightgbm; CalibratedModel's path contributions use it
    "joblib",  # imported by sklearn and lightgbm when they load
    "threadpoolctl",  # imported by sklearn when it loads
    "narwhals",  # imported by sklearn and lightgbm when they load
)
CODE_PACKAGE = "pipelines"
# What the copy of the package leaves out: compiled files (rebuilt where the code runs) and, in an installed wheel,
# the deployment's resources (pipelines/_bundle: DAGs, campaign specs, suites, templates), which no model reads.
_CODE_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "_bundle")


def _package_dir() -> Path:
    import pipelines

    return Path(pipelines.__file__).resolve().parent


def pip_requirements() -> list[str]:
    """``name==version`` of each of :data:`MODEL_DISTRIBUTIONS`, the versions installed here."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in MODEL_DISTRIBUTIONS]


def conda_env() -> dict[str, Any]:
    """The model's conda environment, given explicitly: MLflow's default pins pip to the installed version, and
    the uv environment has no pip (it warned on every log). Its pip section is :func:`pip_requirements`, which
    MLflow also writes as ``requirements.txt`` (and ``python_env.yaml`` refers to)."""
    return {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={platform.python_version()}", "pip", {"pip": pip_requirements()}],
    }


def copy_code(directory: str | Path) -> Path:
    """A copy of the ``pipelines`` package in ``directory`` (``directory/pipelines``), without compiled files:
    what ``code_paths`` logs with a model. Returns the copy's path."""
    target = Path(directory) / CODE_PACKAGE
    shutil.copytree(_package_dir(), target, ignore=_CODE_IGNORED)
    return target


__all__ = ["CODE_PACKAGE", "MODEL_DISTRIBUTIONS", "conda_env", "copy_code", "pip_requirements"]
