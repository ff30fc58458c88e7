"""``python -m pace_service``: the embedded default end to end, and key creation."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data dir outside pytest's tmp tree (pytest resets that to 0700; the embedded
    server runs as another system user when the tests run as root)."""
    path = Path(tempfile.mkdtemp(prefix="pace-cli-"))
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "PACE_DATABASE_URL"}}
    env["PACE_DATA_DIR"] = str(data_dir)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pace_service", "serve", "--port", str(port)],
        env=_env(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_ready(process: subprocess.Popen[bytes], url: str, key: str) -> httpx.Response:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"serve exited with {process.returncode}: {stderr[-2000:]}")
        try:
            return httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("serve did not come up in 90 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_serve_embedded_bootstraps_and_survives_restart(data_dir: Path) -> None:
    port = _free_port()
    process = _serve(data_dir, port)
    key_file = data_dir / "api-key"
    try:
        deadline = time.monotonic() + 90
        while not key_file.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert key_file.exists(), "no api-key file written"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        me = _wait_ready(process, f"http://127.0.0.1:{port}/v1/me", key)
        assert me.json() == {"namespace": "default", "role": "admin"}
        if sys.platform == "linux":  # the service extra's event loop serves it
            assert "uvloop" in Path(f"/proc/{process.pid}/maps").read_text()
        created = httpx.post(
            f"http://127.0.0.1:{port}/v1/concepts",
            json={"name": "kept"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert created.status_code == 201
    finally:
        _stop(process)
    # restart on the same data dir: same key, same data, no new bootstrap
    process = _serve(data_dir, port)
    try:
        listed = _wait_ready(process, f"http://127.0.0.1:{port}/v1/concepts", key)
        assert [c["name"] for c in listed.json()["items"]] == ["kept"]
        assert key_file.read_text().strip() == key
    finally:
        _stop(process)
    # stopping the service stops its embedded PostgreSQL (no orphan server)
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()


def test_a_bad_setting_is_named_at_startup(data_dir: Path) -> None:
    env = {**_env(data_dir), "PACE_SEARCH_POOL": "0"}
    command = [sys.executable, "-m", "pace_service", "serve"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("invalid setting PACE_SEARCH_POOL='0': ")
    assert "Traceback" not in result.stderr and not (data_dir / "pgdata").exists()


def test_keys_create_prints_a_working_key(database_url: str, data_dir: Path, client: Any) -> None:
    env = {**_env(data_dir), "DATABASE_URL": database_url}
    command = [sys.executable, "-m", "pace_service", "keys", "create", "--namespace", "ops"]
    result = subprocess.run(
        [*command, "--role", "read"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = result.stdout.strip()
    assert key.startswith("pace_") and len(key) > 40
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert me.json() == {"namespace": "ops", "role": "read"}
    # the first run against this database also bootstrapped namespace "default"
    assert (data_dir / "api-key").exists()
    bad = subprocess.run(
        [*command, "--role", "root"], env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
