"""A short run of the load bench (``bench/service_load.py``): concurrent clients, zero errors.

The bench runs the service as users do (uvicorn in a subprocess; here on this test's
database instead of its own embedded server, to save the start), seeds through the
API, and exits non-zero if any request got an unexpected status or failed; its full
50-client, 60-second run is the figure in docs/reliability.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "service_load.py"


def test_load_mix_with_concurrent_clients_has_no_errors(database_url: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            *("--clients", "8", "--seconds", "5", "--baseline-seconds", "1"),
            *("--concepts", "300", "--layers", "2", "--database-url", database_url),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "8 client(s)" in done.stdout
    assert "OK: 0 errors" in done.stdout
    for op in ("search", "dict_304", "dict_200", "dict_new", "edit"):
        assert f"  {op} " in done.stdout
