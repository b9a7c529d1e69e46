"""Warm start: `dockrun run` handed to a per-user helper's worker behaves exactly as the command run
in-process (output, exit codes, errors, environment, working directory, Ctrl-C, being killed), and
the helper only serves its own user, its own code and a command that is still there."""
from __future__ import annotations

import json
import marshal
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, dockrun_containers, unavailable
from dockrun.store.records import RunStore
from dockrun.warmstart import client


@pytest.fixture
def runtime(tmp_path: Path):
    """A runtime folder of the test's own (its own helper), and that helper stopped at the end."""
    folder = tmp_path / "xdg"
    folder.mkdir(mode=0o700)
    yield folder
    for lock in (folder / "dockrun").glob("*.lock"):
        try:
            os.kill(int(lock.read_text().strip() or 0), signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pass


@pytest.fixture
def env(runtime: Path, home: Path, base_image: str) -> dict[str, str]:
    return {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "DOCKRUN_HOME": str(home),
            "DOCKRUN_BASE_IMAGE": base_image, "DOCKRUN_WARMSTART_IDLE_S": "60"}


@pytest.fixture
def project(tmp_path: Path, base_image: str) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "MLproject").write_text(
        f"name: warm\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        "    parameters:\n      code: {type: int, default: 0}\n      sleep: {type: float, default: 0}\n"
        "      data: {type: path, default: data.txt}\n"
        "    command: \"sleep {sleep}; cat {data}; echo to-stderr >&2; "
        "echo home=$DOCKRUN_OUTPUT_DIR; exit {code}\"\n")
    (root / "data.txt").write_text("the data\n")
    return root


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str
    pid: int  # the command's own process


def dockrun(args: list[str], env: dict[str, str], cwd: Path, umask: int | None = None) -> Done:
    proc = subprocess.Popen([sys.executable, "-m", "dockrun", *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, umask=-1 if umask is None else umask)
    out, err = proc.communicate(timeout=300)
    return Done(proc.returncode, out, err, proc.pid)


def helper_pid(runtime: Path, timeout: float = 30) -> int:
    """The helper's pid once it listens (the first command starts it in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        socks = list((runtime / "dockrun").glob("*.sock"))
        locks = list((runtime / "dockrun").glob("*.lock"))
        if socks and locks and locks[0].read_text().strip():
            return int(locks[0].read_text())
        time.sleep(0.05)
    raise AssertionError(f"no helper started in {runtime}")


def served(home: Path, done: Done) -> bool:
    """Whether the command's last run was driven by a helper's worker, not by the command itself."""
    rec = RunStore(home).list(1)[0]
    return rec.driver_pid is not None and rec.driver_pid != done.pid


def last_run(home: Path) -> str:
    return RunStore(home).list(1)[0].run_id


def test_a_served_run_behaves_as_the_command_in_process(env, runtime, home, project, no_leaks) -> None:
    first = dockrun(["run", "."], env, project)  # no helper yet: in-process, and one is started
    assert first.returncode == 0 and "the data" in first.stdout and not served(home, first)
    helper_pid(runtime)
    results = {}
    for mode, extra in (("warm", {}), ("in-process", {"DOCKRUN_WARMSTART": "0"})):
        for case, params in (("ok", []), ("fails", ["-P", "code=3"]), ("bad input", ["-P", "code=x"])):
            results[mode, case] = r = dockrun(["run", ".", *params], {**env, **extra}, project)
            if case == "ok":
                assert served(home, r) == (mode == "warm"), (mode, r.stderr)
    for case in ("ok", "fails", "bad input"):
        warm, cold = results["warm", case], results["in-process", case]
        # The same exit code and the same lines (run IDs and output folders differ).
        assert warm.returncode == cold.returncode, (case, warm.stderr, cold.stderr)
        assert _shape(warm.stdout) == _shape(cold.stdout) and _shape(warm.stderr) == _shape(cold.stderr), case
    assert results["warm", "ok"].returncode == 0 and "the data\n" in results["warm", "ok"].stdout
    assert "to-stderr" in results["warm", "ok"].stderr
    assert results["warm", "fails"].returncode == 1 and "exited with status 3" in results["warm", "fails"].stderr
    bad = results["warm", "bad input"]
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "code" in bad.stderr
    assert "Traceback" not in bad.stderr


def _shape(text: str) -> list[str]:
    import re

    return [re.sub(r"[0-9a-f]{16}", "ID", line) for line in text.splitlines()]


def test_the_worker_has_the_commands_directory_environment_and_umask(env, runtime, home, project, tmp_path,
                                                                       no_leaks) -> None:
    dockrun(["run", "."], env, project)
    helper_pid(runtime)
    other_home = tmp_path / "other-home"
    (project / "sub").mkdir()
    (project / "sub" / "rel.txt").write_text("relative to the command's directory\n")
    r = dockrun(["run", "..", "-P", "data=rel.txt"], {**env, "DOCKRUN_HOME": str(other_home)}, project / "sub")
    assert r.returncode == 0, r.stderr
    assert "relative to the command's directory" in r.stdout
    run_id = last_run(other_home)  # the run went to the command's DOCKRUN_HOME, not the helper's
    assert served(other_home, r) and f"home={other_home}/runs/{run_id}/outputs" in r.stdout
    assert not (home / "runs" / run_id).exists()
    # umask: the run's folders are made with the command's
    for umask, group_bits in ((0o077, 0), (0o002, 0o070)):
        r = dockrun(["run", "."], env, project, umask=umask)
        assert r.returncode == 0 and served(home, r), r.stderr
        assert (home / "runs" / last_run(home) / "outputs").stat().st_mode & 0o070 == group_bits


def test_ctrl_c_cancels_a_served_run_and_killing_the_command_stops_it(env, runtime, home, project) -> None:
    dockrun(["run", "."], env, project)
    helper_pid(runtime)
    for sig in (signal.SIGINT, signal.SIGKILL):
        before = {r.run_id for r in RunStore(home).list(100)}
        proc = subprocess.Popen([sys.executable, "-m", "dockrun", "run", ".", "-P", "sleep=60"], env=env,
                                cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_ctrl_c_as_in_a_shell)
        run_id = _wait_running(home, before)
        proc.send_signal(sig)
        if sig == signal.SIGKILL:  # the command is gone at once; its pipes may outlive it for a moment
            proc.wait(timeout=60)
            out, err = "", ""
            proc.stdout.close()
            proc.stderr.close()
        else:
            out, err = proc.communicate(timeout=60)
        rec = _wait_over(home, run_id, timeout=120)
        if sig == signal.SIGINT:  # as in-process: cancelled, exit 130, one line
            assert proc.returncode == 130 and "cancelled" in err and rec.status == "KILLED", (err, rec)
        else:  # as if the command itself were killed: its supervisor stops the run
            assert rec.status == "FAILED" and "driver" in (rec.reason or ""), rec
        assert dockrun_containers(run_id) == []


def _ctrl_c_as_in_a_shell() -> None:
    """SIGINT as a foreground shell has it, whatever the test runner inherited: a CI script's
    background job ignores it, and an ignored Ctrl-C stays ignored, served or not (a test's run
    would then last its whole sleep)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_running(home: Path, before: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [r for r in RunStore(home).list(100) if r.run_id not in before and r.status == "RUNNING"]
        if fresh:
            return fresh[0].run_id
        time.sleep(0.05)
    raise AssertionError("the run never started")


def _wait_over(home: Path, run_id: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = RunStore(home).get(run_id)
        if rec.over:
            return rec
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} is not over")


# --- the helper's rules, spoken to directly ------------------------------------------------------

def _connect(runtime: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(next((runtime / "dockrun").glob("*.sock"))))
    return sock


def _request(sock: socket.socket, env: dict[str, str], cwd: Path, argv: list[str], ident: str) -> None:
    streams = [("utf-8", "strict", False, False)] * 3
    body = marshal.dumps({"identity": ident, "argv": argv, "env": env, "fds": [], "streams": streams})
    sock.sendmsg([struct.pack("!I", len(body)) + body],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("3i", 0, 1, 2))])


def _helper_identity(env: dict[str, str], cwd: Path) -> str:
    """The identity a command started with ``env`` in ``cwd`` presents (what `python -m dockrun`
    computes there: from a checkout's folder, `-c` would import the checkout's dockrun)."""
    code = "from dockrun.warmstart import client; print(client.identity(client.search_path()))"
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_command_that_hangs_up_before_go_never_runs(env, runtime, home, project) -> None:
    dockrun(["run", "."], env, project)
    helper_pid(runtime)
    count = len(RunStore(home).list(100))
    sock = _connect(runtime)
    _request(sock, env, project, ["run", "."], _helper_identity(env, project))
    line = sock.recv(64)
    assert line.startswith(b"pid ")
    worker = int(line.split()[1])
    sock.close()  # gone before "go"
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and _state(worker) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{worker}").exists() or _state(worker) == "Z"
    assert len(RunStore(home).list(100)) == count  # nothing was run or recorded


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_other_code_is_refused_and_the_helper_makes_way(env, runtime, project) -> None:
    dockrun(["run", "."], env, project)
    helper = helper_pid(runtime)
    sock = _connect(runtime)
    _request(sock, env, project, ["run", "."], "another dockrun")
    assert sock.recv(64) == b"stale other code\n"
    deadline = time.monotonic() + 10
    while _state(helper) not in ("gone", "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(helper) in ("gone", "Z")
    assert not list((runtime / "dockrun").glob("*.sock"))  # its socket went with it


def test_another_user_is_refused(env, project) -> None:
    import shutil
    import tempfile

    if os.getuid() != 0:
        unavailable("acting as another user needs root")

    # A runtime folder the other user can reach at all (pytest's own tmp folders are private).
    runtime = Path(tempfile.mkdtemp(prefix="dockrun-warm-", dir="/tmp"))
    try:
        env = {**env, "XDG_RUNTIME_DIR": str(runtime)}
        dockrun(["run", "."], env, project)
        helper = helper_pid(runtime)
        path = next((runtime / "dockrun").glob("*.sock"))
        os.chmod(runtime, 0o755)
        os.chmod(runtime / "dockrun", 0o755)
        os.chmod(path, 0o777)
        ident = _helper_identity(env, project)
        pid = os.fork()
        if pid == 0:  # as nobody: connect, send a request, and report what came back
            code = 9
            try:
                os.setgid(65534)
                os.setuid(65534)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(10)
                sock.connect(str(path))
                code = 0  # from here, a closed connection (EOF, EPIPE, reset) is the refusal
                _request(sock, env, project, ["run", "."], ident)
                code = 0 if sock.recv(64) == b"" else 3  # b"pid N": served
            except (BrokenPipeError, ConnectionResetError):
                pass
            except BaseException:  # noqa: BLE001
                pass
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0  # hung up on, no worker
    finally:
        try:
            os.kill(helper, signal.SIGTERM)
        except (ProcessLookupError, UnboundLocalError):
            pass
        shutil.rmtree(runtime, ignore_errors=True)


def test_no_helper_in_a_folder_others_can_enter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    (shared / "dockrun").mkdir(parents=True)
    os.chmod(shared / "dockrun", 0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    assert client.runtime_dir() is None
    os.chmod(shared / "dockrun", 0o700)
    assert client.runtime_dir() == str(shared / "dockrun")
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (shared / "dockrun").rmdir()
    (shared / "dockrun").symlink_to(tmp_path / "elsewhere")
    assert client.runtime_dir() is None


def test_an_edit_to_dockrun_is_a_new_identity(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "sub" / "a.py").write_text("x = 1\n")
    (pkg / "b.j2").write_text("t\n")
    before = client._newest(str(pkg), 0, 0)
    os.utime(pkg / "sub" / "a.py", ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    after = client._newest(str(pkg), 0, 0)
    assert after[1] == before[1] == 2 and after[0] > before[0]
    (pkg / "c.py").write_text("y = 2\n")
    assert client._newest(str(pkg), 0, 0)[1] == 3


def test_warm_start_is_only_for_run_and_can_be_turned_off(env, runtime, project) -> None:
    r = dockrun(["runs", "list"], env, project)
    assert r.returncode == 0 and not (runtime / "dockrun").exists()  # no helper for other commands
    r = dockrun(["run", "."], {**env, "DOCKRUN_WARMSTART": "0"}, project)
    assert r.returncode == 0 and not list((runtime / "dockrun").glob("*.sock"))


def test_the_worker_takes_on_the_commands_resource_limits(env, runtime, home, project) -> None:
    dockrun(["run", "."], env, project)
    helper_pid(runtime)
    before = {r.run_id for r in RunStore(home).list(100)}
    proc = subprocess.Popen(["sh", "-c", f"ulimit -n 321; exec {sys.executable} -m dockrun run . -P sleep=30"],
                            env=env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_as_in_a_shell)
    try:
        run_id = _wait_running(home, before)
        driver = RunStore(home).get(run_id).driver_pid
        assert driver != proc.pid  # served by a worker
        limits = Path(f"/proc/{driver}/limits").read_text()
        assert any(line.startswith("Max open files") and line.split()[3:5] == ["321", "321"]
                   for line in limits.splitlines()), limits
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_other_groups_or_another_cgroup_are_another_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    path = client.search_path()
    mine = client.identity(path)
    facts = client.shared_facts()
    for key, value in (("Groups", facts["Groups"] + " 4242"),  # as after `usermod -aG docker`
                       ("cgroup", "0::/system.slice/ci-job-2.scope\n"),  # another CI job: its limits
                       ("NoNewPrivs", "1"), ("CapBnd", "0000000000000000"), ("ns/net", "net:[1]")):
        monkeypatch.setattr(client, "shared_facts", lambda proc="/proc/self", k=key, v=value: {**facts, k: v})
        assert client.identity(path) != mine, key
        monkeypatch.undo()
    assert client.identity(path) == mine


def test_an_installed_upgraded_or_removed_distribution_is_a_new_identity(tmp_path: Path) -> None:
    """pip adds and removes entries of the module folder (the package and its .dist-info) for an
    install, upgrade or removal, so a helper with the old jinja2, PyYAML, click or docker
    imported is never asked to serve a command that would import the new one."""
    site = tmp_path / "site-packages"
    (site / "jinja2").mkdir(parents=True)
    (site / "jinja2-3.1.4.dist-info").mkdir()
    path = [*client.search_path(), str(site)]
    before = client.identity(path)
    os.utime(site, ns=(time.time_ns() - 10**9,) * 2)  # as if installed a second ago
    assert client.identity(path) != before
    before = client.identity(path)
    (site / "jinja2-3.1.4.dist-info").rename(site / "jinja2-3.1.5.dist-info")  # an upgrade
    assert client.identity(path) != before


def test_the_helper_keeps_no_commands_environment(env, runtime, home, project) -> None:
    """The command that starts the helper has a token in its environment: the helper does not
    (it starts with the interpreter's own variables only), and the next command's worker has the
    next command's environment, not the first one's."""
    first = dockrun(["run", "."], {**env, "FIRST_TOKEN": "s3cr3t-first"}, project)
    assert first.returncode == 0, first.stderr
    helper = helper_pid(runtime)
    environ = Path(f"/proc/{helper}/environ").read_bytes()
    assert b"s3cr3t-first" not in environ and b"FIRST_TOKEN" not in environ
    names = {entry.split(b"=", 1)[0] for entry in environ.split(b"\0") if entry}
    assert all(n.startswith((b"PYTHON", b"LC_", b"LANG")) for n in names), names  # the interpreter's only
    before = {r.run_id for r in RunStore(home).list(100)}
    proc = subprocess.Popen([sys.executable, "-m", "dockrun", "run", ".", "-P", "sleep=30"],
                            env={**env, "SECOND_TOKEN": "second"}, cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_as_in_a_shell)
    try:
        run_id = _wait_running(home, before)
        driver = RunStore(home).get(run_id).driver_pid
        assert driver != proc.pid  # served
        assert b"s3cr3t-first" not in Path(f"/proc/{driver}/environ").read_bytes()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_contexts_that_come_and_go_do_not_pile_up_helpers(env, runtime, project) -> None:
    """`unshare -n dockrun run` is a new network namespace every time, so a new context: each run
    is in-process and may start a helper for it, but no more than MAX_HELPERS of one dockrun."""
    if shutil.which("unshare") is None or os.getuid() != 0:
        unavailable("a new network namespace per command needs root and unshare")
    for i in range(client.MAX_HELPERS + 2):
        r = subprocess.run(["unshare", "-n", sys.executable, "-m", "dockrun", "run", "."], env=env, cwd=project,
                           capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr
        _wait_helpers(runtime, min(i + 1, client.MAX_HELPERS))
    assert client._live_helpers(str(runtime / "dockrun"), _code_prefix(runtime)) == client.MAX_HELPERS


def _code_prefix(runtime: Path) -> str:
    return next((runtime / "dockrun").glob("*.sock")).name.split("-")[0]


def _wait_helpers(runtime: Path, count: int, timeout: float = 30) -> None:
    """Until ``count`` helpers hold their lock and listen (the last run's has started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        locks = [p for p in (runtime / "dockrun").glob("*.lock") if p.read_text().strip()]
        if len(locks) >= count and all(Path(str(p)[:-5]).exists() for p in locks):
            return
        time.sleep(0.05)


def test_the_helpers_path_leaves_out_the_working_folder_however_it_got_there(tmp_path: Path) -> None:
    # An empty PYTHONPATH entry (`PYTHONPATH=$PYTHONPATH:/x` with it unset) puts the working folder
    # on sys.path as an absolute path: a helper started from there must not keep it for later commands.
    work = tmp_path / "work"
    work.mkdir()
    code = ("import json, os, sys; from dockrun.warmstart import client; "
            "print(json.dumps([sys.path, client.search_path()]))")
    env = {**os.environ, "PYTHONPATH": f"{REPO}:"}
    seen, kept = json.loads(subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True,
                                           text=True, check=True).stdout)
    assert str(work) in seen  # Python did put it there
    assert str(work) not in kept and "" not in kept


def test_a_command_whose_working_folder_is_gone_fails_as_in_process(env, runtime, home, project, tmp_path) -> None:
    """A working folder removed under the command (a shell still in a folder another job cleaned up):
    whatever the command says about it, a helper being up changes nothing (the client itself must not
    fail on its way to the helper)."""
    dockrun(["run", "."], env, project)
    helper_pid(runtime)
    seen = {}
    for mode in ("1", "0"):
        line = f"mkdir gone && cd gone && rmdir ../gone && exec {sys.executable} -m dockrun run {project}"
        r = subprocess.run(["sh", "-c", line], env={**env, "DOCKRUN_WARMSTART": mode}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        seen[mode] = (r.returncode, _shape(r.stdout), _shape(r.stderr))
    assert seen["1"] == seen["0"]


def test_a_worker_killed_after_its_helper_made_way_ends_its_command_as_in_process(env, runtime, home,
                                                                                  project) -> None:
    """A helper started by a niced command (a batch job) serves the next niced one; then a command
    at normal priority comes, which that helper cannot be (no CAP_SYS_NICE): it makes way for a new
    helper. The batch job's worker then killed (as the OOM killer picks the biggest process): the
    command ends killed by that signal and its run is stopped, as when the command itself is killed
    in-process. The old helper stays for that: it reaps the worker and tells the command."""
    if shutil.which("setpriv") is None or shutil.which("nice") is None:
        unavailable("the test needs setpriv and nice")
    # Every command without CAP_SYS_NICE (as any user's): the same bounding set, so the same helper.
    plain = ["setpriv", "--bounding-set", "-sys_nice", sys.executable, "-m", "dockrun", "run", "."]
    niced = ["nice", "-n", "5", *plain]

    def go(argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(argv, env=env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                **kw)

    first = go(niced)
    assert first.wait(timeout=300) == 0, first.communicate()
    helper = helper_pid(runtime)
    before = {r.run_id for r in RunStore(home).list(100)}
    batch = go([*niced, "-P", "sleep=600"])
    try:
        run_id = _wait_running(home, before)
        assert RunStore(home).get(run_id).driver_pid != batch.pid  # served by the niced helper
        later = go(plain)
        assert later.wait(timeout=300) == 0, later.communicate()
        deadline = time.monotonic() + 30  # a new helper, for the command at normal priority
        while helper_pid(runtime) == helper and time.monotonic() < deadline:
            time.sleep(0.05)
        assert helper_pid(runtime) != helper
        os.kill(RunStore(home).get(run_id).driver_pid, signal.SIGKILL)
        assert batch.wait(timeout=60) == -signal.SIGKILL, batch.stderr.read()
        rec = _wait_over(home, run_id, timeout=60)
        assert rec.status == "FAILED" and "driver" in (rec.reason or ""), rec
        assert dockrun_containers(run_id) == []
    finally:
        _kill(batch)
        driver = RunStore(home).get(run_id).driver_pid if "run_id" in locals() else None
        if driver and not RunStore(home).get(run_id).over:  # the worker left running (before the fix)
            os.kill(driver, signal.SIGTERM)
            _wait_over(home, run_id, timeout=120)


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the command and wait for it alone: a worker may hold its pipes for longer."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=60)
    for pipe in (proc.stdout, proc.stderr):
        pipe.close()


def test_a_command_killed_after_its_helper_was_stopped_still_stops_its_run(env, runtime, home, project) -> None:
    """The helper stopped (`kill` of its pid, as a user stopping it would) while a served run goes
    on: killing the command afterwards still stops that run, as it would in-process."""
    dockrun(["run", "."], env, project)
    helper = helper_pid(runtime)
    before = {r.run_id for r in RunStore(home).list(100)}
    proc = subprocess.Popen([sys.executable, "-m", "dockrun", "run", ".", "-P", "sleep=600"], env=env, cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_id = None
    try:
        run_id = _wait_running(home, before)
        assert RunStore(home).get(run_id).driver_pid != proc.pid  # served
        os.kill(helper, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _state(helper) not in ("gone", "Z") and time.monotonic() < deadline:
            time.sleep(0.05)
        _kill(proc)
        rec = _wait_over(home, run_id, timeout=60)
        assert rec.status == "FAILED" and "driver" in (rec.reason or ""), rec
        assert dockrun_containers(run_id) == []
    finally:
        _kill(proc)
        if run_id and not RunStore(home).get(run_id).over:  # the worker left running (before the fix)
            os.kill(RunStore(home).get(run_id).driver_pid, signal.SIGTERM)
            _wait_over(home, run_id, timeout=120)


def test_debug_says_why_a_run_was_not_served_without_a_traceback(env, runtime, project) -> None:
    debug = {**env, "DOCKRUN_WARMSTART_DEBUG": "1"}
    closed = subprocess.run(["sh", "-c", f'exec "{sys.executable}" -m dockrun run . <&-'], env=debug,
                            cwd=project, capture_output=True, text=True, timeout=300)
    assert closed.returncode == 0, closed.stderr
    assert "in-process (a standard stream is closed)" in closed.stderr and "Traceback" not in closed.stderr
    off = dockrun(["run", "."], {**debug, "DOCKRUN_WARMSTART": "0"}, project)
    assert off.returncode == 0 and "warm start: in-process (DOCKRUN_WARMSTART=0)" in off.stderr
