"""Typed settings: the only module that reads the environment.

Defaults are embedded (a data folder and an MLflow store inside the project, a SQLite campaign database), so a
fresh clone runs with no configuration. Each setting can be overridden with a ``PM_`` variable, or the standard
``MLFLOW_TRACKING_URI`` and ``AIRFLOW_HOME`` (pydantic-settings reads and types them). Reading the settings has no
side effects: nothing is created and nothing is connected.

Where the defaults point depends on how the platform is installed. In a checkout, everything is inside it (the
top-level ``dags/``, ``campaigns/``, ``expectations/``, ``templates/``, and ``data/``, ``mlruns/``, ``.airflow/``).
Installed from the wheel, the read-only resources are the copies the wheel carries (``pipelines/_bundle/``), and the
writable folders are under ``PM_HOME`` (default: the current directory), never inside site-packages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.sources import EnvSettingsSource

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
# The resource folders the wheel carries inside the package (pyproject.toml, [tool.hatch...force-include]).
BUNDLE_DIR = PACKAGE_DIR / "_bundle"
RESOURCES = ("dags", "campaigns", "expectations", "templates", "sources")

ENV_PREFIX = "PM_"
# A PostgreSQL role name the schema step can create and quote safely.
_ROLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
# What MLFLOW_TRACKING_URI may name: a database store or a tracking server (a folder store is refused by MLflow 3).
_MLFLOW_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mssql", "http", "https", "databricks")
_PATHS = (
    "home",
    "data_dir",
    "expectations_dir",
    "campaigns_dir",
    "sources_dir",
    "mlruns_dir",
    "airflow_home",
    "dags_dir",
    "web_dir",
)


def is_checkout(root: Path = PROJECT_ROOT) -> bool:
    """True when the package runs from a source checkout (``pyproject.toml`` and ``dags/`` beside it), False when
    installed from the wheel (then ``root`` is site-packages)."""
    return (root / "pyproject.toml").is_file() and (root / "dags").is_dir()


def resource_dir(name: str) -> Path:
    """A read-only resource folder (``dags``, ``campaigns``, ``expectations``, ``templates``, ``sources``): the
    checkout's top-level folder, or the copy inside the installed package."""
    if name not in RESOURCES:
        raise ValueError(f"unknown resource folder {name!r}; known: {', '.join(RESOURCES)}")
    return PROJECT_ROOT / name if is_checkout() else BUNDLE_DIR / name


def default_home() -> Path:
    """Where the writable defaults live: the checkout, or (installed) the current directory."""
    return PROJECT_ROOT if is_checkout() else Path.cwd()


def normalise_database_url(url: str) -> str:
    """A database URL as SQLAlchemy 2 reads it: ``postgres://`` (what Airflow connections and Heroku-style URLs
    give) becomes ``postgresql://``."""
    for old in ("postgres://", "postgres+psycopg://"):
        if url.startswith(old):
            return "postgresql" + url[len("postgres") :]
    return url


class Settings(BaseSettings):
    """Where the platform reads and writes. All paths are absolute.

    Constructing one reads nothing but its arguments (a test's ``Settings(data_dir=...)`` is not changed by a
    variable some library left in the environment); :func:`load_settings` is the one reader of the environment.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # Base of the writable defaults (data, mlruns, .airflow) when they are not set one by one.
    home: Path = Field(default_factory=default_home)
    data_dir: Path | None = None  # default: <home>/data
    expectations_dir: Path = Field(default_factory=lambda: resource_dir("expectations"))
    campaigns_dir: Path = Field(default_factory=lambda: resource_dir("campaigns"))
    # Source mappings (``sources/<name>.yaml``, docs/bring-your-own-data.md) that ``pmp ingest --source`` reads.
    sources_dir: Path = Field(default_factory=lambda: resource_dir("sources"))
    mlruns_dir: Path | None = None  # default: <home>/mlruns
    database_url: str = ""
    # An Airflow connection id to take the campaign database URL from, in place of PM_DATABASE_URL (resolved by the
    # DAGs' tasks, which run inside Airflow: dags/_wiring.py).
    database_conn_id: str = ""
    # Where a failed task is reported besides runs/failures.jsonl: a URL that receives a JSON POST (a chat webhook).
    alert_webhook_url: str = ""
    # The standard MLflow and Airflow variables, without the prefix.
    mlflow_tracking_uri: str = Field(
        "", validation_alias=AliasChoices("mlflow_tracking_uri", "MLFLOW_TRACKING_URI")
    )
    seed: int = 42
    # The hyperparameter search of the platform's propensity trainings (churn, response, pmp train --table): trials
    # (the first is the untuned parameters) and a cap in seconds per training; either 0 = no search. Off by
    # default: at a budget `make run` can afford it did not improve test AUC, and a cap that stops a search makes
    # retrains differ (pipelines.models.tuning, docs/models.md "Hyperparameter search").
    tune_trials: int = Field(0, ge=0)
    tune_seconds: int = Field(120, ge=0)
    # Model monitoring (docs/monitoring.md): the population stability index of the score and of the model's top
    # features warns at psi_warn and alerts at psi_alert; realised AUC that fell by decay_warn / decay_alert below
    # the model's test AUC at registration warns / alerts. An alert asks for retraining (the retrain_<model> asset).
    psi_warn: float = Field(0.1, gt=0)
    psi_alert: float = Field(0.25, gt=0)
    decay_warn: float = Field(0.03, gt=0)
    decay_alert: float = Field(0.05, gt=0)
    # Airflow: its home (metadata DB, logs) for local runs, and the retry policy of every task.
    airflow_home: Path | None = Field(None, validation_alias=AliasChoices("airflow_home", "AIRFLOW_HOME"))
    dags_dir: Path = Field(default_factory=lambda: resource_dir("dags"))
    task_retries: int = Field(2, ge=0)
    retry_delay_seconds: int = Field(300, ge=0)
    # Who may see contact data (docs/operations.md, "Contact data"). PostgreSQL: the schema step creates these
    # NOLOGIN group roles; members of the staff role read runs, targets and results, only members of the contact
    # role may export contact details. SQLite has no roles: the OS accounts in contact_users may (comma separated
    # in PM_CONTACT_USERS; empty = nobody).
    staff_role: str = Field("pmp_staff", pattern=_ROLE_NAME)
    contact_role: str = Field("pmp_contact", pattern=_ROLE_NAME)
    contact_users: Annotated[tuple[str, ...], NoDecode] = ()
    # The staff app (pmp serve): its users file (users.toml: name, role, scrypt hash), its session key and the demo
    # passwords live here (default <data>/web, git-ignored; docs/staff-app.md). A session key set in
    # PM_WEB_SECRET_KEY is used instead of the generated one (several app processes must share one).
    web_dir: Path | None = None
    web_secret_key: str = Field("", repr=False)
    # Where real-time decisions read the latest batch run's features (pipelines.features.online_store): a folder
    # (default <data>/online, loaded into memory by the decision service) or a Redis URL (redis://HOST:PORT/DB).
    online_store: str = ""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (init_settings,)

    @field_validator("contact_users", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return tuple(str(v).strip() for v in value if str(v).strip())
        return value

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _mlflow_store_url(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].split("+", 1)[0].lower() if "://" in value else ""
        if value and scheme not in _MLFLOW_SCHEMES:
            raise ValueError(
                "a database URL (sqlite:///PATH, postgresql://USER@HOST/DB) or an MLflow server "
                "(http[s]://HOST:PORT); MLflow 3 refuses a plain folder or file: store"
            )
        return value

    @model_validator(mode="after")
    def _absolute_paths_and_default_stores(self) -> Settings:
        home = Path(self.home).expanduser().resolve()
        for name, under_home in (
            ("data_dir", "data"),
            ("mlruns_dir", "mlruns"),
            ("airflow_home", ".airflow"),
        ):
            if getattr(self, name) is None:
                object.__setattr__(self, name, home / under_home)
        if self.web_dir is None:
            object.__setattr__(self, "web_dir", Path(self.data_dir).expanduser() / "web")
        for name in _PATHS:
            object.__setattr__(self, name, Path(getattr(self, name)).expanduser().resolve())
        object.__setattr__(self, "database_url", normalise_database_url(self.database_url))
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'campaigns.db'}")
        if not self.mlflow_tracking_uri:
            object.__setattr__(self, "mlflow_tracking_uri", f"sqlite:///{self.mlruns_dir / 'mlflow.db'}")
        if not self.online_store:
            object.__setattr__(self, "online_store", str(self.data_dir / "online"))
        elif "://" not in self.online_store:
            object.__setattr__(self, "online_store", str(Path(self.online_store).expanduser().resolve()))
        return self

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
        values = self.model_dump()
        if self.database_url == Settings(data_dir=self.data_dir).database_url:
            values["database_url"] = (
                ""  # the default database moves with the data folder; an explicit one stays
            )
        if self.web_dir == self.data_dir / "web":
            values["web_dir"] = None  # so does the staff app's folder
        if self.online_store == str(self.data_dir / "online"):
            values["online_store"] = ""  # and the embedded online store
        return Settings(**{**values, "data_dir": Path(data_dir)})


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._environ.items() if v != ""}


def _variable(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[-1])
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from defaults overridden by ``PM_*`` (and ``MLFLOW_TRACKING_URI``, ``AIRFLOW_HOME``) variables of
    ``environ`` (default: the process environment). A bad value fails with the variable named."""
    env = os.environ if environ is None else environ

    class _FromEnvironment(Settings):
        @classmethod
        def settings_customise_sources(
            cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
        ):
            return (_MappingEnvSource(settings_cls, env),)

    try:
        values: dict[str, Any] = _FromEnvironment().model_dump()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            wanted = "an integer" if Settings.model_fields[field].annotation is int else "valid"
            if error["type"] == "greater_than_equal":
                wanted = f"an integer >= {error['ctx']['ge']}"
            elif error["type"] == "value_error":
                wanted = str(error["msg"]).removeprefix("Value error, ")
            got = error.get("input")
            if isinstance(got, str):  # a URL's password is never shown
                got = re.sub(r"(//[^:/@\s]+:)[^@/\s]+@", r"\1***@", got)
            problems.append(f"{_variable(field)} must be {wanted}, got {got!r}")
        raise ValueError("; ".join(problems)) from None
    return Settings(**values)


def airflow_environment(settings: Settings) -> dict[str, str]:
    """The environment a local Airflow (``dag.test()``, ``airflow standalone``) needs for this project: its home
    and SQLite metadata database under ``.airflow/``, the project's DAGs, no example DAGs, and the platform's
    own settings passed through so tasks see the same data folder, database and MLflow store."""
    home = settings.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # dags/.airflowignore in regexp syntax: the glob default builds pathspec's deprecated GitWildMatchPattern.
        "AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX": "regexp",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PM_DATA_DIR": str(settings.data_dir),
        "PM_CAMPAIGNS_DIR": str(settings.campaigns_dir),
        "PM_EXPECTATIONS_DIR": str(settings.expectations_dir),
        "PM_DATABASE_URL": settings.database_url,
        "PM_ONLINE_STORE": settings.online_store,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "PM_TASK_RETRIES": str(settings.task_retries),
        "PM_RETRY_DELAY_SECONDS": str(settings.retry_delay_seconds),
    }
