"""A real PgBouncer (Debian's `pgbouncer`, 1.18 here) in transaction mode in front of a
PostgreSQL server, started and stopped by the tests that need it (and by bench/queues.py
--pgbouncer: stdlib only, but for psycopg in `Bouncer.transactions`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/users.txt
admin_users = {user}
pool_mode = transaction
default_pool_size = 40
max_client_conn = 400
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
"""


@dataclass(frozen=True)
class Bouncer:
    port: int
    user: str
    log: Path

    def transactions(self, database: str) -> int:
        """Transactions PgBouncer has passed to `database` (its admin console's SHOW STATS)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="pgbouncer", autocommit=True
        ) as admin:
            rows = admin.execute("SHOW STATS").fetchall()
            columns = [column.name for column in admin.execute("SHOW STATS").description or []]
        stats = [dict(zip(columns, row, strict=True)) for row in rows]
        return sum(int(row["total_xact_count"]) for row in stats if row["database"] == database)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def pgbouncer(server_host: str, server_port: int, user: str) -> Iterator[Bouncer]:
    """Run PgBouncer in transaction mode in front of that server until the block ends."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        raise RuntimeError("PgBouncer is not installed: apt-get install pgbouncer (.ci/run does).")
    # Readable by the postgres user: PgBouncer refuses to run as root and drops to it (-u).
    directory = Path(tempfile.mkdtemp(prefix="dbos-pgbouncer-"))
    directory.chmod(0o777)
    listen_port = _free_port()
    (directory / "users.txt").write_text(f'"{user}" ""\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        _CONFIG.format(
            host=server_host,
            port=server_port,
            listen_port=listen_port,
            directory=directory,
            user=user,
        )
    )
    for path in directory.iterdir():
        path.chmod(0o666)
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        [binary, *as_user, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        _wait_for_port(listen_port, process, directory / "pgbouncer.log")
        yield Bouncer(port=listen_port, user=user, log=directory / "pgbouncer.log")
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"PgBouncer exited with {process.returncode}: {text}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("PgBouncer did not start listening within 10 s")
