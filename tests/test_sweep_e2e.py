"""`dockrun sweep`: a grid on the real engine through the real CLI; failures, Ctrl-C and resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, dockrun_containers, write_project


def project(tmp_path: Path, base_image: str) -> Path:
    # a=2 fails; every other point writes its score; gate: a folder whose `go` file lets runs finish at once
    return write_project(tmp_path / "grid", {"MLproject": f"""
        name: grid
        docker_env:
          image: {base_image}
        entry_points:
          main:
            parameters:
              a: {{type: float}}
              b: {{type: float, default: 0}}
              gate: {{type: path, default: .}}
            command: "test -f {{gate}}/go || sleep 300; python3 score.py {{a}} {{b}}"
    """, "score.py": """
        import json, os, sys
        a, b = float(sys.argv[1]), float(sys.argv[2])
        if a == 2:
            sys.exit(7)
        with open(os.path.join(os.environ["DOCKRUN_OUTPUT_DIR"], "metrics.json"), "w") as f:
            json.dump({"score": a * 10 + b}, f)
    """})


def test_a_grid_runs_every_point_and_prints_its_table(cli, tmp_path: Path, base_image: str, home: Path,
                                                      no_leaks) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "go").touch()
    proj = project(tmp_path, base_image)
    r = cli("sweep", str(proj), "-P", "a=1,2,3", "-P", "b=0,1", "-P", f"gate={gate}", "--parallel", "3",
            "--sort", "-score")
    assert r.code == 1, r.err  # the a=2 runs failed; the others did not stop
    lines = r.out.strip().splitlines()
    assert lines[0].startswith("sweep ")
    header, rows = lines[1].split(), [line.split() for line in lines[2:]]
    assert header[:4] == ["RUN", "ID", "STATUS", "a"] and header[-1] == "score"
    assert [row[1] for row in rows] == ["FINISHED"] * 4 + ["FAILED"] * 2
    assert [float(row[-1]) for row in rows[:4]] == [31, 30, 11, 10]  # sorted by score, descending
    assert len({row[0] for row in rows}) == 6 and len(list((home / "runs").iterdir())) == 6


def test_ctrl_c_cancels_every_run_and_resume_runs_what_did_not_finish(
        tmp_path: Path, base_image: str, home: Path, no_leaks) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    proj = project(tmp_path, base_image)
    env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}
    proc = subprocess.Popen([sys.executable, "-m", "dockrun", "sweep", str(proj), "-P", "a=1,3,4",
                             "-P", f"gate={gate}", "--parallel", "2", "-q"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    sweeps = home / "sweeps"
    deadline = time.monotonic() + 300
    while True:  # two runs RUNNING: the sweep record names them and their containers are up
        records = list(sweeps.glob("*.json")) if sweeps.is_dir() else []
        started = json.loads(records[0].read_text())["runs"] if records else {}
        if len(started) == 2 and len(dockrun_containers()) >= 2:
            break
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    sweep_id = records[0].stem
    assert f"dockrun sweep --resume {sweep_id}" in err
    runs = [json.loads(subprocess.run([sys.executable, "-m", "dockrun", "runs", "show", run_id], env=env,
                                      capture_output=True, text=True, check=True).stdout)
            for run_id in started.values()]
    assert {r["status"] for r in runs} == {"KILLED"} and all(r["ended"] for r in runs)
    assert not [c for c in dockrun_containers() if any(r["run_id"] in c for r in runs)]

    (gate / "go").touch()
    resumed = subprocess.run([sys.executable, "-m", "dockrun", "sweep", "--resume", sweep_id, "-q", "--sort", "score"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    rows = [line.split() for line in resumed.stdout.strip().splitlines()[2:]]
    assert [row[1] for row in rows] == ["FINISHED"] * 3 and [float(row[-1]) for row in rows] == [10, 30, 40]
    again = subprocess.run([sys.executable, "-m", "dockrun", "sweep", "--resume", sweep_id, "-q"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and len(list((home / "runs").iterdir())) == 5  # 2 killed + 3; nothing rerun


def test_a_bad_value_in_the_grid_is_one_line_and_nothing_runs(cli, tmp_path: Path, base_image: str,
                                                              home: Path) -> None:
    r = cli("sweep", str(project(tmp_path, base_image)), "-P", "a=1,x")
    assert r.code == 2 and r.err.strip().splitlines() == [
        "dockrun: error: parameter 'a' of entry point 'main': expected a float, got 'x'"]
    assert not (home / "runs").exists()
