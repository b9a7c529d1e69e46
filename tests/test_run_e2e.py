"""`dockrun run` end to end against the real engine: build, cache, run, fail, interrupt, clean up."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import dockrun_containers, image_id, write_project

pytestmark = pytest.mark.usefixtures("no_leaks")

PROJECT = {
    "MLproject": """
        name: e2e
        python_env: python_env.yaml
        entry_points:
          main:
            parameters:
              alpha: float
              data: path
              out: path
            command: "python train.py --alpha {alpha} --data {data} --out {out}"
          fail: "python -c 'import sys; print(\\"failing now\\"); sys.exit(3)'"
          sleep: "trap 'echo term > $DOCKRUN_OUTPUT_DIR/term; exit 143' TERM; echo started; sleep 120 & wait"
    """,
    "python_env.yaml": """
        python: "3.11"
        dependencies: [tabulate==0.9.0]
    """,
    "train.py": """
        import argparse, os
        from tabulate import tabulate
        p = argparse.ArgumentParser()
        p.add_argument("--alpha", type=float)
        p.add_argument("--data")
        p.add_argument("--out")
        a = p.parse_args()
        rows = open(a.data).read().split()
        print(tabulate([["alpha", a.alpha], ["rows", len(rows)]]))
        with open(a.out, "w") as f:
            f.write(f"{a.alpha * len(rows)}\\n")
        print("uid", os.getuid())
    """,
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "e2e", PROJECT)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "in.txt").write_text("a\nb\nc\n")
    return d


def test_run_build_cache_and_code_change(cli, project: Path, data: Path, base_image: str) -> None:
    def args(out: str) -> list[str]:
        # A new output path each run: an existing file is an input, mounted read-only (CONTRACT.md).
        return ["run", str(project), "-P", "alpha=0.5", "-P", f"data={data}/in.txt", "-P", f"out={data}/{out}"]

    first = cli(*args("out.txt"))
    assert first.code == 0, first.err
    assert "alpha  0.5" in first.out and "rows   3" in first.out
    assert (data / "out.txt").read_text() == "1.5\n"

    # A rerun of the unchanged project builds nothing and runs the same image.
    second = cli(*args("out2.txt"))
    assert second.code == 0, second.err
    assert "building" not in second.err and "Step " not in second.err
    assert second.out == first.out

    # A code-only change rebuilds the code layer only, on the same environment image.
    plan_before = _plan(project, base_image)
    env_before = image_id(plan_before.env_image)
    assert env_before
    (project / "train.py").write_text((project / "train.py").read_text() + f"print('changed {uuid.uuid4()}')\n")
    plan_after = _plan(project, base_image)
    assert plan_after.env_image == plan_before.env_image
    assert plan_after.project_image != plan_before.project_image
    third = cli(*args("out3.txt"))
    assert third.code == 0, third.err
    assert "changed" in third.out
    assert f"building project image {plan_after.project_image}" in third.err
    assert "building environment image" not in third.err
    assert image_id(plan_after.env_image) == env_before


def _plan(project: Path, base_image: str):
    from dockrun.prepare import prepare_image
    from dockrun.request import RunRequest

    return prepare_image(RunRequest(uri=str(project), base_image=base_image)).plan


def test_output_files_belong_to_the_calling_user(project: Path, as_user) -> None:
    """`dockrun run` by an unprivileged user (uid 4321, in the docker group, when the tests run as
    root): what the container writes to mounted folders, and the run's outputs, belong to that user."""
    shared = as_user.folder()
    (shared / "in.txt").write_text("x\ny\n")
    shutil.copytree(project, shared / "proj")
    p = as_user.run(shared, "run", "proj", "-P", "alpha=2", "-P", "data=in.txt", "-P", "out=result.txt")
    assert p.code == 0, p.err
    assert f"uid {as_user.uid}" in p.out
    assert (shared / "result.txt").read_text() == "4.0\n"
    assert (shared / "result.txt").stat().st_uid == as_user.uid
    outputs = list((shared / "home" / "runs").glob("*/outputs"))
    assert outputs and outputs[0].stat().st_uid == as_user.uid


def test_failing_entry_point_exits_1(cli, project: Path) -> None:
    r = cli("run", str(project), "-e", "fail")
    assert r.code == 1
    assert "failing now" in r.out
    assert r.err.strip().splitlines()[-1].startswith("dockrun: error: run ")
    assert "exited with status 3" in r.err


def test_bad_float_is_one_line_exit_2(cli, project: Path, data: Path) -> None:
    r = cli("run", str(project), "-P", "alpha=abc", "-P", f"data={data}/in.txt", "-P", f"out={data}/o")
    assert r.code == 2
    assert r.err.splitlines() == [
        "dockrun: error: parameter 'alpha' of entry point 'main': expected a float, got 'abc'"]
    assert "Traceback" not in r.err and r.out == ""


@pytest.mark.parametrize("args, expected", [
    (["-e", "nope"], "no entry point 'nope'"),
    (["-v", "main"], "--version applies to Git URIs only"),
    (["-P", "novalue"], "-P 'novalue': expected KEY=VALUE"),
    (["-A", "bogus=1", "-e", "fail"], "--docker-args bogus: unknown Docker option"),
])
def test_user_errors_exit_2_one_line(cli, project: Path, args: list[str], expected: str) -> None:
    r = cli("run", str(project), *args)
    assert r.code == 2, r.err
    assert len(r.err.strip().splitlines()) == 1 and expected in r.err, r.err


def test_missing_project_folder(cli, tmp_path: Path) -> None:
    r = cli("run", str(tmp_path / "nothing"))
    assert r.code == 2 and r.err.startswith("dockrun: error: ") and "no such project folder" in r.err


def _start(cli_env: dict, *args: str) -> subprocess.Popen:
    def child() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen([sys.executable, "-m", "dockrun.cli", *args], env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=child, start_new_session=True)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 130)])
def test_interrupt_leaves_no_container(cli, project: Path, home: Path, base_image: str, sig, code) -> None:
    assert cli("run", str(project), "-e", "fail").code == 1  # warm the image first
    env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}
    proc = _start(env, "run", str(project), "-e", "sleep")
    try:
        assert proc.stdout.readline().strip() == "started"
        assert len(dockrun_containers()) >= 1
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    # The command got SIGTERM (tini forwards it) and ended by itself: no kill after a grace period.
    (term,) = (home / "runs").glob("*/outputs/term")
    assert term.read_text() == "term\n"
    assert "interrupted" in err and "Traceback" not in err
    run_id = term.parent.parent.name  # this run's only: other containers may share a developer's engine
    assert dockrun_containers(run_id) == []


def test_conventions_script_entry_point_with_extra_params(cli, tmp_path: Path) -> None:
    """No MLproject: the folder name is the project, a .py file is an entry point, undeclared -P
    pairs become --key value."""
    project = write_project(tmp_path / "plainproj", {
        "train.py": "import sys; print('argv', sys.argv[1:])\n",
        "tools/run.sh": "echo sh-entry \"$@\"\n",
    })
    r = cli("run", str(project), "-e", "train.py", "-P", "epochs=3", "-P", "name=a b")
    assert r.code == 0, r.err
    assert "argv ['--epochs', '3', '--name', 'a b']" in r.out
    r = cli("run", str(project), "-e", "tools/run.sh", "-P", "x=1")
    assert r.code == 0 and r.out.strip() == "sh-entry --x 1"


def test_debug_shows_traceback_only_when_asked(cli, project: Path) -> None:
    plain = cli("run", str(project), "-e", "nope")
    assert plain.code == 2 and "Traceback" not in plain.err
    debug = cli("run", str(project), "-e", "nope", env={"DOCKRUN_DEBUG": "1"})
    assert debug.code == 2 and "Traceback" in debug.err
    assert debug.err.strip().splitlines()[-1] == plain.err.strip()  # the same one line, last
