"""Deployment tests start real servers (Airflow's components, the MLflow server, ...) bound to 127.0.0.1 on free
ports and stop them also on failure. Fixtures used by one test module live in that module; this file stays
minimal so the deployment tests do not step on each other."""

from __future__ import annotations

from typing import Any

import pytest

# ------------------------------------------------------------------------------------ docker/ (compose and image)
# Cheap parses of the files in docker/, shared by test_compose.py and test_image.py.


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    import yaml

    from tests.deploy.compose_files import COMPOSE

    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    from tests.deploy.compose_files import ENV_EXAMPLE, read_env_file

    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def env(example) -> dict[str, str]:
    from tests.deploy.compose_files import stand_in_env

    return stand_in_env(example)


@pytest.fixture(scope="module")
def compose(raw, env) -> dict[str, Any]:
    from tests.deploy.compose_files import COMPOSE, ENV_EXAMPLE, MissingVariable, interpolated

    try:
        return interpolated(raw, env)
    except MissingVariable as exc:
        pytest.fail(
            f"{COMPOSE.name} requires ${{{exc.name}}}, which {ENV_EXAMPLE.name} does not define",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def image_env() -> dict[str, str]:
    from tests.deploy.compose_files import dockerfile_env, dockerfile_instructions

    return dockerfile_env(dockerfile_instructions())
