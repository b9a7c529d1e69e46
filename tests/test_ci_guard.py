"""In CI (CI=true), an end-to-end test whose engine is missing fails instead of skipping."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run_e2e_without_engine(ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["DOCKER_HOST"] = "unix:///nonexistent.sock"
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs",
                           str(HERE / "test_run_e2e.py::test_failing_entry_point_exits_1")],
                          cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=120)


def test_no_engine_fails_in_ci_and_skips_elsewhere() -> None:
    ci = _run_e2e_without_engine("true")
    assert ci.returncode != 0 and "CI=true, and no Docker engine answers" in ci.stdout, ci.stdout[-2000:]
    dev = _run_e2e_without_engine(None)
    assert dev.returncode == 0 and "1 skipped" in dev.stdout, dev.stdout[-2000:]
