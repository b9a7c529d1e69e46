"""A secret given to dockrun in its environment never reaches the command line of a program it
starts: every local user can read any process's argv (ps, /proc/PID/cmdline)."""
from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path

from conftest import write_project


def _recording_docker(folder: Path, record: Path) -> Path:
    """A `docker` first on PATH that writes down each argv it is given, then runs the real one."""
    real = shutil.which("docker")
    assert real, "no docker CLI on PATH"
    folder.mkdir()
    shim = folder / "docker"
    shim.write_text(f"""#!/bin/sh
for arg in "$@"; do printf '%s\\n' "$arg"; done >> '{record}'
printf '%s\\n' '--- end of argv' >> '{record}'
exec '{real}' "$@"
""")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return folder


def test_lock_passes_no_index_token_in_argv(cli, tmp_path: Path) -> None:
    token = f"TOKEN{uuid.uuid4().hex}"
    project = write_project(tmp_path / "locked", {"requirements.txt": "tabulate==0.9.0\n"})
    record = tmp_path / "argv.txt"
    shims = _recording_docker(tmp_path / "bin", record)
    env = {"PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
           "PIP_INDEX_URL": f"https://user:{token}@127.0.0.1:1/simple",
           "HTTPS_PROXY": f"http://proxyuser:{token}@127.0.0.1:1"}
    r = cli("lock", str(project), env=env, timeout=300)
    # The index cannot answer, so the lock fails; what matters is how the index reached docker.
    argvs = record.read_text() if record.exists() else ""
    assert " run" in " " + argvs.replace("\n", " "), f"the docker shim was not used: {r.err}"
    assert token not in argvs
    args = argvs.split("\n")
    for name in ("PIP_INDEX_URL", "UV_DEFAULT_INDEX", "HTTPS_PROXY"):  # given by name: -e NAME or --env=NAME
        assert name in args or f"--env={name}" in args, args
    assert r.code == 1 and token not in r.err and token not in r.out
    assert not (project / "requirements.lock").exists()
