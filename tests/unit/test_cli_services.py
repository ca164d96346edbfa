"""The supervisor behind ``pmp airflow standalone``, ``pmp mlflow ui`` and the deploy test, on tiny real child
processes (Python one-liners): readiness, a component that dies, stopping in reverse order, a component that ignores
SIGTERM or leaves a process behind in a group of its own, the supervisor being killed; and the environments it gives
Airflow's components."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines.cli import main, services, supervise
from pipelines.config import Settings


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", textwrap.dedent(code))


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def marker_probe(path: Path):
    return lambda _started: path.exists()


pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")


def test_a_server_is_ready_when_its_url_answers_and_is_gone_after_stop(tmp_path):
    port = supervise.free_port()
    server = supervise.Component(
        "web",
        (sys.executable, "-m", "http.server", "--bind", supervise.LOCALHOST, str(port)),
        supervise.http_ok(f"http://{supervise.LOCALHOST}:{port}/"),
        timeout=20,
    )
    with supervise.Supervisor(tmp_path / "logs", grace=5, say=None) as supervisor:
        seconds = supervisor.start(server)
        assert 0 < seconds < 20
        assert supervise.http_json(f"http://{supervise.LOCALHOST}:{port}/")[0] == 200
        assert supervise.port_taken(port)
        supervisor.check()  # running: nothing raised
        pid = supervisor._running[0].process.pid
        assert supervisor.logs == {"web": tmp_path / "logs" / "web.log"}
    assert not alive(pid)
    assert not supervise.port_taken(port)
    assert supervise.http_json(f"http://{supervise.LOCALHOST}:{port}/")[0] == 0


def test_a_component_that_dies_while_starting_is_named_with_its_exit_code_and_log(tmp_path):
    broken = supervise.Component(
        "broken", python("import sys; print('cannot open the database'); sys.exit(3)"), lambda _s: False
    )
    with (
        supervise.Supervisor(tmp_path, say=None) as supervisor,
        pytest.raises(supervise.ComponentDied) as died,
    ):
        supervisor.start(broken)
    assert died.value.name == "broken" and died.value.returncode == 3
    assert "broken exited (exit code 3)" in str(died.value)
    assert "cannot open the database" in str(died.value)
    assert str(tmp_path / "broken.log") in str(died.value)


def test_check_names_the_component_that_died_while_the_others_run(tmp_path):
    ready = tmp_path / "ready"
    steady = supervise.Component("steady", python("import time; time.sleep(60)"))
    flaky = supervise.Component(
        "flaky",
        python(
            f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(0.5); print('lost'); exit(4)"
        ),
        marker_probe(ready),
    )
    with supervise.Supervisor(tmp_path, grace=2, say=None) as supervisor:
        supervisor.start(steady)
        supervisor.start(flaky)
        with pytest.raises(supervise.ComponentDied) as died:
            supervisor.wait(poll=0.1)
        steady_pid = supervisor._running[0].process.pid
        assert alive(steady_pid)  # check() reports; stopping the rest is the with block's job
    assert died.value.name == "flaky" and died.value.returncode == 4 and "lost" in str(died.value)
    assert not alive(steady_pid)


def test_components_stop_in_reverse_order_of_starting(tmp_path):
    record = tmp_path / "stopped.txt"

    def component(name: str) -> supervise.Component:
        ready = tmp_path / f"{name}.ready"
        code = f"""
            import pathlib, signal, sys, time
            def stop(*_):
                with open({str(record)!r}, "a") as f:
                    f.write({name!r} + "\\n")
                sys.exit(0)
            signal.signal(signal.SIGTERM, stop)
            pathlib.Path({str(ready)!r}).touch()
            while True:
                time.sleep(0.1)
        """
        return supervise.Component(name, python(code), marker_probe(ready), timeout=20)

    with supervise.Supervisor(tmp_path, say=None) as supervisor:
        for name in ("api-server", "scheduler", "dag-processor"):
            supervisor.start(component(name))
    assert record.read_text().split() == ["dag-processor", "scheduler", "api-server"]


def test_what_ignores_sigterm_or_hides_in_its_own_process_group_is_killed_after_the_grace_period(tmp_path):
    ready, grandchild_pid = tmp_path / "ready", tmp_path / "grandchild.pid"
    # Like Airflow's task processes: the grandchild moves to a process group of its own (killpg misses it) but
    # stays in the component's session. The component itself ignores SIGTERM.
    code = f"""
        import pathlib, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c",
            "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); os.setpgid(0, 0); time.sleep(60)"])
        pathlib.Path({str(grandchild_pid)!r}).write_text(str(child.pid))
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
    """
    messages: list[str] = []
    supervisor = supervise.Supervisor(tmp_path, grace=1.0, say=messages.append)
    with supervisor:
        supervisor.start(supervise.Component("stubborn", python(code), marker_probe(ready), timeout=20))
        leader = supervisor._running[0].process.pid
        hidden = int(grandchild_pid.read_text())
        assert os.getpgid(hidden) == hidden != leader and os.getsid(hidden) == leader
        t0 = time.monotonic()
    took = time.monotonic() - t0
    assert not alive(leader) and wait_until(lambda: not alive(hidden), 5)
    assert 1.0 <= took < 8, took
    assert messages[0] == "stubborn did not stop within 1 s: killing it"
    assert messages[1].startswith("  stubborn stopped (") and len(messages) == 2


def test_ctrl_c_while_stopping_is_held_until_every_component_has_stopped(tmp_path):
    import threading

    ready = tmp_path / "ready"
    code = f"""
        import pathlib, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1), sys.exit(0)))
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
    """
    supervisor = supervise.Supervisor(tmp_path, grace=10, say=None)
    supervisor.start(supervise.Component("slow-to-stop", python(code), marker_probe(ready), timeout=20))
    pid = supervisor._running[0].process.pid
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        supervisor.stop()
    assert not alive(pid)


def test_a_component_not_ready_in_time_is_reported_and_stopped(tmp_path):
    slow = supervise.Component(
        "slow", python("import time; print('still loading'); time.sleep(60)"), timeout=1
    )
    slow = supervise.Component(slow.name, slow.argv, lambda _s: False, timeout=1)
    with supervise.Supervisor(tmp_path, grace=2, say=None) as supervisor:
        with pytest.raises(supervise.ComponentDied, match="slow was not ready within 1 s"):
            supervisor.start(slow)
        pid = supervisor._running[0].process.pid
    assert not alive(pid)


def test_a_one_off_command_returns_its_time_or_fails_with_its_log(tmp_path):
    with supervise.Supervisor(tmp_path, say=None) as supervisor:
        assert supervisor.run("migrate", python("print('migrated')")) >= 0
        assert (tmp_path / "migrate.log").read_text().strip() == "migrated"
        with pytest.raises(
            supervise.ComponentDied, match=r"(?s)migrate failed \(exit code 2\).*no such table"
        ):
            supervisor.run("migrate", python("import sys; print('no such table'); sys.exit(2)"))
        with pytest.raises(supervise.ComponentDied, match="did not finish within 1 s"):
            supervisor.run("hang", python("import time; time.sleep(30)"), timeout=1)


def test_components_end_when_the_supervising_process_is_killed(tmp_path):
    pid_file = tmp_path / "component.pid"
    script = f"""
        import pathlib, sys, time
        from pipelines.cli import supervise
        supervisor = supervise.Supervisor(pathlib.Path({str(tmp_path)!r}), say=None)
        supervisor.start(supervise.Component("sleeper", (sys.executable, "-c", "import time; time.sleep(60)")))
        pathlib.Path({str(pid_file)!r}).write_text(str(supervisor._running[0].process.pid))
        time.sleep(60)
    """
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)])
    try:
        assert wait_until(pid_file.exists, 20)
        component = int(pid_file.read_text())
        assert alive(component)
        parent.kill()
        parent.wait()
        assert wait_until(lambda: not alive(component), 5), "the component outlived its killed supervisor"
    finally:
        parent.kill()


def test_the_children_find_this_environment_first_on_path():
    env = supervise.child_environment({"PATH": "/usr/bin:/bin"}, base={})
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["PATH"].endswith("/usr/bin:/bin")
    assert Path(supervise.executable("python")).is_absolute()
    with pytest.raises(FileNotFoundError, match="no-such-tool is not installed in this environment"):
        supervise.executable("no-such-tool")


def test_port_taken_sees_a_listening_socket():
    with socket.socket() as sock:
        sock.bind((supervise.LOCALHOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert supervise.port_taken(port)
    assert not supervise.port_taken(port)


def _settings(tmp_path: Path, **kwargs) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        mlruns_dir=tmp_path / "mlruns",
        airflow_home=tmp_path / "airflow",
        campaigns_dir=tmp_path / "campaigns",
        **kwargs,
    )


def test_the_airflow_components_share_one_environment_bound_to_localhost(tmp_path):
    base = {
        "PATH": "/bin",
        "PM_DATA_DIR": "/elsewhere",  # the settings given (e.g. --data) win over the shell's
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow@db/airflow",  # a metadata DB from outside wins
    }
    settings = _settings(tmp_path)
    env = services.airflow_service_environment(settings, 8123, base=base)
    assert env["PM_DATA_DIR"] == str(tmp_path / "data")
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql://airflow@db/airflow"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == "postgresql+psycopg://airflow@db/airflow"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1" and env["AIRFLOW__API__PORT"] == "8123"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 32
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(settings.dags_dir)
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    sqlite = services.airflow_service_environment(settings, 8123, base={}, overrides={"X": "1"})
    assert sqlite["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC" not in sqlite and sqlite["X"] == "1"


def test_the_airflow_components_never_serve_logs_and_bind_localhost():
    components = services.airflow_components(8123)
    assert [c.name for c in components] == ["api-server", "scheduler", "dag-processor", "triggerer"]
    argv = {c.name: c.argv for c in components}
    assert argv["api-server"][1:] == ("api-server", "--host", "127.0.0.1", "--port", "8123")
    assert "--skip-serve-logs" in argv["scheduler"] and "--skip-serve-logs" in argv["triggerer"]
    assert all(Path(c.argv[0]) == Path(sys.executable).parent / "airflow" for c in components)
    assert [c.name for c in services.airflow_components(8123, triggerer=False)][-1] == "dag-processor"


def test_standalone_on_a_taken_port_says_so_and_names_a_free_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PM_HOME", str(tmp_path))
    with socket.socket() as sock:
        sock.bind((supervise.LOCALHOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert main(["airflow", "standalone", "--port", str(port)]) == 2
        assert main(["mlflow", "ui", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"pmp airflow: error: port {port} on 127.0.0.1 is already in use" in err
    assert f"pmp mlflow: error: port {port} on 127.0.0.1 is already in use" in err
    assert "--port " in err
    assert not (tmp_path / ".airflow" / "services").exists()  # nothing was started


def test_mlflow_ui_over_a_tracking_server_points_there(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert main(["mlflow", "ui"]) == 2
    assert "the tracking store is a server already" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["airflow", "standalone", "--port", "0"], ["mlflow", "ui", "--port", "70000"]]
)
def test_a_bad_port_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "expected a port between 1 and 65535" in capsys.readouterr().err


def test_heartbeat_probe_wants_a_healthy_component_newer_than_its_start(monkeypatch):
    from datetime import UTC, datetime, timedelta

    started = datetime(2026, 1, 1, 12, tzinfo=UTC)
    answers = {
        "old": {
            "scheduler": {"status": "healthy", "latest_scheduler_heartbeat": "2026-01-01T11:59:00+00:00"}
        },
        "new": {
            "scheduler": {"status": "healthy", "latest_scheduler_heartbeat": "2026-01-01T12:00:05+00:00"}
        },
        "sick": {"scheduler": {"status": "unhealthy", "latest_scheduler_heartbeat": "2026-01-01T12:00:05"}},
    }
    probe = services.heartbeat_after_start("http://x/health", "scheduler")
    for case, expected in (("old", False), ("new", True), ("sick", False)):
        monkeypatch.setattr(services, "http_json", lambda *a, _c=case, **k: (200, answers[_c]))
        assert probe(started) is expected, case
    monkeypatch.setattr(services, "http_json", lambda *a, **k: (0, None))
    assert probe(started - timedelta(days=1)) is False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_request_to_end_becomes_keyboard_interrupt_inside_the_block(sig):
    before = signal.signal(sig, signal.SIG_IGN)  # as a script's `pmp ... &` starts it for SIGINT
    try:
        with pytest.raises(KeyboardInterrupt), supervise.sigterm_as_interrupt():
            os.kill(os.getpid(), sig)
            time.sleep(1)
        assert signal.getsignal(sig) is signal.SIG_IGN  # put back
    finally:
        signal.signal(sig, before)
