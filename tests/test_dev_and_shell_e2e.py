"""`dockrun run --dev` (the folder mounted, nothing built for the code) and `dockrun shell` (a
shell or a command in the run's image, as the run sees it), end to end against the real engine."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import REPO, write_project

pytestmark = pytest.mark.usefixtures("no_leaks")


def _project(root: Path, name: str, env: str = "") -> Path:
    return write_project(root, {
        "MLproject": f"""
            name: {name}
            {env}
            entry_points:
              main:
                parameters:
                  data: {{type: path, default: msg.txt}}
                command: "cat {{data}}; echo written > made.txt"
        """,
        "msg.txt": "first version\n",
    })


def _project_images(name: str) -> list[str]:
    r = subprocess.run(["docker", "images", "-q", "--filter", f"label=dockrun.project={name}"],
                       capture_output=True, text=True, check=True)
    return r.stdout.split()


def _show(cli, run_id: str) -> dict:
    r = cli("runs", "show", run_id)
    assert r.code == 0, r.err
    return json.loads(r.out)


def _last_run_id(cli) -> str:
    r = cli("runs", "list", "-n", "1")
    return r.out.splitlines()[1].split()[0]


@pytest.mark.parametrize("kind", ["no environment", "docker_env"])
def test_dev_edit_is_live_on_the_next_run_with_nothing_built_then_a_normal_run_bakes_the_code(
        cli, tmp_path: Path, base_image: str, kind: str) -> None:
    name = f"dev-{uuid.uuid4().hex[:8]}"
    env = f"docker_env: {{image: {base_image}}}" if kind == "docker_env" else ""
    project = _project(tmp_path / "proj", name, env)

    first = cli("run", "--dev", str(project))
    assert first.code == 0, first.err
    assert first.out == "first version\n"
    (project / "msg.txt").write_text("edited\n")
    second = cli("run", "--dev", str(project))
    assert second.code == 0, second.err
    assert second.out == "edited\n"
    assert "building" not in first.err + second.err
    assert _project_images(name) == []
    made = project / "made.txt"  # written by the run in /project: the host folder, as the caller
    assert made.read_text() == "written\n"
    assert (made.stat().st_uid, made.stat().st_gid) == (os.getuid(), os.getgid())
    rec = _show(cli, _last_run_id(cli))
    assert rec["dev"] is True
    assert rec["image"] == base_image  # the environment image ran, not a project image

    made.unlink()
    try:
        normal = cli("run", str(project))
        assert normal.code == 0, normal.err
        assert normal.out == "edited\n"
        assert "building project image" in normal.err
        assert len(_project_images(name)) == 1
    finally:  # the name is new every session (so the build is seen): keep the engine tidy
        subprocess.run(["docker", "rmi", "-f", *_project_images(name)], capture_output=True)
    assert not made.exists()  # the normal run wrote into its image's copy, not the folder
    rec = _show(cli, _last_run_id(cli))
    assert rec["dev"] is False
    assert rec["image"].startswith(f"dockrun-{name}:")


def test_dev_through_the_api_records_a_dev_run(home: Path, tmp_path: Path, base_image: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import dockrun

    monkeypatch.setenv("DOCKRUN_BASE_IMAGE", base_image)
    project = _project(tmp_path / "proj", f"dev-{uuid.uuid4().hex[:8]}")
    out = io.BytesIO()
    run = dockrun.execute(str(project), dev=True, stdout=out, stderr=io.BytesIO())
    assert out.getvalue() == b"first version\n"
    assert run.record().dev is True


@pytest.mark.parametrize("uri, extra", [
    ("https://example.invalid/team/proj.git", []),
    ("git@example.invalid:team/proj.git", []),
    ("{tmp}/proj.tar.gz", []),
    ("{project}", ["-b", "databricks"]),
])
def test_dev_refuses_what_it_cannot_mount_with_one_line_naming_dev(cli, home: Path, tmp_path: Path, uri: str,
                                                                   extra: list[str]) -> None:
    project = _project(tmp_path / "proj", "devrefused")
    uri = uri.format(tmp=tmp_path, project=project)
    r = cli("run", "--dev", *extra, uri)
    assert r.code == 2, r.err
    assert r.err.count("\n") == 1 and r.err.startswith("dockrun: error: --dev")
    assert "example.invalid" not in r.err  # a URI can carry credentials: not quoted back
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


def test_dev_refuses_an_environment_that_installs_the_project_itself(cli, tmp_path: Path) -> None:
    project = _project(tmp_path / "proj", "devlocal")
    (project / "requirements.txt").write_text("-e .\n")
    (project / "setup.py").write_text("from setuptools import setup\nsetup(name='x')\n")
    r = cli("run", "--dev", str(project))
    assert r.code == 2, r.err
    assert r.err.startswith("dockrun: error: --dev:") and "-e ." in r.err


def _shells_left(home: Path) -> list[Path]:
    return list((home / "shells").iterdir()) if (home / "shells").exists() else []


def test_shell_command_sees_what_a_run_sees_and_passes_its_exit_code(cli, home: Path, tmp_path: Path) -> None:
    project = _project(tmp_path / "proj", "shellp")
    data = tmp_path / "elsewhere" / "input.txt"
    data.parent.mkdir()
    data.write_text("mounted input\n")
    script = ('cat "$1"; cat msg.txt; echo "id=$DOCKRUN_RUN_ID"; echo "cmd=$DOCKRUN_COMMAND"; pwd; id -u; '
              'echo to-stderr >&2; exit 4')
    r = cli("shell", str(project), "-P", f"data={data}", "--", "sh", "-c", script, "sh", str(data))
    assert r.code == 4, r.err
    lines = r.out.splitlines()
    assert lines[0] == "mounted input"  # a -P path is mounted at its own path
    assert lines[1] == "first version"  # the code baked into the project image
    assert re.fullmatch(r"id=[0-9a-f]{16}", lines[2])
    assert lines[3] == f"cmd=cat {data}; echo written > made.txt"
    assert lines[4:6] == ["/project", str(os.getuid())]
    assert "to-stderr" in r.err and "to-stderr" not in r.out
    assert _shells_left(home) == []
    assert cli("runs", "list").out.splitlines()[1:] == []  # a shell is not a run


def test_shell_dev_writes_to_the_folder_and_keeps_only_written_outputs(cli, home: Path, tmp_path: Path) -> None:
    project = _project(tmp_path / "proj", "shellp")
    r = cli("shell", "--dev", str(project), "--", "sh", "-c",
            'echo from-shell > note.txt; echo kept > "$DOCKRUN_OUTPUT_DIR/result.txt"')
    assert r.code == 0, r.err
    assert (project / "note.txt").read_text() == "from-shell\n"
    assert (project / "note.txt").stat().st_uid == os.getuid()
    kept = _shells_left(home)
    assert len(kept) == 1 and (kept[0] / "outputs" / "result.txt").read_text() == "kept\n"
    assert str(kept[0] / "outputs") in r.err


def test_shell_on_a_terminal_is_interactive_and_exits_with_the_shells_code(home: Path, tmp_path: Path,
                                                                           base_image: str) -> None:
    project = _project(tmp_path / "proj", "shellp")
    env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image, "TERM": "dumb"}
    # Built first, so the pty sees only the shell.
    subprocess.run([sys.executable, "-m", "dockrun.cli", "build", "-q", str(project)], env=env, cwd=REPO,
                   check=True, capture_output=True)
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "dockrun.cli", "shell", str(project)], env=env, cwd=REPO,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    os.write(master, b"echo hi-from-$((6*7)); exit 3\n")
    out = b""
    deadline = time.monotonic() + 120  # a guard against hanging, not a timed assertion
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer of the pty is gone
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=60)
    assert b"hi-from-42" in out, out  # the arithmetic shows the shell ran it (the echo of input would not)
    assert code == 3, out
    assert _shells_left(home) == []


def test_the_dev_container_mounts_the_folder_at_the_project_root_as_the_caller(tmp_path: Path) -> None:
    from dockrun.backends.local.container import RunContext, container_spec
    from dockrun.project.params import RenderedCommand

    ctx = RunContext(run_id="r1", project="p", image="img", outputs=tmp_path / "out",
                     rendered=RenderedCommand("true", {}, ()))
    baked = container_spec(ctx, environ={})
    dev = container_spec(dataclasses.replace(ctx, dev_root=tmp_path / "proj"), environ={})
    assert [m for m in dev.mounts if m not in baked.mounts] == [(str(tmp_path / "proj"), "/project", "rw")]
    assert dev.working_dir == "/project" and dev.user == f"{os.getuid()}:{os.getgid()}"
    assert dev.environment["PYTHONUNBUFFERED"] == "1"


def test_what_dev_runs_and_shells_write_belongs_to_the_calling_user(as_user) -> None:
    """As an unprivileged caller (uid 4321 when the tests run as root): `run --dev` and `shell --dev`
    write into the caller's folder as the caller, and the shell runs as the caller."""
    shared = as_user.folder()
    project = _project(shared / "proj", f"devown-{uuid.uuid4().hex[:8]}")
    r = as_user.run(shared, "run", "--dev", "proj")
    assert r.code == 0 and r.out == "first version\n", r.err
    made = project / "made.txt"
    assert made.read_text() == "written\n" and (made.stat().st_uid, made.stat().st_gid) == (as_user.uid, as_user.gid)
    s = as_user.run(shared, "shell", "--dev", "proj", "--", "sh", "-c", "echo from-shell > note.txt; id -u")
    assert s.code == 0 and s.out.strip() == str(as_user.uid), s.err
    assert (project / "note.txt").stat().st_uid == as_user.uid
