"""A server stack of real processes for benchmarks and chaos runs.

:class:`ServerStack` prepares a data dir (keys, registry, profile), then
runs ``ems broker`` and ``ems persist`` as child processes on a free
loopback port; each can be SIGKILLed and restarted on the same port.
:func:`stop_child` stops one ``multiprocessing`` child by its pid (bus.py,
peers.py and reliability.py all stop theirs with it).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from broker.core.config import DataDir
from broker.cli.local_stack import prepare

ENROL_TOKEN = "bench-enrolment-token"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop_child(proc: mp.Process, timeout_s: float = 10.0, say: Callable[[str], None] | None = None) -> None:
    """Stop one spawned child by its pid: SIGCONT (in case it is stopped), SIGTERM, SIGKILL after ``timeout_s``."""
    if proc.pid is None or not proc.is_alive():
        proc.join(1)
        return
    for sig in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            proc.join(1)
            return
    proc.join(timeout_s)
    if proc.is_alive():
        if say is not None:
            say(f"{proc.name} (pid {proc.pid}) did not stop: SIGKILL")
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(5)


class Proc:
    """One restartable child process, output appended to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env or {}
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env={**os.environ, **self.env})

    def kill(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def exited(self) -> int | None:
        """The exit code if the process has ended (negative: killed by that signal), else None."""
        return self.popen.poll() if self.popen else None

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the log (every run of this process appends to it)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class ServerStack:
    """Broker + persister processes over one data dir under ``root``."""

    def __init__(self, root: Path, heartbeat_s: float = 0.5, host: str = "127.0.0.1"):
        self.root = root
        self.data = DataDir(root / "server")
        self.bind = f"tcp://{host}:{free_port(host)}"
        self.broker_key = prepare(self.data, self.bind, with_agent=False).broker_key
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        ems = [sys.executable, "-m", "broker.cli.main"]
        hb = ["--heartbeat-s", str(heartbeat_s)]
        self.broker = Proc("broker", ems + ["broker", "--data-dir", str(self.data.root), "--bind", self.bind, *hb],
                           self.logs / "broker.log", env={"EMS_ENROL_TOKEN": ENROL_TOKEN})
        self.persister = Proc("persister", ems + ["persist", "--data-dir", str(self.data.root), *hb], self.logs / "persister.log")

    @property
    def store_db(self) -> Path:
        return self.data.root / "store.db"

    def fleet(self, name: str, agents: int, events: int, rate: float, heartbeat_s: float = 0.5,
              timeout_s: float = 600.0, prefix: str = "sim") -> Proc:
        """A ``bench.durable_agents`` process of enrolled simulated agents (not started)."""
        return Proc(name, [sys.executable, "-m", "bench.durable_agents", "--dir", str(self.root / "agents"),
                           "--server", self.bind, f"--server-key={self.broker_key}", "--token", ENROL_TOKEN,
                           "--agents", str(agents), "--events", str(events), "--rate", str(rate),
                           "--heartbeat-s", str(heartbeat_s), "--timeout-s", str(timeout_s), "--prefix", prefix],
                    self.logs / f"{name}.log")

    def start(self) -> None:
        self.broker.start()
        self.persister.start()

    def stop(self) -> None:
        self.persister.stop()
        self.broker.stop()
