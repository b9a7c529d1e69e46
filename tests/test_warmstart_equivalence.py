"""Warm start equivalence: under each condition a caller can put `dockrun run` in (a time zone, a
locale, nice, one CPU, limits, a memory limit, no-new-privs, fewer capabilities, other groups,
another network namespace, SIGINT ignored, an extra descriptor, a controlling terminal), the command run
in-process (DOCKRUN_WARMSTART=0) and served by a helper give the same exit code, stdout, stderr,
run record and container, and the process that drives the run (the command itself, or the worker)
has the same kernel state: identity, confinement, namespaces, priority, affinity, limits,
signals, descriptors, terminal. A condition a worker cannot take on is not served, and the suite
shows whether each one was (the run's driver is or is not the command's own process).

Then the helper's refusals, met as an attacker would: a process of the same user but with other
groups, another network namespace, no-new-privs, fewer capabilities or a terminal speaks the
protocol to the helper of an unconfined command, claiming its identity; the helper answers
"refused" and names the fact (a reply, not a timeout). And the client never sends anything to a
socket another user listens on."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import unavailable
from dockrun.store.records import RunStore
from dockrun.warmstart import client

TOOLS = ("setpriv", "unshare", "nice", "taskset", "ionice", "sh")


@pytest.fixture(autouse=True)
def root_and_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        unavailable(f"the equivalence suite needs {', '.join(missing)}")
    if os.getuid() != 0:
        unavailable("the equivalence suite needs root (unshare -n, setpriv --groups)")


@pytest.fixture
def runtime(tmp_path: Path):
    """A runtime folder of the test's own (its own helpers), and those helpers stopped at the end."""
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
    return {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image,
            "DOCKRUN_WARMSTART_IDLE_S": "120", "DOCKRUN_WARMSTART_DEBUG": "1"}


@pytest.fixture
def project(tmp_path: Path, base_image: str) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    # With wait=1 the container waits for the test to look at it (and at its driver) first.
    (root / "MLproject").write_text(
        f"name: equiv\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        "    parameters:\n      code: {type: int, default: 0}\n      wait: {type: int, default: 0}\n"
        "      data: {type: path, default: data.txt}\n"
        "    command: \"if [ {wait} = 1 ]; then while [ ! -e $DOCKRUN_OUTPUT_DIR/go ]; do sleep 0.05; done; fi; "
        "cat {data}; printf 'caf\\\\303\\\\251\\\\n'; echo to-stderr >&2; exit {code}\"\n")
    (root / "data.txt").write_text("the data\n")
    (root / "fd5.txt").write_text("read through descriptor 5\n")
    return root


@dataclass(frozen=True)
class Condition:
    name: str
    prefix: tuple[str, ...] = ()  # a wrapper: nice, taskset, setpriv, unshare
    env: dict[str, str] = field(default_factory=dict)
    shell: str = ""  # run through `sh -c "SHELL; exec dockrun ..."` (ulimit, exec 5<file)
    umask: int = -1
    params: tuple[str, ...] = ()
    ignore: tuple[int, ...] = ()  # signals the command starts with ignored
    send: int | None = None  # sent to the command while its run waits
    cancels: bool = False  # ... and that cancels the run
    terminal: bool = False
    served: bool = True  # whether a helper serves it (after one run that starts its helper)
    fresh: tuple[str, ...] = ()  # facts new for every command (a namespace unshare makes)


CONDITIONS = [
    Condition("plain"),
    Condition("time zone", env={"TZ": "Asia/Tokyo"}),
    Condition("C locale and latin-1 stdio", env={"LC_ALL": "C", "PYTHONIOENCODING": "latin-1"}),
    Condition("nice 10", prefix=("nice", "-n", "10")),
    Condition("one CPU", prefix=("taskset", "-c", "0")),
    Condition("idle I/O priority", prefix=("ionice", "-c", "3")),
    Condition("fewer open files", shell="ulimit -n 512"),
    # A worker's memory is the helper's plus the command's: under a memory limit it is not served.
    Condition("a memory limit", shell="ulimit -v 4000000", served=False),
    Condition("umask 077", umask=0o077),
    # A sandbox's Landlock rules and seccomp filters are not in /proc: never served (test_warm_sandbox.py).
    Condition("no new privileges", prefix=("setpriv", "--no-new-privs"), served=False),
    Condition("fewer capabilities", prefix=("setpriv", "--bounding-set", "-net_admin,-sys_admin")),
    Condition("other groups", prefix=("setpriv", "--groups", "4242")),
    Condition("no groups", prefix=("setpriv", "--clear-groups")),
    Condition("own network namespace", prefix=("unshare", "-n"), served=False, fresh=("ns/net",)),  # new each time
    Condition("SIGINT ignored (a script's background job), then sent", ignore=(signal.SIGINT,), send=signal.SIGINT),
    Condition("SIGTERM ignored, then sent (the CLI handles it anyway)", ignore=(signal.SIGTERM,), send=signal.SIGTERM,
              cancels=True),
    Condition("descriptor 5", shell="exec 5<fd5.txt"),
    Condition("controlling terminal", terminal=True, served=False),
]


@dataclass
class Seen:
    returncode: int
    stdout: bytes
    stderr: bytes
    record: dict
    container: dict
    driver: dict
    served: bool


def _argv(cond: Condition, params: list[str]) -> list[str]:
    dockrun = [sys.executable, "-m", "dockrun", "run", ".", *params]
    if cond.shell:
        dockrun = ["sh", "-c", f"{cond.shell}; exec \"$@\"", "sh", *dockrun]
    return [*cond.prefix, *dockrun]


def _preexec(cond: Condition):
    slave = None
    if cond.terminal:
        master, slave_fd = os.openpty()
        slave = os.ttyname(slave_fd)
        os.close(slave_fd)

    def child() -> None:
        # From the dispositions of a foreground shell, whatever the test runner inherited (a CI
        # script's background job ignores SIGINT): then the condition's own.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for sig in cond.ignore:
            signal.signal(sig, signal.SIG_IGN)
        if slave is not None:  # a session leader opening a terminal makes it its controlling one
            os.setsid()
            os.close(os.open(slave, os.O_RDWR))

    return child


def observe(cond: Condition, env: dict[str, str], project: Path, home: Path, warm: bool) -> Seen:
    params = [p for kv in (*cond.params, "wait=1") for p in ("-P", kv)]
    before = {r.run_id for r in RunStore(home).list(1000)}
    run_env = {**env, **cond.env, "DOCKRUN_WARMSTART": "1" if warm else "0"}
    proc = subprocess.Popen(_argv(cond, params), env=run_env, cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, umask=cond.umask, preexec_fn=_preexec(cond))
    try:
        rec = _wait_running(home, before, proc)
        driver = _driver_state(rec.driver_pid)
        container = _container(rec.container_id, rec.run_id)
        if cond.send is not None:  # if ignored, the kernel drops it at once: nothing to wait for
            proc.send_signal(cond.send)
        if not cond.cancels:
            Path(rec.outputs, "go").write_text("")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    done = _wait_over(home, rec.run_id)
    return Seen(proc.returncode, _same(out, rec.run_id), _same(err, rec.run_id), _record(done),
                container, driver, rec.driver_pid != proc.pid)


def _same(text: bytes, run_id: str) -> bytes:
    """Output with what differs between any two runs (the run ID, a served/in-process note) out."""
    lines = [line for line in text.replace(run_id.encode(), b"RUN").splitlines()
             if not line.startswith(b"dockrun: warm start:")]
    return b"\n".join(lines)


def _record(rec) -> dict:
    fields = dict(vars(rec))
    for key in ("run_id", "created", "started", "ended", "container_id", "supervisor_pid", "supervisor_start",
                "driver_pid", "driver_start"):
        fields.pop(key)
    return json.loads(json.dumps(fields).replace(rec.run_id, "RUN"))


def _container(container_id: str, run_id: str) -> dict:
    info = json.loads(subprocess.run(["docker", "inspect", container_id], capture_output=True, text=True,
                                     check=True).stdout)[0]
    config = {k: v for k, v in info["Config"].items() if k != "Hostname"}
    kept = {"Config": config, "HostConfig": info["HostConfig"], "Mounts": info["Mounts"], "Path": info["Path"],
            "Args": info["Args"], "Image": info["Image"]}
    return json.loads(json.dumps(kept).replace(run_id, "RUN").replace(container_id, "CONTAINER"))


def _driver_state(pid: int) -> dict:
    """What the kernel shows of the process that drives the run (read while it waits)."""
    proc = f"/proc/{pid}"
    status = dict(line.split(":", 1) for line in Path(proc, "status").read_text().splitlines())
    stat = Path(proc, "stat").read_text().rpartition(")")[2].split()
    fds = {}
    for name in os.listdir(f"{proc}/fd"):
        try:
            flags = int(Path(proc, "fdinfo", name).read_text().split("flags:")[1].split()[0], 8)
        except FileNotFoundError:  # a descriptor the driver held for a moment (a socket to the engine)
            continue
        if not flags & os.O_CLOEXEC:  # what it got from its caller, and passes on
            fds[int(name)] = re.sub(r"\[\d+\]", "[N]", os.readlink(f"{proc}/fd/{name}"))
    return {**client.shared_facts(proc), "nice": stat[15], "tty": stat[4] != "0", "cwd": os.readlink(f"{proc}/cwd"),
            "limits": Path(proc, "limits").read_text(), "oom_score_adj": Path(proc, "oom_score_adj").read_text(),
            "ioprio": subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True).stdout,
            **{k: status[k].strip() for k in ("Umask", "SigIgn", "SigBlk", "Cpus_allowed_list")}, "fds": fds}


def _wait_running(home: Path, before: set[str], proc: subprocess.Popen, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [r for r in RunStore(home).list(1000) if r.run_id not in before and r.status == "RUNNING"
                 and r.container_id]
        if fresh:
            return fresh[0]
        if proc.poll() is not None:
            raise AssertionError(f"the command ended before its run started: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("the run never started")


def _wait_over(home: Path, run_id: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = RunStore(home).get(run_id)
        if rec.over:
            return rec
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} is not over")


def _warm_up(cond: Condition, env: dict[str, str], project: Path) -> None:
    """One quick run under the condition: it starts the helper for that context, if there is none."""
    argv = _argv(cond, [p for kv in cond.params for p in ("-P", kv)])
    proc = subprocess.run(argv, env={**env, **cond.env}, cwd=project, capture_output=True, umask=cond.umask,
                          preexec_fn=_preexec(cond), timeout=300)
    assert proc.returncode == 0, proc.stderr
    _helper_listening(env, cond)


def _helper_listening(env: dict[str, str], cond: Condition, timeout: float = 30) -> None:
    """Wait until every helper started so far holds its lock and listens."""
    folder = Path(env["XDG_RUNTIME_DIR"], "dockrun")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        locks = [p for p in folder.glob("*.lock") if p.read_text().strip()]
        if all(Path(str(p)[:-5]).exists() for p in locks) and (locks or not cond.served):
            return
        time.sleep(0.05)


def _kernel_serves() -> bool:
    """SO_PEERPIDFD (Linux 6.5): without it no helper serves (it cannot know who calls)."""
    a, b = socket.socketpair()
    try:
        a.getsockopt(socket.SOL_SOCKET, 77)
        return True
    except OSError:
        return False
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("cond", CONDITIONS, ids=[c.name for c in CONDITIONS])
def test_served_and_in_process_are_the_same(cond: Condition, env, runtime, home, project, no_leaks) -> None:
    _warm_up(Condition("plain"), env, project)  # the unconfined helper every condition meets first
    _warm_up(cond, env, project)
    cold = observe(cond, env, project, home, warm=False)
    warm = observe(cond, env, project, home, warm=True)
    assert not cold.served
    assert warm.served == (cond.served and _kernel_serves()), warm.stderr.decode()
    assert warm.returncode == cold.returncode == (130 if cond.cancels else 0), (warm.stderr, cold.stderr)
    assert warm.stdout == cold.stdout
    assert warm.stderr == cold.stderr
    assert warm.record == cold.record
    assert warm.container == cold.container
    mine = client.shared_facts()
    for key in cond.fresh:  # each its own, and not ours
        assert warm.driver.pop(key) != mine[key] and cold.driver.pop(key) != mine[key]
    assert warm.driver == cold.driver
    assert cold.driver["tty"] == cond.terminal
    if cond.shell.startswith("exec 5<"):
        assert warm.driver["fds"][5].endswith("fd5.txt")


def test_a_descriptor_the_command_names_is_its_own(env, runtime, project, tmp_path) -> None:
    """`-c /dev/fd/5` reads the command's descriptor 5, served or not (the issue's `-P data=/dev/fd/5`
    cannot run in-process either: the engine, not dockrun, would open that path)."""
    (tmp_path / "config.json").write_text('{"x": 1}')
    _warm_up(Condition("plain"), env, project)
    argv = ["sh", "-c", f"exec 5<{tmp_path / 'config.json'}; exec \"$@\"", "sh", sys.executable, "-m", "dockrun",
            "run", ".", "-c", "/dev/fd/5"]
    seen = {}
    for mode in ("0", "1"):
        r = subprocess.run(argv, env={**env, "DOCKRUN_WARMSTART": mode}, cwd=project, capture_output=True, timeout=120)
        seen[mode] = r
    assert b"warm start: served" in seen["1"].stderr
    for r in seen.values():  # the JSON was read (not taken as text): the backend refuses its keys
        assert r.returncode == 2 and b"not supported by backend local" in r.stderr, r.stderr
    assert _same(seen["0"].stdout, "-") == _same(seen["1"].stdout, "-")
    assert _same(seen["0"].stderr, "-") == _same(seen["1"].stderr, "-")


# --- the helper's refusals, met by a process speaking the protocol itself ----------------------

CLAIM = r"""
import marshal, os, socket, struct, sys
path, ident = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(30)
sock.connect(path)
body = marshal.dumps({"identity": ident, "argv": ["run", "."], "env": dict(os.environ), "fds": [],
                      "streams": [("utf-8", "strict", False, False)] * 3, "cwd": os.getcwd(), "umask": 0o022})
fds = struct.pack("3i", 0, 1, 2)
sock.sendmsg([struct.pack("!I", len(body)) + body], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
line = b""
while not line.endswith(b"\n"):
    chunk = sock.recv(1)
    if not chunk:
        break
    line += chunk
sys.stderr.buffer.write(line)  # a "pid N": hang up, so that the worker never runs
"""

ATTACKERS = [
    ("other groups", ("setpriv", "--groups", "4242"), "groups"),
    ("another network namespace", ("unshare", "-n"), "ns/net"),
    ("no new privileges", ("setpriv", "--no-new-privs"), "NoNewPrivs"),
    ("fewer capabilities", ("setpriv", "--bounding-set", "-net_admin"), "CapBnd"),
    ("a controlling terminal", ("terminal",), "terminal"),
]


@pytest.mark.parametrize("attacker", ATTACKERS, ids=[a[0] for a in ATTACKERS])
def test_the_helper_refuses_a_caller_it_cannot_be(attacker, env, runtime, project) -> None:
    """The process claims the unconfined command's identity on its helper's socket."""
    _, prefix, fact = attacker
    _warm_up(Condition("plain"), env, project)
    path = str(next((runtime / "dockrun").glob("*.sock")))
    ident = _identity(env, project)
    cond = Condition("attacker", terminal=prefix == ("terminal",))
    argv = [*(() if cond.terminal else prefix), sys.executable, "-c", CLAIM, path, ident]
    r = subprocess.run(argv, env=env, cwd=project, capture_output=True, preexec_fn=_preexec(cond), timeout=60)
    reply = r.stderr.decode()
    assert reply.startswith("refused "), reply
    assert fact in reply if _kernel_serves() else "kernel" in reply, reply


def test_the_dropped_groups_are_not_regained(env, runtime, project) -> None:
    """The issue's case: a helper of a command in group 4242 (as `docker`), and a process of the
    same user that dropped its groups claiming that command's identity: refused."""
    with_group = Condition("in group 4242", prefix=("setpriv", "--groups", "4242"))
    _warm_up(with_group, env, project)
    _warm_up(with_group, env, project)  # served by now: its helper is up
    path = str(next((runtime / "dockrun").glob("*.sock")))
    ident = _identity(env, project, prefix=with_group.prefix)
    r = subprocess.run(["setpriv", "--clear-groups", sys.executable, "-c", CLAIM, path, ident], env=env, cwd=project,
                       capture_output=True, timeout=60)
    expected = "refused other supplementary groups" if _kernel_serves() else "refused the kernel"
    assert r.stderr.decode().startswith(expected), r.stderr


def _identity(env: dict[str, str], cwd: Path, prefix: tuple[str, ...] = ()) -> str:
    code = "from dockrun.warmstart import client; print(client.identity(client.search_path()))"
    return subprocess.run([*prefix, sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_client_sends_nothing_to_another_users_socket(env, runtime, project, home) -> None:
    """A socket where the helper's would be, listened on by another user (as after `su` without
    `-`, where that user owns $XDG_RUNTIME_DIR and can swap it at any time): the command runs
    in-process, and the listener receives nothing (no environment, no descriptors)."""
    folder = runtime / "dockrun"
    folder.mkdir(mode=0o700)
    path = client.socket_path(str(folder), _identity(env, project))
    got_r, got_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # bind as root where only root may, then listen as nobody: its peer credentials
        code = 1
        try:
            os.close(got_r)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            os.setgid(65534)
            os.setuid(65534)
            listener.listen(1)
            os.write(got_w, b"L")
            conn, _ = listener.accept()
            conn.settimeout(20)
            data = b""
            try:
                while chunk := conn.recv(4096):
                    data += chunk
            except OSError:
                pass
            os.write(got_w, b"0" if not data else b"1")
            code = 0
        finally:
            os._exit(code)
    os.close(got_w)
    try:
        assert os.read(got_r, 1) == b"L"
        r = subprocess.run([sys.executable, "-m", "dockrun", "run", "."], env=env, cwd=project, capture_output=True,
                           timeout=300)
        assert r.returncode == 0 and b"the data" in r.stdout, r.stderr
        assert b"belongs to uid 65534" in r.stderr  # DOCKRUN_WARMSTART_DEBUG says why it ran here
        assert RunStore(home).list(1)[0].driver_pid is not None
        assert os.read(got_r, 1) == b"0"  # the listener got nothing
    finally:
        os.close(got_r)
        os.waitpid(pid, 0)
