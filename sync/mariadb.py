"""A private MariaDB instance in a directory: the web view's database when no ``--mysql-url`` is given.

Debian's ``mariadb-server`` binaries, run by the account that runs EMS,
listening on a unix socket in the directory and on one loopback port; no
system configuration read (``--no-defaults``). Nobody has a password: the
administrator is the account itself, through the socket only
(``unix_socket`` authentication), so there is no root password to keep.
:data:`CLIENT_CNF` (0600) says how to reach it:
``mariadb --defaults-file=DIR/client.cnf`` opens a shell.

Layout of ``DIR``: ``data/`` (the database files, 0700), ``tmp/`` (its temporary
tables and sort files, 0700: never the shared /tmp, where they would be readable
by name and where another instance's files of the same name collide), ``mysqld.sock``,
``mysqld.pid``, ``error.log``, ``client.cnf``.

``ems up`` runs :meth:`PrivateMariaDB.server_argv` under its supervisor;
tests and scripts use :func:`start` / :meth:`PrivateMariaDB.stop`.
"""
from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from broker.core.errors import EmsError
from broker.core.private_files import FILE_MODE, private_dir
from sync.mysql_url import MysqlError, MysqlUrl, connect

log = logging.getLogger(__name__)

#: where the server binaries are looked for beside $PATH (Debian puts mariadbd in /usr/sbin)
BINARY_DIRS_ENV = "EMS_MARIADB_BIN_DIRS"
_SYSTEM_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
CLIENT_CNF = "client.cnf"
INSTALL_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.05
#: a unix socket path longer than this does not fit in sockaddr_un
_SOCKET_PATH_MAX = 107
MISSING_HINT = ("install them: installer/install.sh (Debian: apt-get install mariadb-server), "
                "or run with --mysql-url mysql://... (an existing server) or --no-web")


class MariaDBError(EmsError):
    """The private MariaDB instance cannot be set up, started or stopped."""


def find_binary(name: str) -> str | None:
    """The path of ``name`` in $EMS_MARIADB_BIN_DIRS (if set: only there), else $PATH and the system dirs."""
    override = os.environ.get(BINARY_DIRS_ENV)
    if override is not None:
        return shutil.which(name, path=override)
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SYSTEM_DIRS])
    return shutil.which(name, path=path)


def server_binaries() -> tuple[str, str]:
    """(mariadb-install-db, mariadbd); :class:`MariaDBError` saying how to install them when missing."""
    found = {name: find_binary(name) for name in ("mariadb-install-db", "mariadbd")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise MariaDBError(f"MariaDB server binaries not found ({', '.join(missing)}): {MISSING_HINT}")
    return found["mariadb-install-db"], found["mariadbd"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def private_instance_dir(data_root: Path) -> Path:
    """Where ``ems up`` keeps the private instance of the data dir ``data_root``."""
    return Path(data_root) / "mysql"


class PrivateMariaDB:
    """One MariaDB instance owned by this account in ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = Path(directory).resolve()
        self.port = port or free_port()
        self.user = getpass.getuser()
        self.process: subprocess.Popen | None = None

    @classmethod
    def existing(cls, directory: Path) -> "PrivateMariaDB":
        """The instance set up in ``directory`` before (its port from ``client.cnf``), running or not."""
        port = _cnf_port(Path(directory) / CLIENT_CNF)
        if port is None:
            raise MariaDBError(f"no private MariaDB in {directory}: `ems up` starts one, or give --mysql-url")
        return cls(directory, port)

    @classmethod
    def for_data_dir(cls, data_root: Path) -> "PrivateMariaDB":
        """The data dir's instance, on the port it had before if that is still free."""
        directory = private_instance_dir(data_root)
        port = _cnf_port(directory / CLIENT_CNF)
        return cls(directory, port if port and _port_free(port) else None)

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    @property
    def tmpdir(self) -> Path:
        return self.directory / "tmp"

    @property
    def socket(self) -> Path:
        return self.directory / "mysqld.sock"

    @property
    def pid_file(self) -> Path:
        return self.directory / "mysqld.pid"

    @property
    def error_log(self) -> Path:
        return self.directory / "error.log"

    def admin_url(self, database: str = "") -> str:
        """``mysql://USER@localhost/DB?unix_socket=...``: the administrator, over the socket."""
        return str(self.admin(database))

    def admin(self, database: str = "") -> MysqlUrl:
        return MysqlUrl(user=self.user, host="localhost", port=self.port, database=database,
                        unix_socket=str(self.socket))

    def install(self) -> bool:
        """Create the data directory and the system tables if there are none yet; True if it did."""
        install_db, _ = server_binaries()
        if len(str(self.socket)) > _SOCKET_PATH_MAX:
            raise MariaDBError(f"the socket path {self.socket} is too long for a unix socket: use a shorter --data-dir")
        private_dir(self.directory)
        private_dir(self.tmpdir)
        if (self.datadir / "mysql").is_dir():
            return False
        private_dir(self.datadir)
        argv = [install_db, "--no-defaults", f"--datadir={self.datadir}", f"--user={self.user}",
                "--auth-root-authentication-method=socket", f"--auth-root-socket-user={self.user}",
                "--skip-test-db"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL, env=self._env())
        except subprocess.TimeoutExpired as exc:
            raise MariaDBError(f"mariadb-install-db did not finish in {INSTALL_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise MariaDBError(f"mariadb-install-db failed (exit {done.returncode}): {last[0]}")
        log.info("created a MariaDB data directory in %s", self.datadir)
        return True

    def server_argv(self) -> list[str]:
        """The ``mariadbd`` command line (foreground; stops cleanly on SIGTERM)."""
        _, mariadbd = server_binaries()
        return [mariadbd, "--no-defaults", f"--user={self.user}", f"--datadir={self.datadir}",
                f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
                f"--pid-file={self.pid_file}", f"--log-error={self.error_log}", f"--tmpdir={self.tmpdir}", "--local-infile=1",
                "--skip-name-resolve"]

    def write_client_cnf(self) -> Path:
        """``client.cnf`` (0600): how to reach this instance (``mariadb --defaults-file=...``)."""
        path = self.directory / CLIENT_CNF
        text = f"[client]\nuser={self.user}\nsocket={self.socket}\nport={self.port}\nhost=localhost\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        return path

    def start(self) -> "PrivateMariaDB":
        """Install if needed, run ``mariadbd`` as a child of this process and wait until it answers."""
        self.install()
        self.write_client_cnf()
        fd = os.open(self.error_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        with os.fdopen(fd, "ab") as err:
            self.process = subprocess.Popen(self.server_argv(), stdin=subprocess.DEVNULL, stdout=err,
                                            stderr=subprocess.STDOUT, env=self._env(), start_new_session=True)
        try:
            self.wait_ready()
        except BaseException:  # never leave a server behind
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S, pid: int | None = None) -> None:
        """Wait until the server accepts the administrator on the socket; :class:`MariaDBError` if it exits or times out."""
        pid = pid or (self.process.pid if self.process else None)
        deadline = time.monotonic() + timeout_s
        while True:
            if pid is not None and not _alive(pid):
                raise MariaDBError(f"mariadbd exited while starting: {self._last_error()} (see {self.error_log})")
            try:
                connect(self.admin(), connect_timeout=1).close()
                return
            except MysqlError:
                if time.monotonic() > deadline:
                    raise MariaDBError(f"MariaDB did not answer on {self.socket} within {timeout_s:.0f} s "
                                       f"(see {self.error_log})") from None
                time.sleep(_POLL_S)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the server by its pid: SIGTERM, then SIGKILL if it is still there after ``timeout_s``."""
        pid = self.process.pid if self.process else _read_pid(self.pid_file)
        if pid is None:
            return
        stop_pid(pid, timeout_s, name="mariadbd")
        if self.process is not None:
            self.process.wait()
            self.process = None

    def _last_error(self) -> str:
        try:
            lines = [line for line in self.error_log.read_text(errors="replace").splitlines() if "[ERROR]" in line]
        except OSError:
            return "no error log"
        return lines[-1].split("[ERROR]", 1)[1].strip() if lines else "no [ERROR] line in its log"

    @staticmethod
    def server_env() -> dict[str, str]:
        """What ``mariadbd`` needs in its environment beside this process's own."""
        # it makes its files 0660 unless told otherwise: keep them private
        return {"UMASK": "0600", "UMASK_DIR": "0700"}

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.server_env()}


def start(directory: Path, port: int | None = None) -> PrivateMariaDB:
    """A running :class:`PrivateMariaDB` in ``directory`` (created on first use)."""
    return PrivateMariaDB(directory, port).start()


def _cnf_port(path: Path) -> int | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    ports = [line.split("=", 1)[1].strip() for line in lines if line.startswith("port=")]
    return int(ports[0]) if ports and ports[0].isdigit() else None


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def stop_pid(pid: int, timeout_s: float, name: str = "process") -> bool:
    """SIGTERM ``pid``, wait up to ``timeout_s``, then SIGKILL it; True if it stopped on SIGTERM."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(_POLL_S)
    log.warning("%s (pid %d) did not stop within %.0f s: killing it", name, pid, timeout_s)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return False
