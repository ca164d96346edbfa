"""``pmp mlflow serve MODEL``: a registered champion answering ``POST /invocations`` on 127.0.0.1, started as a user of
a fresh clone starts it (by path, no virtual environment activated: MLflow finds its web server on PATH only because
the command puts the environment's ``bin`` there), answering the model's own logged serving example with the
predictions batch scoring makes, and stopping on Ctrl-C."""

from __future__ import annotations

import json
import signal
import urllib.request

import numpy as np
import pytest

from pipelines.cli import supervise
from pipelines.models.registry import train_and_register
from pipelines.models.tables import split_frame
from tests.deploy.test_production import PMP, Command, assert_all_gone, fresh_shell, serving_tree
from tests.integration.standalone import _in_project
from tests.unit.models.test_propensity import CATEGORICAL, FAST, FEATURES, make_frame

pytestmark = [pytest.mark.deploy, pytest.mark.slow]


def test_pmp_mlflow_serve_answers_the_champions_serving_example_and_stops_on_ctrl_c(tmp_path):
    # The store a fresh clone with PM_HOME=tmp_path uses: <home>/mlruns/mlflow.db.
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    train, valid, test = split_frame(make_frame(), "churned", seed=1)
    result = train_and_register(
        train,
        valid,
        test,
        features=FEATURES,
        categorical=CATEGORICAL,
        label="churned",
        config=FAST,
        tracking_uri=tracking,
        experiment="serving-tests",
    )
    assert result.promoted, result.reasons
    local, expected = _in_project(tracking, FAST.model_name)
    body = (local / "serving_input_example.json").read_bytes()

    port = supervise.free_port()
    argv = [PMP, "mlflow", "serve", FAST.model_name, "--port", str(port)]
    command = Command(argv, fresh_shell(tmp_path), tmp_path)
    try:
        line = command.wait_for("POST http://", timeout=120)
        assert line.startswith(f"POST http://127.0.0.1:{port}/invocations"), line
        assert f"serving models:/{FAST.model_name}@champion from {tracking}" in command.output
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            served = np.asarray(json.loads(response.read())["predictions"], dtype=float).ravel()
        np.testing.assert_array_equal(served, expected, err_msg=command.output)
        tree = serving_tree(command, port)
        assert command.stop(signal.SIGINT) == 0, command.output
    finally:
        command.kill()
    assert_all_gone(command, tree, port, "model server stopped")


def test_pmp_mlflow_serve_names_a_taken_port(tmp_path):
    import socket
    import subprocess

    with socket.socket() as taken:
        taken.bind((supervise.LOCALHOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [PMP, "mlflow", "serve", "churn", "--port", str(port)],
            env=fresh_shell(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done
    assert f"pmp mlflow: error: port {port} on 127.0.0.1 is already in use" in done.stderr, done.stderr
