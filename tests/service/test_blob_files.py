"""Atomic blob writes and the startup sweep of killed writers' temp files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pace_service.store.blob_files import atomic_write, sweep_temp_files

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock")


def test_atomic_write_renames_on_success_and_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "blobs" / "abc"
    with atomic_write(target) as f:
        f.write(b"whole")
        assert not target.exists()  # invisible until the block ends
    assert target.read_bytes() == b"whole"
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "blobs" / "def") as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == ["abc"]


def test_sweep_removes_a_dead_writers_temp_file_but_not_a_live_one(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    dead = blobs / ".aaa.x1.tmp"
    dead.write_bytes(b"left by a SIGKILLed build")  # nobody holds its lock
    done = blobs / "bbb"
    done.write_bytes(b"a finished blob")
    # a writer in another process, holding its temp file's lock
    live_holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; "
            "from pace_service.store.blob_files import atomic_write\n"
            "with atomic_write(Path(sys.argv[1])) as f:\n"
            "    f.write(b'x'); f.flush(); print('held', flush=True); sys.stdin.readline()",
            str(blobs / "ccc"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert live_holder.stdout is not None and live_holder.stdout.readline() == "held\n"
        live = [p for p in blobs.glob(".ccc.*.tmp")]
        assert len(live) == 1
        assert sweep_temp_files(blobs) == [dead]
        assert live[0].exists() and done.exists() and not dead.exists()
    finally:
        assert live_holder.stdin is not None
        live_holder.stdin.write("\n")
        live_holder.stdin.close()
        live_holder.wait(30)
    assert (blobs / "ccc").read_bytes() == b"x"  # the live writer finished undisturbed
    assert sorted(os.listdir(blobs)) == ["bbb", "ccc"]
    assert sweep_temp_files(tmp_path / "missing") == []
