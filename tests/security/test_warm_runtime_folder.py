"""The warm helper's runtime folder, met as another user on the machine meets it.

After `su` without `-` (or `sudo -E`), $XDG_RUNTIME_DIR is still the first user's: they own the
folder that holds ours, and may swap our private `dockrun` folder for one of their own at any
moment. The client checks the folder before it starts a helper, but the helper opens its files a
moment later; a helper that then followed their symlink would truncate and write any file of ours
(where the command run in-process writes nothing at all). Here the swap is made while the helper
starts (a sitecustomize holds it at its start until the test says go), the way a watcher of
/proc wins that race."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import unavailable, write_project

HOLD = textwrap.dedent("""
    import os, sys
    if "dockrun.warmstart.server" in " ".join(sys.orig_argv) and {runtime!r} in " ".join(sys.orig_argv):
        with open({started!r}, "w") as f:  # blocks until the test reads: the helper has started
            f.write(str(os.getpid()))
        with open({go!r}) as f:  # blocks until the test writes: the folder has been swapped
            f.read()
""")


@pytest.fixture
def project(tmp_path: Path, base_image: str) -> Path:
    return write_project(tmp_path / "proj", {"MLproject": f"name: swap\ndocker_env:\n  image: {base_image}\n"
                                                            "entry_points:\n  main:\n    command: \"echo ran\"\n"})


def test_a_swapped_runtime_folder_is_never_written_through(tmp_path: Path, project: Path, home: Path,
                                                            base_image: str) -> None:
    if os.getuid() != 0:
        unavailable("acting as another user needs root")
    theirs = tmp_path / "run-user-65534"  # the other user's $XDG_RUNTIME_DIR
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)
    victim = tmp_path / "victim.txt"  # any file of ours
    victim.write_text("precious\n")
    hold = tmp_path / "hold"
    hold.mkdir()
    started, go = tmp_path / "started", tmp_path / "go"
    os.mkfifo(started)
    os.mkfifo(go)
    (hold / "sitecustomize.py").write_text(HOLD.format(runtime=str(theirs), started=str(started), go=str(go)))
    path = os.pathsep.join(p for p in (str(hold), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(theirs), "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image,
           "PYTHONPATH": path, "DOCKRUN_WARMSTART_IDLE_S": "60"}
    r = subprocess.run([sys.executable, "-m", "dockrun", "run", "."], env=env, cwd=project, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "ran" in r.stdout, r.stderr  # in-process: no helper yet, one is starting
    with open(started) as f:
        helper = int(f.read())
    ours = theirs / "dockrun"
    argv = Path(f"/proc/{helper}/cmdline").read_bytes().split(b"\0")  # its socket's path, as a watcher sees it
    name = os.path.basename(next(a.decode() for a in argv if a.startswith(str(ours).encode())))
    # Their move: our folder aside, theirs in its place, with the helper's lock file a symlink.
    os.rename(ours, theirs / "dockrun.ours")
    ours.mkdir(mode=0o755)
    os.symlink(victim, ours / f"{name}.lock")
    os.lchown(ours / f"{name}.lock", 65534, 65534)
    os.chown(ours, 65534, 65534)
    try:
        with open(go, "w") as f:
            f.write("go")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and Path(f"/proc/{helper}").exists() and _state(helper) != "Z" \
                and not (ours / name).exists() and victim.read_text() == "precious\n":
            time.sleep(0.05)
        assert victim.read_text() == "precious\n"  # not truncated, no pid written into it
        assert sorted(p.name for p in ours.iterdir()) == [f"{name}.lock"]  # nothing of ours in their folder
    finally:
        try:
            os.kill(helper, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
