"""A remote engine (issue 14, part 4): with DOCKER_HOST=tcp://..., the run's path parameters and
DOCKRUN_OUTPUT_DIR are copied to the engine and the outputs come back.

The engine is a second dockerd started under `unshare -m` with a tmpfs over the folders holding
the test's files, so, like an engine on another machine, it cannot see them: a bind mount of one
fails with "bind source path does not exist" (test_bind_mounts_fail_there shows it does)."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import write_project
from dockrun.backends.local.transfer import unpack
from dockrun.errors import ExecutionError
from remote_engine import Engine, second_engine

RUN_PY = """
import hashlib, os, sys
data, out = sys.argv[1], sys.argv[2]
with open(data, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
size = os.path.getsize(data)
try:  # an input is read-only in effect: whatever happens to it here, the host's file stays as it was
    with open(data, "ab") as f:
        f.write(b"scribbled")
except OSError:
    pass
with open(out, "w") as f:
    f.write(digest + "\\n")
outputs = os.environ["DOCKRUN_OUTPUT_DIR"]
os.makedirs(os.path.join(outputs, "nested"), exist_ok=True)
with open(os.path.join(outputs, "nested", "summary.txt"), "w") as f:
    f.write("size=%d\\n" % size)
with open(os.path.join(outputs, "big.bin"), "wb") as f:
    f.write(bytes(range(256)) * (40 * 1024))  # 10 MB: more than a progress step
print("done", digest)
"""

MLPROJECT = """
name: remote
entry_points:
  main:
    parameters:
      data: path
      out: path
    command: "python3 run.py {data} {out}"
  clash:
    command: "rm -rf report && echo file > report"
  nosy:
    parameters:
      out: path
    command: "echo model > {out}; echo sneaky > $(dirname {out})/sibling.txt;
              ls -a $(dirname {out}) > $DOCKRUN_OUTPUT_DIR/listing.txt"
  links:
    parameters:
      out: path
    command: "mkdir {out} && echo a > {out}/a.txt && ln -s a.txt {out}/rel && ln -s /etc/passwd {out}/abs
              && ln -s /etc $DOCKRUN_OUTPUT_DIR/etc && ln -s ../../.. $DOCKRUN_OUTPUT_DIR/up"
  big:
    parameters:
      out: path
    command: "echo small > {out}; head -c 3000000 /dev/zero > $DOCKRUN_OUTPUT_DIR/big.bin"
  copy:
    parameters:
      data: path
      out: path
    command: "cat {data} > {out} && echo copied"
  touch:
    command: "ls run.py > made_by_run.txt && pwd"
  later:
    parameters:
      out: path
    command: "sleep 2; echo result > {out}"
  late:
    command: "sleep 2; echo late > $DOCKRUN_OUTPUT_DIR/late.txt"
  slow:
    command: "echo started > $DOCKRUN_OUTPUT_DIR/early.txt; echo started; sleep 120"
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, base_image: str):
    base = tmp_path_factory.getbasetemp()
    hide = ["/tmp"] if str(base).startswith("/tmp/") else ["/tmp", str(base)]
    with second_engine("dr-remote", "br-drremote", "172.31.253.1/24", base_image, hide=hide) as e:
        yield e


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj", {"MLproject": MLPROJECT, "run.py": RUN_PY})


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A 20 MB input (large enough for progress lines) and an empty folder for the output."""
    data = tmp_path / "in" / "data.bin"
    data.parent.mkdir()
    data.write_bytes(os.urandom(20 << 20))
    results = tmp_path / "results"
    results.mkdir()
    return data, results


def leftovers(engine: Engine) -> str:
    return engine.docker("ps", "-aq", "--filter", "label=dockrun.run-id").stdout.strip()


def record(cli, run_id: str, env: dict) -> dict:  # noqa: ANN001
    return json.loads(cli("runs", "show", run_id, env=env).out)


def test_a_run_with_path_parameters_runs_there_and_its_outputs_come_back(
        cli, engine: Engine, project: Path, inputs: tuple[Path, Path], home: Path) -> None:
    data, results = inputs
    before = data.read_bytes()
    env = {"DOCKER_HOST": engine.host}
    r = cli("run", str(project), "-P", f"data={data}", "-P", f"out={results / 'digest.txt'}", env=env)
    assert r.code == 0, r.err
    digest = hashlib.sha256(before).hexdigest()
    assert f"done {digest}" in r.out
    # the output path parameter and DOCKRUN_OUTPUT_DIR came back, byte for byte
    assert (results / "digest.txt").read_text() == digest + "\n"
    [run_dir] = (home / "runs").iterdir()
    assert (run_dir / "outputs" / "nested" / "summary.txt").read_text() == f"size={20 << 20}\n"
    assert (run_dir / "outputs" / "big.bin").read_bytes() == bytes(range(256)) * (40 * 1024)
    # the input stayed as it was, and large copies said how far they had got
    assert data.read_bytes() == before
    assert "copying the run's files to the engine: 20 MB, done" in r.err, r.err
    assert "back from the engine: 10 MB, done" in r.err, r.err
    assert record(cli, run_dir.name, env)["status"] == "FINISHED"
    assert leftovers(engine) == ""
    # same image keys: the image the run used is on the second engine under the same name
    assert engine.docker("image", "inspect", record(cli, run_dir.name, env)["image"]).returncode == 0


def test_bind_mounts_fail_there(cli, engine: Engine, project: Path, inputs: tuple[Path, Path], home: Path) -> None:
    """What happened before copies (and happens with DOCKRUN_REMOTE_ENGINE=0): the engine cannot
    see the files. This is also what makes the other tests mean something."""
    data, results = inputs
    env = {"DOCKER_HOST": engine.host, "DOCKRUN_REMOTE_ENGINE": "0"}
    r = cli("run", str(project), "-P", f"data={data}", "-P", f"out={results / 'digest.txt'}", "-q", env=env)
    assert r.code != 0 and "bind source path does not exist" in r.err, r.err
    assert not (results / "digest.txt").exists()
    assert leftovers(engine) == ""


def test_an_output_that_cannot_come_back_fails_the_run_saying_so(
        cli, engine: Engine, project: Path, home: Path) -> None:
    (project / "report").mkdir()  # the run replaces this folder of the --dev folder with a file
    (project / "report" / "keep.txt").write_text("mine")
    env = {"DOCKER_HOST": engine.host}
    r = cli("run", "--dev", str(project), "-e", "clash", "-q", env=env)
    assert r.code == 1, r.err
    assert "could not be copied back from the engine" in r.err, r.err
    [run_dir] = (home / "runs").iterdir()
    rec = record(cli, run_dir.name, env)
    assert rec["status"] == "FAILED" and "could not be copied back from the engine" in rec["reason"], rec
    assert (project / "report" / "keep.txt").read_text() == "mine"
    assert leftovers(engine) == ""


def test_an_output_folder_goes_there_empty_and_only_the_output_comes_back(
        cli, engine: Engine, project: Path, tmp_path: Path, home: Path) -> None:
    """Issue 20.3 on a remote engine: the output's folder is the run's own staging folder, so the
    host's files beside the output never make the trip, and what the run writes beside it stays."""
    folder = tmp_path / "home-like"
    folder.mkdir()
    (folder / "secret.txt").write_text("the user's secret\n")
    env = {"DOCKER_HOST": engine.host}
    r = cli("run", str(project), "-e", "nosy", "-P", "out=model.pkl", "-q", env=env, cwd=folder)
    assert r.code == 0, r.err
    assert (folder / "model.pkl").read_text() == "model\n"
    assert sorted(p.name for p in folder.iterdir()) == ["model.pkl", "secret.txt"]
    [run_dir] = (home / "runs").iterdir()
    assert "secret.txt" not in (run_dir / "outputs" / "listing.txt").read_text()
    assert "taken as an output" in r.err
    assert leftovers(engine) == ""


def test_links_that_lead_out_do_not_come_back(cli, engine: Engine, project: Path, tmp_path: Path,
                                             home: Path) -> None:
    out = tmp_path / "results"
    env = {"DOCKER_HOST": engine.host}
    r = cli("run", str(project), "-e", "links", "-P", f"out={out}", "-q", env=env)
    assert r.code == 0, r.err
    assert (out / "a.txt").read_text() == "a\n" and os.readlink(out / "rel") == "a.txt"
    assert not os.path.lexists(out / "abs")
    [run_dir] = (home / "runs").iterdir()
    assert not os.path.lexists(run_dir / "outputs" / "etc") and not os.path.lexists(run_dir / "outputs" / "up")
    # one line for the whole copy-back (the output's link, and two in DOCKRUN_OUTPUT_DIR)
    assert r.err.count("were not created") == 1 and "3 link(s)" in r.err, r.err
    assert leftovers(engine) == ""


def test_a_copy_back_over_the_limit_writes_nothing_and_says_so(
        cli, engine: Engine, project: Path, tmp_path: Path, home: Path) -> None:
    out = tmp_path / "small.txt"
    env = {"DOCKER_HOST": engine.host, "DOCKRUN_COPY_BACK_LIMIT": "2M"}
    r = cli("run", str(project), "-e", "big", "-P", f"out={out}", "-q", env=env)
    assert r.code == 1, r.err
    over = [line for line in r.err.splitlines() if "over the copy-back limit of 2 MiB" in line]
    assert len(over) == 1, r.err
    [run_dir] = (home / "runs").iterdir()
    rec = record(cli, run_dir.name, env)
    assert rec["status"] == "FAILED" and "copy-back limit" in rec["reason"], rec
    assert not out.exists() and list((run_dir / "outputs").iterdir()) == []
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".incoming")]
    assert leftovers(engine) == ""
    bad = cli("run", str(project), "-e", "big", "-P", f"out={out}", env={**env, "DOCKRUN_COPY_BACK_LIMIT": "lots"})
    errors = [line for line in bad.err.splitlines() if line.startswith("dockrun: error:")]
    assert bad.code == 2 and len(errors) == 1 and "DOCKRUN_COPY_BACK_LIMIT" in errors[0], bad.err
    assert len(list((home / "runs").iterdir())) == 1  # nothing recorded for the refused one


def test_a_cancelled_run_leaves_no_container_and_keeps_what_it_wrote(
        cli, engine: Engine, project: Path, home: Path) -> None:
    env = {"DOCKER_HOST": engine.host}
    run_id = cli("run", str(project), "-e", "slow", "--detach", "-q", env=env).out.strip()
    deadline = time.time() + 60
    while "started" not in cli("runs", "logs", run_id, env=env).out and time.time() < deadline:
        time.sleep(0.2)
    c = cli("runs", "cancel", run_id, env=env)
    assert c.code == 0, c.err
    assert record(cli, run_id, env)["status"] == "KILLED"
    assert (home / "runs" / run_id / "outputs" / "early.txt").read_text() == "started\n"
    assert leftovers(engine) == ""


def test_shell_through_a_docker_context_copies_in_and_back(
        cli, engine: Engine, project: Path, inputs: tuple[Path, Path], tmp_path: Path) -> None:
    """No DOCKER_HOST: docker's current context names the engine, for dockrun as for docker's CLI
    (which `dockrun shell` attaches with)."""
    data, results = inputs
    config = tmp_path / "docker-config"
    made = subprocess.run(["docker", "context", "create", "dr-remote", "--docker", f"host={engine.host}"],
                          env={**os.environ, "DOCKER_CONFIG": str(config)}, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    (config / "config.json").write_text(json.dumps({"currentContext": "dr-remote"}))
    env = {"DOCKER_HOST": "", "DOCKER_CONFIG": str(config)}
    r = cli("shell", str(project), "-P", f"data={data}", "-P", f"out={results / 'copy.bin'}", "-q", "--",
            "sh", "-c", f"cp {data} {results / 'copy.bin'} && cat /etc/hosts", env=env)
    assert r.code == 0, r.err
    assert "172.31.253." in r.out, r.out  # the second engine's bridge: the context was followed
    assert (results / "copy.bin").read_bytes() == data.read_bytes()
    assert leftovers(engine) == ""


def test_dev_copies_the_folder_in_and_what_the_run_wrote_there_back(cli, engine: Engine, project: Path) -> None:
    w = cli("run", "--dev", str(project), "-e", "touch", "-q", env={"DOCKER_HOST": engine.host})
    assert w.code == 0 and w.out.strip() == "/project", w.err
    assert (project / "made_by_run.txt").read_text() == "run.py\n"
    assert leftovers(engine) == ""


def test_over_ssh_through_the_ssh_command(cli, engine: Engine, project: Path, tmp_path: Path) -> None:
    """ssh://user@host as docker's CLI does it: `ssh ... -- host docker system dial-stdio`. The
    machine has no sshd, so `ssh` here is a stand-in that records how it was called and runs the
    same `docker system dial-stdio` against the second engine; everything after it is real."""
    import importlib.util

    from conftest import unavailable

    if importlib.util.find_spec("paramiko") is None:  # docker-py's ssh transport imports it
        unavailable("ssh:// needs paramiko (pip install paramiko)")
    bin_dir, calls = tmp_path / "bin", tmp_path / "ssh-calls.log"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec docker -H {engine.host} system dial-stdio\n')
    (bin_dir / "ssh").chmod(0o755)
    data = tmp_path / "in.txt"
    data.write_text("over ssh\n")
    env = {"DOCKER_HOST": "ssh://me@enginebox", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    r = cli("run", str(project), "-e", "copy", "-P", f"data={data}", "-P", f"out={tmp_path / 'out.txt'}", "-q",
            env=env)
    assert r.code == 0, r.err
    assert (tmp_path / "out.txt").read_text() == "over ssh\n" and r.out.strip() == "copied"
    assert "-l me -p 22 -- enginebox docker system dial-stdio" in calls.read_text()
    assert leftovers(engine) == ""


def test_a_file_the_run_did_not_write_is_not_put_back_as_it_was(
        cli, engine: Engine, project: Path, tmp_path: Path) -> None:
    """The output's whole folder goes to the engine and comes back; what the run did not touch
    there keeps the host's version, even one changed during the run (DOCKRUN_HOME could be there)."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "notes.txt").write_text("before the run\n")
    env = {"DOCKER_HOST": engine.host}
    run_id = cli("run", str(project), "-e", "later", "-P", f"out={results / 'out.txt'}", "--detach", "-q",
                 env=env).out.strip()
    (results / "notes.txt").write_text("changed on the host during the run\n")
    w = cli("runs", "wait", run_id, env=env)
    assert w.code == 0, w.err
    assert (results / "out.txt").read_text() == "result\n"
    assert (results / "notes.txt").read_text() == "changed on the host during the run\n"


def test_a_run_whose_supervisor_vanished_still_gets_its_outputs_back(
        cli, engine: Engine, project: Path, home: Path) -> None:
    env = {"DOCKER_HOST": engine.host}
    run_id = cli("run", str(project), "-e", "late", "--detach", "-q", env=env).out.strip()
    pid = record(cli, run_id, env)["supervisor_pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 30  # the command ends on its own; then whoever looks finishes the run
    while engine.docker("ps", "-q", "--filter", f"label=dockrun.run-id={run_id}").stdout.strip() \
            and time.time() < deadline:
        time.sleep(0.2)
    w = cli("runs", "wait", run_id, env=env)
    assert w.code == 0, w.err
    assert (home / "runs" / run_id / "outputs" / "late.txt").read_text() == "late\n"
    assert leftovers(engine) == ""


@pytest.mark.parametrize("name, link", [("outputs/../escaped", None), ("outputs/up/escaped", "..")])
def test_copying_back_writes_nothing_outside_the_folder(tmp_path: Path, name: str, link: str | None) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    if link:
        (root / "up").symlink_to(link)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar, pytest.raises(ExecutionError, match="unsafe path|outside"):
        unpack(tar, root)
    assert not (tmp_path / "escaped").exists()


def test_a_local_engine_mounts_and_a_remote_one_copies(tmp_path: Path) -> None:
    """The container as data: on the local socket nothing is copied; remote, dockrun's own mounts
    become copies and user volumes stay. Either way an output's folder is the run's own staging
    folder, and what comes back is in the run's plan, not in a label."""
    from dockrun.backends.local.container import RunContext, container_spec, files_plan
    from dockrun.engine.client import engine_is_remote
    from dockrun.project.params import Mount, RenderedCommand

    rendered = RenderedCommand("true", {}, (Mount("/data/in.csv", read_only=True),
                                            Mount("/data/out/model.pkl", output=True)))
    ctx = RunContext(run_id="r1", project="p", image="img", outputs=tmp_path / "out", rendered=rendered,
                     docker_args={"v": "/srv/cache:/cache"})
    local, remote = container_spec(ctx, environ={}), container_spec(dataclasses.replace(ctx, remote=True), environ={})
    stage = str(tmp_path / "staged" / "0")
    own = [("/data/in.csv", "/data/in.csv", "ro"), (stage, "/data/out", "rw"),
           (str(tmp_path / "out"), str(tmp_path / "out"), "rw")]
    assert list(local.mounts) == own + [("/srv/cache", "/cache", "rw")] and local.copies == ()
    assert list(remote.copies) == own and list(remote.mounts) == [("/srv/cache", "/cache", "rw")]
    assert not [k for k in {**local.labels, **remote.labels} if k not in ("dockrun.run-id", "dockrun.project")]
    assert files_plan(ctx, environ={}).copy_back == ()
    plan = files_plan(dataclasses.replace(ctx, remote=True), environ={})
    assert plan.copy_back == ((stage, "/data/out"), (str(tmp_path / "out"), str(tmp_path / "out")))
    assert [(s.stage, s.folder, s.names) for s in plan.staged] == [(stage, "/data/out", ("model.pkl",))]
    assert not engine_is_remote({}) and not engine_is_remote({"DOCKER_HOST": "unix:///var/run/docker.sock"})
    assert engine_is_remote({"DOCKER_HOST": "tcp://10.0.0.5:2376"}) and engine_is_remote({"DOCKER_HOST": "ssh://u@h"})
    assert not engine_is_remote({"DOCKER_HOST": "tcp://127.0.0.1:2375", "DOCKRUN_REMOTE_ENGINE": "0"})
    assert engine_is_remote({"DOCKRUN_REMOTE_ENGINE": "1"})


def test_a_link_leading_out_is_not_created_and_a_copy_over_the_limit_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    root.mkdir()

    def archive(*members: tuple[str, bytes | str]) -> tarfile.TarFile:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, body in members:
                info = tarfile.TarInfo(name)
                if isinstance(body, str):
                    info.type, info.linkname = tarfile.SYMTYPE, body
                    tar.addfile(info)
                else:
                    info.size = len(body)
                    tar.addfile(info, io.BytesIO(body))
        buf.seek(0)
        return tarfile.open(fileobj=buf)

    with archive(("outputs/a.txt", b"a"), ("outputs/in", "a.txt"), ("outputs/abs", "/etc/passwd"),
                 ("outputs/sub/up", "../../x")) as tar:
        dropped = unpack(tar, root)
    assert dropped.count == 2 and os.readlink(root / "in") == "a.txt"
    assert not os.path.lexists(root / "abs") and not os.path.lexists(root / "sub" / "up")
    with archive(("outputs/b.txt", b"b" * 600), ("outputs/c.txt", b"c" * 600)) as tar, \
            pytest.raises(ExecutionError, match="over the copy-back limit of 1000 bytes"):
        unpack(tar, root, limit=1000)
    assert sorted(os.listdir(root)) == ["a.txt", "in"]


def test_a_local_mlflow_store_is_refused_before_anything_starts(
        cli, engine: Engine, project: Path, tmp_path: Path, home: Path) -> None:
    store = tmp_path / "mlruns.db"
    r = cli("run", str(project), "-e", "late", "-q",
            env={"DOCKER_HOST": engine.host, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"})
    assert r.code == 2 and "remote Docker engine" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not store.exists() and not list((home / "runs").glob("*")) and leftovers(engine) == ""


def test_a_bad_override_is_one_line_and_exit_2(cli, project: Path, tmp_path: Path) -> None:
    r = cli("run", str(project), "-e", "slow", env={"DOCKRUN_REMOTE_ENGINE": "yes"})
    assert r.code == 2 and r.err.strip().count("\n") == 0 and "DOCKRUN_REMOTE_ENGINE" in r.err, r.err


def test_a_file_removed_after_it_was_listed_is_left_out_and_the_stream_stays_whole(tmp_path: Path) -> None:
    """A SQLite journal in an output's folder (dockrun's own store, kept open) may go between the
    walk and the copy: the tar stream leaves it out instead of failing the run or breaking."""
    from dockrun.backends.local.transfer import Progress, _tar_chunks, plan_entries

    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("kept\n")
    (folder / "runs.db-wal").write_bytes(b"w" * 5000)
    (folder / "z.txt").write_text("after it\n")
    entries = plan_entries([(str(folder), "/data", "rw")])
    (folder / "runs.db-wal").unlink()
    stream = b"".join(_tar_chunks(entries, Progress("test", lambda line: None)))
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        names = tar.getnames()
        assert tar.extractfile("data/z.txt").read() == b"after it\n"
    assert "data/keep.txt" in names and "data/runs.db-wal" not in names


def test_a_hard_link_through_links_that_lead_out_copies_nothing(tmp_path: Path) -> None:
    # A hostile engine: links that each stay inside lead out through one another (a -> ., b -> a/..),
    # and a hard link names a file of this machine through them.
    root = tmp_path / "outputs"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("host secret\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, target in (("outputs/a", "."), ("outputs/b", "a/..")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        hard = tarfile.TarInfo("outputs/stolen.txt")
        hard.type, hard.linkname = tarfile.LNKTYPE, "outputs/b/secret.txt"
        tar.addfile(hard)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        try:
            unpack(tar, root)
        except ExecutionError:
            pass
    assert not (root / "stolen.txt").exists()
