"""A sandboxed `dockrun run` is never served by a warm helper's worker outside its sandbox.

Landlock rules (and the contents of seccomp filters) are not shown in /proc: a command confined
by them looks exactly like another no-new-privs command of the same user. A helper started from
one such context (a service with NoNewPrivileges=, a sandbox with another policy) would then
serve the confined command with a worker that is not confined, and the run would do what the
command itself may not (here: write its DOCKRUN_HOME, outside what Landlock allows). So a command
with no-new-privs runs in-process, and a helper refuses such a caller even when it speaks the
protocol itself."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import unavailable, write_project
from dockrun.store.records import RunStore

# landlock_run.py ALLOWED CMD...: no new privileges, then Landlock: files may be made or written
# only beneath ALLOWED (and /dev); reading stays allowed everywhere. Then exec CMD.
LANDLOCK_RUN = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
WRITE = sum(1 << b for b in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12))  # write_file, remove_*, make_*
class Attr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]
class Beneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]
attr = Attr(WRITE)
ruleset = libc.syscall(444, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
assert ruleset >= 0, os.strerror(ctypes.get_errno())
for folder in (sys.argv[1], "/dev"):
    rule = Beneath(WRITE, os.open(folder, os.O_PATH))
    assert libc.syscall(445, ruleset, 1, ctypes.byref(rule), ctypes.c_uint32(0)) == 0
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.syscall(446, ruleset, ctypes.c_uint32(0)) == 0, os.strerror(ctypes.get_errno())
os.execvp(sys.argv[2], sys.argv[2:])
"""

# The helper of a no-new-privs context, started as `dockrun run` starts one.
START_HELPER = ("from dockrun.warmstart import client; folder = client.runtime_dir(); mods = client.search_path(); "
                "path = client.socket_path(folder, client.identity(mods)); client.start_helper(path, mods); "
                "print(path)")

CLAIM = r"""
import marshal, os, socket, struct, sys
from dockrun.warmstart import client
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(30)
sock.connect(sys.argv[1])
body = marshal.dumps({"identity": client.identity(client.search_path()), "argv": ["run", "."], "env": dict(os.environ),
                      "fds": [], "streams": [("utf-8", "strict", False, False)] * 3})
fds = struct.pack("3i", 0, 1, 2)
sock.sendmsg([struct.pack("!I", len(body)) + body], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
sys.stdout.write(sock.recv(200).decode())  # "pid N" (then we hang up: it never runs) or "refused ..."
"""


def _landlock_abi() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # LANDLOCK_CREATE_RULESET_VERSION


@pytest.fixture
def project(tmp_path: Path, base_image: str) -> Path:
    return write_project(tmp_path / "proj", {"MLproject": f"name: sandbox\ndocker_env:\n  image: {base_image}\n"
                                                            "entry_points:\n  main:\n    command: \"echo ran\"\n"})


def test_a_landlocked_command_is_not_served_by_another_sandboxs_helper(tmp_path: Path, project: Path, home: Path,
                                                                       base_image: str) -> None:
    if _landlock_abi() < 1:
        unavailable("Landlock is not enabled in this kernel")
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    allowed = tmp_path / "allowed"  # all the sandboxed command may write; its DOCKRUN_HOME is elsewhere
    allowed.mkdir()
    (tmp_path / "landlock_run.py").write_text(LANDLOCK_RUN)
    (tmp_path / "claim.py").write_text(CLAIM)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image,
           "DOCKRUN_WARMSTART_IDLE_S": "60"}
    sandboxed = [sys.executable, str(tmp_path / "landlock_run.py"), str(allowed)]
    helper = None
    try:
        # A helper of a no-new-privs context that Landlock does not confine.
        path = subprocess.run(["setpriv", "--no-new-privs", sys.executable, "-c", START_HELPER], env=env, cwd=project,
                              capture_output=True, text=True, check=True).stdout.strip()
        helper = _wait_helper(Path(path))
        seen = {}
        for mode in ("0", "1"):
            r = subprocess.run([*sandboxed, sys.executable, "-m", "dockrun", "run", "."],
                               env={**env, "DOCKRUN_WARMSTART": mode}, cwd=project, capture_output=True, text=True,
                               timeout=300)
            seen[mode] = (r.returncode, "ran" in r.stdout)
        assert seen["0"][0] != 0  # in-process the sandbox holds: it may not write its DOCKRUN_HOME
        assert seen["1"] == seen["0"]  # nor when a helper is up
        assert not (home / "runs.db").exists() or RunStore(home).list(10) == []
        # The sandboxed process speaking to that helper itself, claiming the identity it has there.
        r = subprocess.run([*sandboxed, sys.executable, str(tmp_path / "claim.py"), path], env=env, cwd=project,
                           capture_output=True, text=True, timeout=60)
        assert r.stdout.startswith("refused ") and "NoNewPrivs" in r.stdout, (r.stdout, r.stderr)
    finally:
        if helper:
            os.kill(helper, signal.SIGTERM)


def _wait_helper(path: Path, timeout: float = 30) -> int:
    """The helper's pid once it listens at ``path``."""
    lock = Path(f"{path}.lock")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and lock.exists() and lock.read_text().strip():
            return int(lock.read_text())
        time.sleep(0.05)
    raise AssertionError(f"no helper listening at {path}")
