"""Issue 20.3: an output parameter exposes nothing beside it.

`-P out=model.pkl` from the home folder once mounted the whole home folder read-write. Now a run
writes its outputs into a folder of its own (under the run's folder in DOCKRUN_HOME), mounted
where the command expects the output's folder, and what it wrote at the output's path is moved
into place when it ends: its siblings are neither readable nor writable from the run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import write_project

pytestmark = pytest.mark.usefixtures("no_leaks")

MLPROJECT = """
name: {name}
entry_points:
  main:
    parameters:
      out: path
    command: "sh nosy.sh {{out}}"
  partial:
    parameters:
      out: path
    command: "echo partial > {{out}}; exit 3"
  gated:
    parameters:
      out: path
    command: "while [ ! -e $DOCKRUN_OUTPUT_DIR/go ]; do sleep 0.05; done; exit 3"
  gated_write:
    parameters:
      out: path
    command: "while [ ! -e $DOCKRUN_OUTPUT_DIR/go ]; do sleep 0.05; done; echo late > {{out}}; echo x > {{out}}.sib"
  folder:
    parameters:
      out: path
    command: "mkdir -p {{out}}/sub && echo a > {{out}}/sub/a.txt && ln -s /etc/passwd {{out}}/abs
              && ln -s ../outside {{out}}/up && ln -s sub/a.txt {{out}}/rel"
"""

NOSY = """
out="$1"
folder=$(dirname "$out")
echo model > "$out"
echo sneaky > "$folder/sibling.txt" 2>/dev/null
cat "$folder/secret.txt" > "$DOCKRUN_OUTPUT_DIR/stolen.txt" 2>/dev/null
ls -a "$folder" > "$DOCKRUN_OUTPUT_DIR/listing.txt"
echo done
"""


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, str]:
    name = f"outs-{uuid.uuid4().hex[:8]}"
    root = write_project(tmp_path / "proj", {"MLproject": MLPROJECT.format(name=name), "nosy.sh": NOSY})
    yield root, name
    images = subprocess.run(["docker", "images", "-q", "--filter", f"label=dockrun.project={name}"],
                            capture_output=True, text=True).stdout.split()
    if images:
        subprocess.run(["docker", "rmi", "-f", *images], capture_output=True)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder like a home folder: a secret beside where the output goes."""
    f = tmp_path / "home-like"
    f.mkdir()
    (f / "secret.txt").write_text("the user's secret\n")
    return f


def _run_dir(home: Path) -> Path:
    [run_dir] = (home / "runs").iterdir()
    return run_dir


def test_an_output_is_written_and_nothing_beside_it_is_reachable(cli, project, folder: Path, home: Path) -> None:
    root, _ = project
    r = cli("run", str(root), "-P", "out=model.pkl", "-q", cwd=folder)
    assert r.code == 0, r.err
    assert "done" in r.out
    assert (folder / "model.pkl").read_text() == "model\n"
    assert not (folder / "sibling.txt").exists()
    assert (folder / "secret.txt").read_text() == "the user's secret\n"
    outputs = _run_dir(home) / "outputs"
    assert not (outputs / "stolen.txt").exists() or (outputs / "stolen.txt").read_text() == ""
    assert "secret.txt" not in (outputs / "listing.txt").read_text()
    # the parameter taken as an output is said once, on stderr, naming it and where it goes
    line = f"-P out=model.pkl: no such file; taken as an output (written by the run into {folder / 'model.pkl'})"
    assert r.err.count(line) == 1, r.err
    assert sorted(p.name for p in folder.iterdir()) == ["model.pkl", "secret.txt"]
    # the run's folder, which holds the plan of what is written where, is the user's alone
    assert _run_dir(home).stat().st_mode & 0o777 == 0o700


def test_a_shell_gets_the_same_outputs_and_nothing_beside_them(cli, project, folder: Path, home: Path) -> None:
    root, _ = project
    r = cli("shell", str(root), "-P", "out=model.pkl", "-q", "--", "sh", "nosy.sh", str(folder / "model.pkl"),
            cwd=folder)
    assert r.code == 0, r.err
    assert (folder / "model.pkl").read_text() == "model\n"
    assert sorted(p.name for p in folder.iterdir()) == ["model.pkl", "secret.txt"]


def test_a_failed_run_that_wrote_its_output_puts_it_in_place_and_says_so(cli, project, folder: Path) -> None:
    root, _ = project
    r = cli("run", str(root), "-e", "partial", "-P", f"out={folder / 'model.pkl'}", "-q")
    assert r.code == 1, r.err
    assert (folder / "model.pkl").read_text() == "partial\n"
    assert f"{folder / 'model.pkl'}" in r.err and "FAILED" in r.err, r.err


def test_a_failed_run_that_did_not_write_leaves_the_previous_file_alone(cli, project, folder: Path,
                                                                        home: Path) -> None:
    root, _ = project
    target = folder / "model.pkl"
    run_id = cli("run", str(root), "-e", "gated", "-P", f"out={target}", "--detach", "-q").out.strip()
    assert run_id, "no run id"
    # While the run waits, another step puts a model there; then the run is let go, and fails.
    target.write_text("previous model\n")
    (home / "runs" / run_id / "outputs" / "go").write_text("")
    w = cli("runs", "wait", run_id)
    assert w.code == 1, w.err
    rec = json.loads(cli("runs", "show", run_id).out)
    assert rec["status"] == "FAILED", rec
    assert target.read_text() == "previous model\n"


def test_links_in_an_output_folder_that_lead_out_are_not_created(cli, project, folder: Path) -> None:
    root, _ = project
    out = folder / "results"
    r = cli("run", str(root), "-e", "folder", "-P", f"out={out}", "-q")
    assert r.code == 0, r.err
    assert (out / "sub" / "a.txt").read_text() == "a\n"
    assert os.readlink(out / "rel") == "sub/a.txt"
    assert not os.path.lexists(out / "abs") and not os.path.lexists(out / "up")
    assert r.err.count("not created") == 1, r.err


def test_dev_still_writes_the_project_folder(cli, project) -> None:
    root, _ = project
    (root / "MLproject").write_text((root / "MLproject").read_text() + '  touch: "echo live > made.txt"\n')
    r = cli("run", "--dev", str(root), "-e", "touch", "-q")
    assert r.code == 0, r.err
    assert (root / "made.txt").read_text() == "live\n"


def test_a_missing_folder_for_an_output_is_one_line_exit_2(cli, project, folder: Path, home: Path) -> None:
    root, _ = project
    r = cli("run", str(root), "-P", f"out={folder / 'nope' / 'model.pkl'}", "-q")
    assert r.code == 2 and r.err.strip().count("\n") == 0 and "'out'" in r.err, r.err
    assert not (home / "runs").exists() or not list((home / "runs").iterdir())


def test_a_detached_run_puts_its_output_in_place_without_its_driver(cli, project, folder: Path, home: Path) -> None:
    """The supervisor moves outputs into place at the run's end: the CLI that submitted a detached
    run is long gone by then."""
    root, _ = project
    target = folder / "model.pkl"
    run_id = cli("run", str(root), "-e", "gated_write", "-P", f"out={target}", "--detach", "-q").out.strip()
    assert run_id and not target.exists()
    (home / "runs" / run_id / "outputs" / "go").write_text("")
    w = cli("runs", "wait", run_id)
    assert w.code == 0, w.err
    assert target.read_text() == "late\n" and not (folder / "model.pkl.sib").exists()
    assert not (home / "runs" / run_id / "staged").exists()  # nothing left of the staging folder


def test_a_run_whose_supervisor_vanished_still_gets_its_output_in_place(cli, project, folder: Path,
                                                                        home: Path) -> None:
    root, _ = project
    target = folder / "model.pkl"
    run_id = cli("run", str(root), "-e", "gated_write", "-P", f"out={target}", "--detach", "-q").out.strip()
    rec = json.loads(cli("runs", "show", run_id).out)
    os.kill(rec["supervisor_pid"], signal.SIGKILL)
    (home / "runs" / run_id / "outputs" / "go").write_text("")
    # the command ends on its own; whoever looks at the run then finishes it for the supervisor
    waited = subprocess.run(["docker", "wait", rec["container_id"]], capture_output=True, text=True, timeout=120)
    assert waited.stdout.strip() == "0", waited.stderr
    w = cli("runs", "wait", run_id)
    assert w.code == 0, w.err
    assert target.read_text() == "late\n" and not (folder / "model.pkl.sib").exists()


def test_an_output_beside_a_local_mlflow_store_is_written_there_and_nothing_is_mounted_twice(tmp_path: Path) -> None:
    """A local MLflow store's folder is mounted read-write (tracking's own mount): an output in that
    folder is written there directly, since a second mount at the same place is refused by Docker."""
    from dockrun.backends.local.container import RunContext, container_spec, files_plan
    from dockrun.project.params import Mount, RenderedCommand

    store, other = str(tmp_path / "cwd"), str(tmp_path / "elsewhere")
    rendered = RenderedCommand("true", {}, (Mount(f"{store}/model.pkl", output=True),
                                            Mount(f"{other}/report.txt", output=True)))
    ctx = RunContext(run_id="r1", project="p", image="img", outputs=tmp_path / "run" / "outputs",
                     rendered=rendered, extra_mounts=((store, store, "rw"),))
    spec = container_spec(ctx, environ={})
    targets = [inside for _, inside, _ in spec.mounts]
    assert sorted(targets) == sorted({*targets}) and store in targets and other in targets
    assert [(s.folder, s.names) for s in files_plan(ctx, environ={}).staged] == [(other, ("report.txt",))]
