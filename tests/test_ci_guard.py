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


SKIPPING = '''
import pytest

def test_plain_skip():
    pytest.skip("the server is not here")

@pytest.mark.skipif(True, reason="a mark")
def test_marked():
    pass

@pytest.mark.xfail(reason="expected")
def test_expected_failure():
    assert False

def test_runs():
    pass
'''


def _pytest(args: list[str], ci: str | None, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "DOCKRUN_MICROMAMBA_IMAGE")}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent)])
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_every_skip_fails_in_ci_unless_allowed_and_the_allow_list_is_printed(tmp_path: Path) -> None:
    (tmp_path / "test_skips.py").write_text(SKIPPING)
    (tmp_path / "test_module_skip.py").write_text('import pytest\npytest.importorskip("no_such_module_here")\n')
    plugin = ["-p", "conftest"]  # the suite's conftest, as a plugin, for tests outside tests/
    dev = _pytest([*plugin, "test_skips.py", "test_module_skip.py"], None, tmp_path)
    assert dev.returncode == 0 and "1 passed, 3 skipped, 1 xfailed" in dev.stdout, dev.stdout[-2000:]
    ci = _pytest([*plugin, "test_skips.py"], "True", tmp_path)
    assert ci.returncode == 1 and "1 failed, 1 passed, 1 xfailed, 1 error" in ci.stdout, ci.stdout[-2000:]
    assert "CI=true: the test skipped (the server is not here), and it is not on CI_MAY_SKIP" in ci.stdout
    assert "CI=true: the test skipped (a mark)" in ci.stdout
    collected = _pytest([*plugin, "test_module_skip.py"], "1", tmp_path)
    assert collected.returncode != 0 and "CI=true: test_module_skip.py skipped while collected" in collected.stdout
    # The one allowed skip passes in CI, and the end of the run says what was not tested and why.
    allowed = _pytest([str(HERE / "test_images_e2e.py::test_conda_yaml_with_micromamba")], "true", HERE.parent)
    assert allowed.returncode == 0 and "1 skipped" in allowed.stdout, allowed.stdout[-2000:]
    assert "skips CI allows (tests/conftest.py CI_MAY_SKIP)" in allowed.stdout
    assert "skipped       tests/test_images_e2e.py::test_conda_yaml_with_micromamba: no micromamba image" in (
        allowed.stdout)
