"""Run the service as a child process for the length of a CLI command (the demo's store)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import platformdirs

from pace.errors import PaceError

__all__ = ["RunningService", "ServiceProcessError", "data_dir", "running_service"]

START_TIMEOUT_S = 120.0


class ServiceProcessError(PaceError, RuntimeError):
    """The service did not start (its log tail is in the message)."""


@dataclass(frozen=True)
class RunningService:
    url: str
    api_key: str
    log: Path


def data_dir() -> Path:
    """The service's data directory: ``$PACE_DATA_DIR`` or the per-user data home."""
    return Path(os.environ.get("PACE_DATA_DIR") or platformdirs.user_data_dir("pace"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceProcessError(
                f"the service exited with code {proc.returncode} while starting:\n{_tail(log)}"
            )
        try:
            if httpx.get(f"{url}/openapi.json", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise ServiceProcessError(
        f"the service did not answer within {START_TIMEOUT_S:.0f} s:\n{_tail(log)}"
    )


@contextmanager
def running_service(*, port: int | None = None) -> Iterator[RunningService]:
    """Start ``python -m pace_service serve`` on loopback; stop it on exit.

    With no ``DATABASE_URL`` the service starts its embedded PostgreSQL under
    :func:`data_dir`, which survives restarts; it writes its admin key there.
    """
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "service.log"
    cmd = [
        sys.executable,
        "-m",
        "pace_service",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        _wait_until_up(proc, url, log)
        key = os.environ.get("PACE_API_KEY") or _read_key(folder / "api-key")
        yield RunningService(url=url, api_key=key, log=log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _read_key(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError as exc:
        raise ServiceProcessError(
            f"no API key: set PACE_API_KEY, or let the embedded service write {path}"
        ) from exc
