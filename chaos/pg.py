"""The PostgreSQL server of a chaos run, and the two ways to restart it.

- `PrivateServer` (the default): a throwaway server made with the installed PostgreSQL binaries
  (`initdb` into a temporary directory, `postgres` on a free port, run as the `postgres` user when
  we are root). Restarting it is what `pg_ctl restart -m fast` does: SIGINT to the postmaster (a
  fast shutdown: every session is cut), wait for it to exit, start it again. Nothing else on the
  machine shares it, so the chaos cannot break the test runs of other people on the same host.
  It dies with the harness (PR_SET_PDEATHSIG) and its directory is deleted at the end.
- `ClusterServer`: the Debian cluster (`--cluster 15/main`), restarted with
  `pg_ctlcluster --skip-systemctl-redirect 15 main restart`. Every database of that cluster sees
  the restarts: use it on a machine where nothing else runs.

Standard library and psycopg only (the harness does not load Django).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
PR_SET_PDEATHSIG = 1
PRIVATE_PREFIX = "django-dbos-chaos-pg-"
STALE_AFTER_S = 600.0


def die_with_parent() -> None:
    """In a child (preexec_fn): be killed when the harness's main thread dies, however it dies."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_ready(conninfo: str, timeout: float = READY_TIMEOUT_S) -> float:
    """Wait until the server accepts a connection and answers; return when (time.time())."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(conninfo, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return time.time()
        except psycopg.Error as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not come up within {timeout} s: {last}")


def latest_version() -> str:
    versions = sorted(
        (p.name for p in Path("/usr/lib/postgresql").glob("*") if (p / "bin").is_dir()),
        key=lambda v: [int(x) for x in v.split(".") if x.isdigit()],
    )
    if not versions:
        raise RuntimeError("No PostgreSQL binaries under /usr/lib/postgresql.")
    return versions[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def remove_stale_servers() -> None:
    """Delete the directories of private servers whose harness was killed (SIGKILL leaves no
    chance to clean up): no live postmaster, and untouched for a while."""
    for path in Path(tempfile.gettempdir()).glob(f"{PRIVATE_PREFIX}*"):
        try:
            if time.time() - path.stat().st_mtime < STALE_AFTER_S:
                continue
            pid_file = path / "data" / "postmaster.pid"
            if pid_file.exists():
                pid = int(pid_file.read_text().split()[0])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 0)
                    continue  # its server still runs
        except (OSError, ValueError, IndexError):
            continue
        shutil.rmtree(path, ignore_errors=True)


class Server:
    host = "127.0.0.1"
    port = 5432
    user = "postgres"
    description = ""

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

    def start(self) -> None:
        raise NotImplementedError

    def restart(self, downtime: float = 0.0) -> tuple[float, float]:
        """Restart the server, staying down `downtime` s more than a plain restart does; return
        (when the restart began, when the server accepted connections again)."""
        raise NotImplementedError

    def close(self) -> None:
        """At the end of the run, even after a failure: leave no server of ours behind, or the
        shared one running."""
        raise NotImplementedError


class PrivateServer(Server):
    def __init__(self, log_path: Path, port: int | None = None, max_connections: int = 300):
        self.version = latest_version()
        self.bin = Path("/usr/lib/postgresql") / self.version / "bin"
        self.port = port or free_port()
        self.log_path = log_path
        self.max_connections = max_connections
        remove_stale_servers()
        self.datadir = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX))
        self.process: subprocess.Popen[bytes] | None = None
        self._log = None
        self.description = (
            f"private PostgreSQL {self.version} on {self.host}:{self.port} ({self.datadir})"
        )

    def _as_postgres(self) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.setgid(entry.pw_gid)
            os.setgroups([])
            os.setuid(entry.pw_uid)
        die_with_parent()  # after setuid: a change of credentials clears it

    def start(self) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.datadir, entry.pw_uid, entry.pw_gid)
        os.chmod(self.datadir, 0o700)
        self._log = open(self.log_path, "ab")  # noqa: SIM115  (closed in close())
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.datadir / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._as_postgres,
            timeout=120,
        )
        self._spawn()

    def _spawn(self) -> None:
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.datadir / "data"),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                f"unix_socket_directories={self.datadir}",
                "-c",
                f"max_connections={self.max_connections}",
                "-c",
                "log_line_prefix=%m [%p] %d ",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._as_postgres,
        )
        wait_ready(self.conninfo())

    def _stop(self, sig: int) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def restart(self, downtime: float = 0.0) -> tuple[float, float]:
        began = time.time()
        self._stop(signal.SIGINT)  # fast shutdown, as pg_ctl restart -m fast
        time.sleep(downtime)
        self._spawn()
        return began, time.time()

    def close(self) -> None:
        try:
            self._stop(signal.SIGQUIT)  # immediate shutdown: nothing left to keep
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)
            if self._log is not None:
                self._log.close()


class ClusterServer(Server):
    def __init__(self, cluster: str):
        self.version, _, self.name = cluster.partition("/")
        if not self.name:
            raise ValueError("--cluster takes VERSION/NAME, for example 15/main")
        self.port = self._port()
        self.description = (
            f"cluster {self.version}/{self.name} on {self.host}:{self.port} "
            "(pg_ctlcluster restarts: every database of the cluster sees them)"
        )

    def _port(self) -> int:
        conf = Path("/etc/postgresql") / self.version / self.name / "postgresql.conf"
        for line in conf.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.split("#")[0].strip())
        return 5432

    def _ctl(self, action: str) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action],
            check=True,
            timeout=120,
            capture_output=True,
        )

    def start(self) -> None:
        try:
            wait_ready(self.conninfo(), timeout=2)
        except RuntimeError:
            self._ctl("start")
            wait_ready(self.conninfo())

    def restart(self, downtime: float = 0.0) -> tuple[float, float]:
        began = time.time()
        if downtime > 0:
            self._ctl("stop")
            time.sleep(downtime)
            self._ctl("start")
        else:
            self._ctl("restart")
        return began, wait_ready(self.conninfo())

    def close(self) -> None:
        """Leave the shared cluster up, whatever happened."""
        try:
            wait_ready(self.conninfo(), timeout=5)
        except RuntimeError:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, "start"],
                timeout=120,
                capture_output=True,
            )
            wait_ready(self.conninfo())
