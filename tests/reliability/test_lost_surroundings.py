"""What dockrun's surroundings can take away while it works, through the real CLI: the reader of its
output (`dockrun run ... | head -1`) and its working folder. Each is one line on stderr and an
exit code, never a traceback, and a run whose output nobody reads any more is stopped, as a
pipeline's writer is when its reader has read enough."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import dockrun_containers, write_project


@pytest.fixture
def env(home: Path, base_image: str) -> dict[str, str]:
    return {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}


def _chatty(tmp_path: Path, base_image: str) -> Path:
    return write_project(tmp_path / "chatty", {"MLproject": f"""
        name: chatty
        docker_env:
          image: {base_image}
        entry_points:
          main:
            command: "python -c 'import time\\nfor i in range(3000): print(i, flush=True); time.sleep(0.02)'"
        """})


@pytest.mark.usefixtures("no_leaks")
def test_a_run_whose_output_reader_goes_away_is_stopped_with_one_line(
        tmp_path: Path, base_image: str, env: dict[str, str], cli) -> None:
    project = _chatty(tmp_path, base_image)
    proc = subprocess.Popen([sys.executable, "-m", "dockrun", "run", str(project)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        assert ready, "the run printed nothing"
        assert proc.stdout.readline() == b"0\n"
        proc.stdout.close()  # as `| head -1` does once it has its line
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    assert code == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("dockrun: error: its output was closed; run ") and last.endswith(
        "was cancelled and its container removed"), err
    run_id = last.split("; run ")[1].split()[0]
    record = json.loads(cli("runs", "show", run_id).out)
    assert record["status"] == "KILLED"
    assert dockrun_containers(run_id) == []


def test_a_detached_runs_id_to_a_closed_pipe_is_no_traceback(
        tmp_path: Path, base_image: str, env: dict[str, str], home: Path, cli) -> None:
    project = write_project(tmp_path / "quick", {"MLproject": f"""
        name: quick
        docker_env:
          image: {base_image}
        entry_points:
          main:
            command: "echo done"
        """})
    read, write = os.pipe()
    os.close(read)  # nobody will read what it prints
    try:
        proc = subprocess.run([sys.executable, "-m", "dockrun", "run", str(project), "--detach"], env=env,
                              cwd=tmp_path, stdout=write, stderr=subprocess.PIPE, timeout=300)
    finally:
        os.close(write)
    assert proc.returncode == 141, proc.stderr
    assert b"Traceback" not in proc.stderr and b"Exception ignored" not in proc.stderr, proc.stderr
    (run_id,) = [p.name for p in (home / "runs").iterdir()]  # submitted before its ID could be printed
    assert cli("runs", "wait", run_id).code == 0  # and it runs to its end


def test_a_working_folder_deleted_under_dockrun_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    # The folder is removed after the shell entered it, before dockrun starts there.
    proc = subprocess.run(["sh", "-c", 'cd "$1" && rmdir "$1" && exec "$2" -m dockrun run ./project',
                           "sh", str(gone), sys.executable], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "dockrun: error: the current folder no longer exists (deleted or moved): cd to a folder and run again"]
