"""Settings: embedded defaults, environment overrides, no side effects."""

from __future__ import annotations

import pytest

from pipelines.config import PROJECT_ROOT, Settings, load_settings


def test_defaults_are_embedded_and_absolute():
    settings = load_settings({})
    assert settings.data_dir == PROJECT_ROOT / "data"
    assert settings.database_url == f"sqlite:///{PROJECT_ROOT / 'data' / 'campaigns.db'}"
    assert settings.mlflow_tracking_uri == f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"
    assert settings.lake_dir == PROJECT_ROOT / "data" / "lake"


def test_environment_overrides(tmp_path):
    settings = load_settings(
        {"PM_DATA_DIR": str(tmp_path), "PM_SEED": "7", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
    )
    assert settings.data_dir == tmp_path and settings.seed == 7
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"
    with pytest.raises(ValueError, match="PM_SEED must be an integer, got .seven."):
        load_settings({"PM_SEED": "seven"})


def test_a_data_flag_moves_the_default_database_but_not_an_explicit_one(tmp_path):
    moved = load_settings({}).with_data_dir(tmp_path)
    assert moved.database_url == f"sqlite:///{tmp_path / 'campaigns.db'}"
    explicit = load_settings({"PM_DATABASE_URL": "postgresql://127.0.0.1/test"}).with_data_dir(tmp_path)
    assert explicit.database_url == "postgresql://127.0.0.1/test"
    assert not (tmp_path / "campaigns.db").exists()


def test_constructing_settings_reads_no_environment(monkeypatch, tmp_path):
    """Only load_settings reads the environment: a variable a library leaves behind (mlflow.set_tracking_uri
    writes MLFLOW_TRACKING_URI) cannot redirect settings a caller built explicitly."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.setenv("PM_SEED", "3")
    built = Settings(data_dir=tmp_path)
    assert built.seed == 42 and built.mlflow_tracking_uri.startswith("sqlite:///")
    assert load_settings().seed == 3 and load_settings().mlflow_tracking_uri == "http://127.0.0.1:1"


def test_standard_variables_and_unknown_fields():
    settings = load_settings({"AIRFLOW_HOME": "/srv/airflow", "PM_TASK_RETRIES": "0", "UNRELATED": "x"})
    assert str(settings.airflow_home) == "/srv/airflow" and settings.task_retries == 0
    with pytest.raises(ValueError):
        Settings(data_dirr="typo")


def test_home_moves_every_writable_default_and_explicit_folders_stay(tmp_path):
    settings = load_settings({"PM_HOME": str(tmp_path), "PM_MLRUNS_DIR": str(tmp_path / "elsewhere")})
    assert settings.data_dir == tmp_path / "data"
    assert settings.airflow_home == tmp_path / ".airflow"
    assert settings.mlruns_dir == tmp_path / "elsewhere"
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'campaigns.db'}"
    # Read-only resources stay the checkout's.
    assert settings.campaigns_dir == PROJECT_ROOT / "campaigns"


def test_an_installed_package_reads_its_bundled_resources_and_writes_under_the_current_directory(
    monkeypatch, tmp_path
):
    from pipelines import config

    monkeypatch.setattr(config, "is_checkout", lambda root=config.PROJECT_ROOT: False)
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.data_dir == tmp_path / "data" and settings.mlruns_dir == tmp_path / "mlruns"
    for name in config.RESOURCES:
        assert config.resource_dir(name) == config.BUNDLE_DIR / name
    assert settings.dags_dir == config.BUNDLE_DIR / "dags"
    with pytest.raises(ValueError, match="unknown resource folder 'data'"):
        config.resource_dir("data")


def test_database_urls_from_airflow_connections_read_as_sqlalchemy_urls():
    settings = load_settings({"PM_DATABASE_URL": "postgres://campaigns:secret@db:5432/campaigns"})
    assert settings.database_url == "postgresql://campaigns:secret@db:5432/campaigns"
    assert load_settings({"PM_DATABASE_URL": "sqlite:////x.db"}).database_url == "sqlite:////x.db"
