"""Throwaway parts for the fault tests: a redis-server and a PostgreSQL cluster of the test's own, on
free 127.0.0.1 ports in the test's tmp folder, that a test may stop, restart or pause (SIGSTOP, as
a hung host would look) without touching the machine's own services or other tests.

PostgreSQL refuses to run as root: when the tests run as root (CI does), the cluster is created and
run as the `postgres` system user (its folder is handed to that user); otherwise as the caller.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis
from live import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT = 20.0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text().split()]
    return found


class RedisServer:
    """`redis-server` without persistence; kill() and start() again on the same port."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115  (the process holds it)
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                    if client.ping():
                        return
            except redis.RedisError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class PostgresCluster:
    """A PostgreSQL 15 cluster (initdb, pg_ctl) listening on 127.0.0.1 only, trust auth."""

    def __init__(self, max_connections: int = 60):
        # Its own folder under the system's tmp: pytest's tmp_path is private to the caller, and
        # the postgres user must be able to reach the data directory.
        folder = self.folder = Path(tempfile.mkdtemp(prefix="authserver-fault-pg-"))
        self.port = free_port()
        self.data = folder / "pgdata"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync",
                  "--encoding=UTF8", "--locale=C.UTF-8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{folder}'\n"
                       f"max_connections = {max_connections}\nfsync = off\nsynchronous_commit = off\n"
                       "full_page_writes = off\nshared_buffers = 32MB\n")

    def _run(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(a) for a in args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=60, cwd=self.folder)

    def start(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.folder / "postgres.log", "-w", "-t", "30", "start")

    def stop(self) -> None:
        """A fast shutdown: sessions are terminated, as in a restart or a failover."""
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop", check=False)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def pause(self) -> list[int]:
        """SIGSTOP the postmaster and every backend: connections stay open, nothing answers."""
        pids = [self.postmaster_pid()]
        pids += _children(pids[0])
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    @staticmethod
    def resume(pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def execute(self, sql: str) -> None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def log(self, tail: int = 3000) -> str:
        path = self.folder / "postgres.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text[-tail:]
