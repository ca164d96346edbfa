"""Supervision of long-running programs as child processes: the machinery behind ``pmp airflow standalone``,
``pmp mlflow ui`` and the deploy test (:mod:`pipelines.cli.services` says which programs).

A component

- is started by absolute path (:func:`executable`: this environment's ``bin`` folder, ``Path(sys.executable).parent``)
  with that folder first on ``PATH``, since Airflow and MLflow start helpers such as ``uvicorn`` by name: nothing
  needs activating;
- runs in a session of its own, with stdout and stderr in ``<log_dir>/<name>.log``;
- counts as started once its readiness probe passes (an HTTP check, or any callable given its start time);
- is stopped in reverse order of starting: SIGTERM to its process group, then, after a grace period, SIGKILL to
  whatever is left in its session (Airflow runs each task in a process group of its own, inside that session); on
  Linux it also gets SIGTERM if the supervising process dies.

If a component exits while the others run, :meth:`Supervisor.check` raises :class:`ComponentDied` naming it with the
tail of its log; leaving the supervisor's ``with`` block (also on Ctrl-C) stops the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

LOCALHOST = "127.0.0.1"
Say = Callable[[str], None]
# A readiness probe gets the wall-clock time (UTC) at which its component was started.
Probe = Callable[[datetime], bool]


def bin_dir() -> Path:
    """The folder of this environment's console scripts (not resolved: ``.venv/bin/python`` is a symlink)."""
    return Path(sys.executable).parent


def executable(name: str) -> str:
    """The absolute path of console script ``name`` of this environment; a clear error when it is not installed."""
    path = bin_dir() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} is not installed in this environment ({path} does not exist): run make .venv/.synced"
        )
    return str(path)


def child_environment(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict:
    """``base`` (default: this process's environment) updated with ``extra``, with this environment's ``bin``
    folder first on ``PATH``."""
    env = {**(os.environ if base is None else base), **(extra or {})}
    here = str(bin_dir())
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != here]
    env["PATH"] = os.pathsep.join([here, *rest])
    return env


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port nothing listens on at ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_taken(port: int, host: str = LOCALHOST) -> bool:
    """True when a server could not bind ``host:port`` (something listens there, on it or on all interfaces)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # as uvicorn does: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def http_json(
    url: str,
    *,
    method: str = "GET",
    body: Any = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """(status, decoded JSON body or text) of one HTTP request; status 0 when nothing answered."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (OSError, ValueError):
        return 0, None
    text = raw.decode("utf-8", errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def http_ok(url: str) -> Probe:
    """Ready when ``url`` answers 200."""
    return lambda _started: http_json(url, timeout=2.0)[0] == 200


@dataclass(frozen=True)
class Component:
    """A long-running program: its name (also its log file's), argv (argv[0] an absolute path), readiness probe
    and how long it may take to become ready."""

    name: str
    argv: tuple[str, ...]
    ready: Probe | None = None
    timeout: float = 180.0
    url: str = ""


class ComponentDied(RuntimeError):
    """A component (or a one-off command) exited; the message names it, its exit code and the tail of its log."""

    def __init__(self, name: str, returncode: int | None, log: Path, tail: str, what: str = "exited") -> None:
        self.name, self.returncode, self.log = name, returncode, log
        super().__init__(f"{name} {what} (exit code {returncode}); the end of its log {log}:\n{tail}")


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class _Running:
    component: Component
    process: subprocess.Popen
    log: Path
    log_file: IO[bytes]
    started: datetime
    started_clock: float = field(default_factory=time.monotonic)
    ready_after: float | None = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """In the child before exec (Linux): receive SIGTERM when the supervising process dies, so a killed test or
    terminal does not leave servers behind."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _session_members(session: int) -> list[int]:
    """Live (not zombie) processes of session ``session``, from /proc ([] where there is no /proc)."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After "(comm)": state, ppid, pgrp, session, ...
        if len(fields) > 3 and fields[0] != "Z" and int(fields[3]) == session:
            members.append(int(entry))
    return members


def _signal(pids: Sequence[int], group: int | None, sig: signal.Signals) -> None:
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


class Supervisor:
    """Starts components as child processes, watches them and stops them all; use it as a context manager so they
    are stopped on any exit. ``env`` is the children's complete environment (see :func:`child_environment`)."""

    def __init__(
        self,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        grace: float = 15.0,
        say: Say | None = print,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.env = child_environment(base=env) if env is not None else child_environment()
        self.grace = grace
        self.say = say or (lambda _line: None)
        self._running: list[_Running] = []

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        # Leaving on an exception (Ctrl-C included): a further Ctrl-C while stopping adds nothing to it.
        self.stop(interrupt_after=exc_type is None)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _popen(self, name: str, argv: Sequence[str]) -> tuple[subprocess.Popen, Path, IO[bytes]]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(name)
        log_file = open(log, "wb")  # noqa: SIM115 - closed when the component is stopped
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except OSError:
            log_file.close()
            raise
        return process, log, log_file

    def run(self, name: str, argv: Sequence[str], timeout: float = 600.0) -> float:
        """Run a one-off command (``airflow db migrate``) to completion, its output in ``<name>.log``; returns its
        seconds, raises :class:`ComponentDied` when it fails or outlasts ``timeout``."""
        t0 = time.monotonic()
        process, log, log_file = self._popen(name, argv)
        running = _Running(Component(name, tuple(argv)), process, log, log_file, datetime.now(UTC))
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._stop(running)
            raise ComponentDied(
                name, None, log, tail(log), what=f"did not finish within {timeout:.0f} s"
            ) from None
        except BaseException:
            self._stop(running)
            raise
        running.log_file.close()
        if process.returncode != 0:
            raise ComponentDied(name, process.returncode, log, tail(log), what="failed")
        return time.monotonic() - t0

    def start(self, component: Component, wait: bool = True) -> float:
        """Start ``component``; with ``wait``, wait until its probe passes and return the seconds that took (else
        0: :meth:`wait_ready` waits later). Raises :class:`ComponentDied` when it exits first or is not ready
        within its timeout."""
        process, log, log_file = self._popen(component.name, component.argv)
        running = _Running(component, process, log, log_file, datetime.now(UTC))
        self._running.append(running)
        return self._wait_ready(running) if wait else 0.0

    def wait_ready(self, say: Say | None = None) -> dict[str, float]:
        """Wait until every started component is ready (in starting order); returns the seconds from each one's
        start until it was ready, and tells ``say`` as each becomes ready."""
        seconds = {}
        for running in list(self._running):
            seconds[running.component.name] = self._wait_ready(running)
            if say:
                say(f"  {running.component.name} ready ({seconds[running.component.name]:.1f} s)")
        return seconds

    def _wait_ready(self, running: _Running) -> float:
        component, process = running.component, running.process
        deadline = running.started_clock + component.timeout
        while running.ready_after is None:
            if process.poll() is not None:
                raise ComponentDied(component.name, process.returncode, running.log, tail(running.log))
            if component.ready is None or component.ready(running.started):
                running.ready_after = time.monotonic() - running.started_clock
            elif time.monotonic() > deadline:
                why = f"was not ready within {component.timeout:.0f} s"
                raise ComponentDied(component.name, None, running.log, tail(running.log), what=why)
            else:
                time.sleep(0.5)
        return running.ready_after

    def check(self) -> None:
        """Raise :class:`ComponentDied` for the first component that is no longer running."""
        for running in self._running:
            if running.process.poll() is not None:
                raise ComponentDied(
                    running.component.name, running.process.returncode, running.log, tail(running.log)
                )

    def wait(self, poll: float = 1.0) -> None:
        """Block while every component runs; raises :class:`ComponentDied` when one exits (Ctrl-C raises
        KeyboardInterrupt as usual)."""
        while True:
            self.check()
            time.sleep(poll)

    @property
    def logs(self) -> dict[str, Path]:
        """Log file of each started component, by name."""
        return {r.component.name: r.log for r in self._running}

    def tails(self, lines: int = 40) -> str:
        """The end of every started component's log, for a failure message."""
        return "\n".join(
            f"----- {name}: {path} (last {lines} lines) -----\n{tail(path, lines)}"
            for name, path in self.logs.items()
        )

    def stop(self, *, interrupt_after: bool = True) -> None:
        """Stop every component, the last started first. Ctrl-C and SIGTERM are held off until done, then raise
        KeyboardInterrupt if ``interrupt_after``."""
        if not self._running:
            return
        with _signals_deferred(interrupt_after):
            while self._running:
                running, t0 = self._running.pop(), time.monotonic()
                self._stop(running)
                self.say(f"  {running.component.name} stopped ({time.monotonic() - t0:.1f} s)")

    def _stop(self, running: _Running) -> None:
        process, pid = running.process, running.process.pid
        deadline = time.monotonic() + self.grace
        if process.poll() is None:
            _signal([], pid, signal.SIGTERM)
        # The leader may exit before its children have: wait for the whole session, up to the grace period.
        while time.monotonic() < deadline and (process.poll() is None or _session_members(pid)):
            time.sleep(0.1)
        left = _session_members(pid)
        if process.poll() is None or left:
            self.say(f"{running.component.name} did not stop within {self.grace:.0f} s: killing it")
            _signal(left, pid if process.poll() is None else None, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        running.log_file.close()


@contextlib.contextmanager
def _signals_deferred(interrupt_after: bool = True) -> Iterator[None]:
    """Hold off SIGINT and SIGTERM while stopping components (main thread only), so a second Ctrl-C does not leave
    them half-stopped; a signal received meanwhile becomes KeyboardInterrupt afterwards if ``interrupt_after``."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received and interrupt_after:
        raise KeyboardInterrupt


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGHUP raise KeyboardInterrupt as Ctrl-C does, so ``with Supervisor`` blocks
    stop their components when the process is asked to end; so does SIGINT, also where the shell started the
    process with SIGINT ignored (``pmp ... &`` in a script)."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
