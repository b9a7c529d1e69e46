"""The conda installer's record, lock and locked install, run on the host exactly as the build runs
it (the same script, the same py-rattler pin), against a real channel built with py-rattler-build
and read through file:// URLs. No Docker: the end-to-end versions are in test_installed_e2e.py and
test_conda_e2e.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conda_channel import build_channel
from dockrun.images.kinds import CONDA_INSTALLER


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> str:
    return "file://" + str(build_channel(tmp_path_factory.mktemp("channel")))


def _installer(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CONDA_INSTALLER), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _env(tmp_path: Path, channel: str, spec: str) -> Path:
    path = tmp_path / f"env-{abs(hash(spec))}.json"
    path.write_text(json.dumps({"channels": [channel], "dependencies": [spec]}))
    return path


def test_lock_then_locked_install_installs_exactly_the_lock(tmp_path: Path, channel: str) -> None:
    lock = _installer("--lock", _env(tmp_path, channel, "dockrun-demo=1.1"))
    assert lock.returncode == 0, lock.stdout + lock.stderr
    lines = lock.stdout.splitlines()
    assert lines[:2] == ["# platform: linux-64", "@EXPLICIT"] and len(lines) == 3
    assert lines[2].startswith(f"{channel}/noarch/dockrun-demo-1.1.0-") and "#" in lines[2]
    (tmp_path / "conda-lock.txt").write_text(lock.stdout)

    # The environment allows any version; the lock says 1.1.0, and that is what is installed.
    prefix, record = tmp_path / "prefix", tmp_path / "installed.json"
    r = _installer(_env(tmp_path, channel, "dockrun-demo"), prefix, record, tmp_path / "conda-lock.txt")
    assert r.returncode == 0, r.stdout + r.stderr
    ran = subprocess.run([prefix / "bin" / "dockrun-demo"], capture_output=True, text=True)
    assert ran.stdout == "dockrun-demo 1.1.0\n"
    data = json.loads(record.read_text())
    assert data["installer"] == "conda" and data["python"] is None
    assert data["explicit"] == lock.stdout  # what was installed is what was locked
    (package,) = data["packages"]
    assert (package["name"], package["version"], package["source"]) == ("dockrun-demo", "1.1.0", "conda")
    assert package["url"] + "#" + package["md5"] == lines[2] and len(package["sha256"]) == 64


def test_without_a_lock_the_solver_decides_and_the_record_says_what_it_chose(tmp_path: Path, channel: str) -> None:
    prefix, record = tmp_path / "prefix", tmp_path / "installed.json"
    r = _installer(_env(tmp_path, channel, "dockrun-demo"), prefix, record)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(record.read_text())
    assert [(p["name"], p["version"]) for p in data["packages"]] == [("dockrun-demo", "1.3.0")]
    assert "dockrun-demo-1.3.0-" in data["explicit"]


def test_an_empty_environment_records_nothing_installed(tmp_path: Path) -> None:
    env = tmp_path / "env.json"
    env.write_text(json.dumps({"channels": [], "dependencies": []}))
    r = _installer(env, tmp_path / "prefix", tmp_path / "installed.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads((tmp_path / "installed.json").read_text())["packages"] == []


@pytest.mark.parametrize("change", ["md5", "platform", "gone"])
def test_a_lock_the_channel_does_not_match_is_one_line(tmp_path: Path, channel: str, change: str) -> None:
    text = _installer("--lock", _env(tmp_path, channel, "dockrun-demo=1.2")).stdout
    url, md5 = text.splitlines()[2].split("#")
    if change == "md5":
        text = text.replace(md5, "0" * 32)
        expected = f"MD5 {'0' * 32} in the lock, {md5} in the channel"
    elif change == "platform":
        text = text.replace("linux-64", "osx-arm64")
        expected = "conda-lock.txt was written for osx-arm64; this build installs for linux-64"
    else:
        text = text.replace("1.2.0", "1.2.9")
        expected = "is not in its channel any more"
    (tmp_path / "conda-lock.txt").write_text(text)
    r = _installer(_env(tmp_path, channel, "dockrun-demo"), tmp_path / "p", tmp_path / "i.json",
                   tmp_path / "conda-lock.txt")
    assert r.returncode == 1
    (line,) = [line for line in r.stdout.splitlines() if line.startswith("dockrun-check: ")]
    assert expected in line, line
    assert not (tmp_path / "i.json").exists()
