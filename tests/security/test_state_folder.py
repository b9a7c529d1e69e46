"""The state folder (DOCKRUN_HOME) holds commands, parameters, logs and caches that builds and runs
trust: a fresh one is its owner's only, and one another user owns or may write to is refused."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def dockrun(home: Path, *args: str, base_image: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}
    # umask 022, as a login shell has it: the modes below must not come from a strict umask
    return subprocess.run([sys.executable, "-m", "dockrun", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600, preexec_fn=lambda: os.umask(0o022))


def test_a_fresh_home_and_its_run_store_are_the_owners_only(tmp_path: Path, base_image: str) -> None:
    home = tmp_path / "new" / "dockrun"
    r = dockrun(home, "run", "examples/hello", "-q", "-P", "alpha=0.3", base_image=base_image)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in ("runs.db", "runs.db-wal", "runs.db-shm"):
        if (home / name).exists():
            assert stat.S_IMODE((home / name).stat().st_mode) & 0o077 == 0, name


def test_a_home_another_user_owns_is_refused(tmp_path: Path, base_image: str) -> None:
    home = tmp_path / "theirs"
    home.mkdir(mode=0o700)
    os.chown(home, 65534, 65534)  # nobody's (the tests run as root in CI)
    for args in (("run", "examples/hello", "-P", "alpha=0.3"), ("runs", "list")):
        r = dockrun(home, *args, base_image=base_image)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip().splitlines() == [
            f"dockrun: error: DOCKRUN_HOME={home}: owned by uid 65534, not by you (uid {os.getuid()}); "
            "set DOCKRUN_HOME to a folder of your own"], r.stderr
    assert list(home.iterdir()) == []


def test_a_home_others_may_write_to_is_refused(tmp_path: Path, base_image: str) -> None:
    home = tmp_path / "open"
    home.mkdir()
    os.chmod(home, 0o777)
    r = dockrun(home, "run", "examples/hello", "-P", "alpha=0.3", base_image=base_image)
    assert r.returncode == 2
    assert f"DOCKRUN_HOME={home}: other users may write to it (mode 777); chmod 700 {home}" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and list(home.iterdir()) == []
