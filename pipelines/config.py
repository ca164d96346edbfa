"""Typed settings: the only module that reads the environment.

Defaults are embedded (a data folder and an MLflow store inside the project, a SQLite campaign database), so a
fresh clone runs with no configuration. Each setting can be overridden with a ``PM_`` variable, or the standard
``MLFLOW_TRACKING_URI``. Reading the settings has no side effects: nothing is created and nothing is connected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Where the platform reads and writes. All paths are absolute."""

    data_dir: Path = PROJECT_ROOT / "data"
    expectations_dir: Path = PROJECT_ROOT / "expectations"
    campaigns_dir: Path = PROJECT_ROOT / "campaigns"
    mlruns_dir: Path = PROJECT_ROOT / "mlruns"
    database_url: str = ""
    mlflow_tracking_uri: str = ""
    seed: int = 42
    # Airflow: its home (metadata DB, logs) for local runs, and the retry policy of every task.
    airflow_home: Path = PROJECT_ROOT / ".airflow"
    dags_dir: Path = PROJECT_ROOT / "dags"
    task_retries: int = 2
    retry_delay_seconds: int = 300

    def __post_init__(self) -> None:
        for name in (
            "data_dir",
            "expectations_dir",
            "campaigns_dir",
            "mlruns_dir",
            "airflow_home",
            "dags_dir",
        ):
            object.__setattr__(self, name, Path(getattr(self, name)).expanduser().resolve())
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'campaigns.db'}")
        if not self.mlflow_tracking_uri:
            object.__setattr__(self, "mlflow_tracking_uri", f"sqlite:///{self.mlruns_dir / 'mlflow.db'}")

    @property
    def lake_dir(self) -> Path:
        """Parquet lake: one folder per source table."""
        return self.data_dir / "lake"

    @property
    def truth_dir(self) -> Path:
        """Ground truth written by the synthetic generator; never read by features or models."""
        return self.data_dir / "truth"

    @property
    def runs_dir(self) -> Path:
        """Per-run outputs (validation reports, scored lists), one folder per run id."""
        return self.data_dir / "runs"

    def with_data_dir(self, data_dir: str | Path | None) -> Settings:
        """The same settings pointed at another data folder (a CLI ``--data`` flag)."""
        if data_dir is None:
            return self
        database_url = (
            "" if self.database_url == Settings(data_dir=self.data_dir).database_url else self.database_url
        )
        return replace(self, data_dir=Path(data_dir), database_url=database_url)


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings from defaults overridden by ``PM_*`` (and ``MLFLOW_TRACKING_URI``) environment variables."""
    env = os.environ if environ is None else environ
    kwargs: dict[str, object] = {}
    for key, name in (
        ("PM_DATA_DIR", "data_dir"),
        ("PM_EXPECTATIONS_DIR", "expectations_dir"),
        ("PM_CAMPAIGNS_DIR", "campaigns_dir"),
        ("PM_MLRUNS_DIR", "mlruns_dir"),
        ("PM_DATABASE_URL", "database_url"),
        ("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        ("AIRFLOW_HOME", "airflow_home"),
        ("PM_DAGS_DIR", "dags_dir"),
    ):
        if env.get(key):
            kwargs[name] = env[key]
    for key, name in (
        ("PM_SEED", "seed"),
        ("PM_TASK_RETRIES", "task_retries"),
        ("PM_RETRY_DELAY_SECONDS", "retry_delay_seconds"),
    ):
        if env.get(key):
            try:
                kwargs[name] = int(env[key])
            except ValueError as exc:
                raise ValueError(f"{key} must be an integer, got {env[key]!r}") from exc
    return Settings(**kwargs)  # type: ignore[arg-type]


def airflow_environment(settings: Settings) -> dict[str, str]:
    """The environment a local Airflow (``dag.test()``, ``airflow standalone``) needs for this project: its home
    and SQLite metadata database under ``.airflow/``, the project's DAGs, no example DAGs, and the platform's
    own settings passed through so tasks see the same data folder, database and MLflow store."""
    home = settings.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PM_DATA_DIR": str(settings.data_dir),
        "PM_CAMPAIGNS_DIR": str(settings.campaigns_dir),
        "PM_EXPECTATIONS_DIR": str(settings.expectations_dir),
        "PM_DATABASE_URL": settings.database_url,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "PM_TASK_RETRIES": str(settings.task_retries),
        "PM_RETRY_DELAY_SECONDS": str(settings.retry_delay_seconds),
    }
