"""Runs you can hold: records, detached runs, waiting, logs, cancellation from anywhere,
crashes of dockrun itself, concurrency, and the workflow/sweep examples. Real engine."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, dockrun_containers, write_project
from conftest import wait_until as _wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")

PROJECT = {
    "MLproject": """
        name: runs-e2e
        entry_points:
          main:
            parameters: {n: {type: int, default: 1}}
            command: "echo out-$DOCKRUN_RUN_ID-{n}; echo err-line >&2; echo {n} > $DOCKRUN_OUTPUT_DIR/n.txt"
          sleep:
            parameters: {s: {type: float, default: 120}}
            command: "echo started; sleep {s}; echo done"
          fail: "exit 7"
          gate: "echo started; while [ ! -e $DOCKRUN_OUTPUT_DIR/go ]; do sleep 0.1; done; echo done"
          term: "trap 'echo term > $DOCKRUN_OUTPUT_DIR/term; exit 143' TERM; echo started; sleep 120 & wait"
    """,
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "runs-e2e", PROJECT)


@pytest.fixture
def env(home: Path, base_image: str) -> dict[str, str]:
    return {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}


@pytest.fixture
def api(env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    for k in ("DOCKRUN_HOME", "DOCKRUN_BASE_IMAGE"):
        monkeypatch.setenv(k, env[k])
    import dockrun

    return dockrun


def _record(cli, run_id: str) -> dict:
    r = cli("runs", "show", run_id)
    assert r.code == 0, r.err
    return json.loads(r.out)


def _popen(env: dict[str, str], *args: str) -> subprocess.Popen:
    def child() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen([sys.executable, "-m", "dockrun.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=child, start_new_session=True)


def test_record_of_a_finished_run(cli, project: Path) -> None:
    r = cli("run", str(project), "-P", "n=5")
    assert r.code == 0, r.err
    run_id = r.out.split("out-")[1].split("-")[0]
    rec = _record(cli, run_id)
    assert rec["status"] == "FINISHED" and rec["exit_code"] == 0 and rec["ended"] >= rec["started"] >= rec["created"]
    assert rec["parameters"] == {"n": "5"} and rec["entry_point"] == "main" and rec["project"] == "runs-e2e"
    assert rec["source_key"] and rec["env_key"] and rec["image"].startswith("dockrun-runs-e2e:")
    assert Path(rec["outputs"], "n.txt").read_text() == "5\n"
    assert "err-line" in r.err
    listing = cli("runs", "list")
    assert run_id in listing.out and "FINISHED" in listing.out


def test_detached_run_wait_and_logs_from_new_processes(cli, project: Path) -> None:
    r = cli("run", str(project), "-e", "sleep", "-P", "s=2", "--detach")
    assert r.code == 0, r.err
    run_id = r.out.strip()
    assert len(run_id) == 16 and _record(cli, run_id)["status"] == "RUNNING"
    waited = cli("runs", "wait", run_id)
    assert waited.code == 0 and "FINISHED" in waited.out
    logs = cli("runs", "logs", run_id)
    assert logs.out == "started\ndone\n"
    assert dockrun_containers(run_id) == []


def test_wait_reports_failure(cli, project: Path) -> None:
    run_id = cli("run", str(project), "-e", "fail", "--detach").out.strip()
    r = cli("runs", "wait", run_id)
    assert r.code == 1 and "FAILED" in r.err and "status 7" in r.err
    assert _record(cli, run_id)["exit_code"] == 7


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _readline(proc: subprocess.Popen, timeout: float = 120) -> str:
    """The next line the process prints, or a failure when none comes (never a hung test)."""
    import select

    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no line printed"
    return proc.stdout.readline()


def test_follow_logs_live(cli, project: Path, env) -> None:
    """`runs logs -f` prints a line while the run is still running (it cannot end before the test
    opens its gate), then the rest, and returns when the run ends."""
    run_id = cli("run", str(project), "-e", "gate", "--detach").out.strip()
    proc = _popen(env, "runs", "logs", run_id, "-f")
    try:
        assert _readline(proc) == "started\n"
        assert _record(cli, run_id)["status"] == "RUNNING"  # the line came live, not from a dump at the end
        Path(_record(cli, run_id)["outputs"], "go").write_text("")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and out == "done\n"
    assert _record(cli, run_id)["status"] == "FINISHED"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_run_gives_killed_record_and_no_container(cli, project: Path, env, sig) -> None:
    proc = _popen(env, "run", str(project), "-e", "sleep")
    try:
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    run_id = err.split("run ")[1].split()[0]
    assert _record(cli, run_id)["status"] == "KILLED"
    assert dockrun_containers(run_id) == []  # this run's: a developer's engine may run others


def test_cancel_from_another_thread(api, project: Path, env) -> None:
    """Cancel stops the command with SIGTERM (which tini forwards), not a kill after docker's grace
    period: the command's own TERM trap runs."""
    run = api.execute(str(project), entry_point="term", synchronous=False)
    assert run.get_status() == "RUNNING"
    log = Path(env["DOCKRUN_HOME"], "runs", run.run_id, "stdout.log")
    assert _wait_for(lambda: log.exists() and "started" in log.read_text())  # its TERM trap is set
    t = threading.Thread(target=run.cancel)
    t.start()
    assert run.wait() is False
    t.join(30)
    assert run.get_status() == "KILLED" and not t.is_alive()
    assert Path(run.outputs, "term").read_text() == "term\n"  # SIGTERM reached the command
    assert dockrun_containers(run.run_id) == []


def test_cancel_from_another_process(cli, project: Path) -> None:
    run_id = cli("run", str(project), "-e", "sleep", "--detach").out.strip()
    r = cli("runs", "cancel", run_id[:8])  # a unique prefix is enough
    assert r.code == 0 and r.out.strip() == f"{run_id} KILLED"
    assert dockrun_containers(run_id) == []


def test_synchronous_failure_raises(api, project: Path) -> None:
    with pytest.raises(api.ExecutionError) as e, open(os.devnull, "wb") as devnull:
        api.execute(str(project), entry_point="fail", stdout=devnull)
    assert e.value.exit_status == 7 and api.get_run(e.value.run_id).get_status() == "FAILED"


def test_killed_driver_stops_its_run(cli, project: Path, env) -> None:
    """kill -9 of a synchronous `dockrun run`: its supervisor stops the container, records FAILED."""
    proc = _popen(env, "run", str(project), "-e", "sleep")
    assert proc.stdout.readline().strip() == "started"
    run_id = cli("runs", "list").out.splitlines()[1].split()[0]
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while dockrun_containers(run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    rec = _record(cli, run_id)
    assert rec["status"] == "FAILED" and "driver process vanished" in rec["reason"]
    assert dockrun_containers(run_id) == []


def test_killed_supervisor_is_found_out(cli, project: Path) -> None:
    """kill -9 of a detached run's supervisor: the next look finishes the run and its container."""
    run_id = cli("run", str(project), "-e", "sleep", "--detach").out.strip()
    rec = _record(cli, run_id)
    os.kill(rec["supervisor_pid"], signal.SIGKILL)
    assert _wait_for(lambda: not _alive(rec["supervisor_pid"]))  # gone (reaped by init), not just signalled
    rec = _record(cli, run_id)
    assert rec["status"] == "FAILED" and "supervisor vanished" in rec["reason"] and rec["ended"]
    assert dockrun_containers(run_id) == []


def test_twenty_concurrent_runs_one_build(api, project: Path, cli) -> None:
    from concurrent.futures import ThreadPoolExecutor

    (project / "unique.txt").write_text(str(time.time()))  # a new project image to build
    builds: list[str] = []
    lock = threading.Lock()

    def log(line: str) -> None:
        if line.startswith("building "):
            with lock:
                builds.append(line)

    def one(n: int):
        return api.execute(str(project), parameters={"n": n}, synchronous=False, log=log)

    with ThreadPoolExecutor(max_workers=20) as pool:
        runs = list(pool.map(one, range(20)))
    assert all(r.wait(timeout=300) for r in runs)
    assert len(builds) == 1, builds
    assert len({r.run_id for r in runs}) == 20
    for n, r in enumerate(runs):
        rec = r.record()
        assert rec.status == "FINISHED" and rec.exit_code == 0 and rec.parameters == {"n": str(n)}
        assert Path(r.outputs, "n.txt").read_text() == f"{n}\n"
    listed = cli("runs", "list", "-n", "50").out
    assert sum(line.split()[0] in {r.run_id for r in runs} for line in listed.splitlines()[1:]) == 20


def test_multistep_example(env: dict[str, str]) -> None:
    p = subprocess.run([sys.executable, str(REPO / "examples" / "multistep" / "driver.py")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert [line.split(":")[0] for line in p.stdout.splitlines()[:3]] == ["load", "featurize", "train"]
    assert "model: {\"w\": 2.99" in p.stdout


def test_sweep_example(env: dict[str, str]) -> None:
    p = subprocess.run([sys.executable, str(REPO / "examples" / "sweep" / "driver.py"), "--alphas", "0.01,1,10",
                        "--parallel", "3"], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1].startswith("best: alpha=0.01 ")
    assert p.stderr.count("building project image") <= 1


def test_docker_env_image_volumes_environment_and_docker_args(cli, tmp_path: Path, base_image: str) -> None:
    shared = tmp_path / "vol"
    shared.mkdir()
    (shared / "greeting.txt").write_text("hello from the host\n")
    project = write_project(tmp_path / "denv", {"MLproject": f"""
        name: denv
        docker_env:
          image: {base_image}
          volumes: ["{shared}:/data:ro"]
          environment: [["FIXED", "one"], "PASSED_THROUGH"]
        entry_points:
          main: "cat /data/greeting.txt; echo $FIXED $PASSED_THROUGH $EXTRA; df -k /dev/shm | tail -1; id -u"
    """})
    r = cli("run", str(project), "-A", "shm-size=256m", "-A", "env=EXTRA=three", "-A", "network=none",
            env={"PASSED_THROUGH": "two"})
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == "hello from the host" and lines[1] == "one two three"
    assert lines[2].split()[1] == str(256 * 1024)  # shm size in KiB
    assert lines[3] == str(os.getuid())
    missing = cli("run", str(project))  # PASSED_THROUGH not set on the host
    assert missing.code == 2 and "PASSED_THROUGH" in missing.err and len(missing.err.strip().splitlines()) == 1


def test_a_docker_env_container_runs_as_the_caller(as_user, base_image: str) -> None:
    """A docker_env image is used as given, but the command runs as the caller (uid 4321 when the
    tests run as root), so what it writes to the run's outputs is the caller's."""
    shared = as_user.folder()
    write_project(shared / "denv", {"MLproject": f"""
        name: denv-owner
        docker_env: {{image: {base_image}}}
        entry_points:
          main: "id -u; echo x > $DOCKRUN_OUTPUT_DIR/o.txt"
    """})
    r = as_user.run(shared, "run", "denv")
    assert r.code == 0 and r.out.strip() == str(as_user.uid), r.err
    (written,) = (shared / "home" / "runs").glob("*/outputs/o.txt")
    assert written.stat().st_uid == as_user.uid
