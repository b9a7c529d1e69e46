"""The engine restarting under a running run: the run is recorded FAILED with the reason, its
container is gone, and the next run works. On a second, private engine (its own data root, bridge
and containerd namespace on loopback TCP), so the machine's engine and other tests are untouched."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import free_port, unavailable, write_project

BRIDGE = "br-dkrtest"
BRIDGE_ADDR = "172.31.251.1/24"  # a private range no other test or network uses here


class Engine:
    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.host = f"tcp://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - lives as long as the engine
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "pid"), "-H", self.host, "--bridge", BRIDGE,
             "--containerd-namespace", "dkrtest", "--containerd-plugins-namespace", "dkrtestp"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(120):
            if self.docker("info").returncode == 0:
                return
            time.sleep(0.25)
        raise AssertionError("the second engine did not start: " + (self.root / "dockerd.log").read_text()[-800:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)

    def docker(self, *args: str, **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
        return subprocess.run(["docker", "-H", self.host, *args], capture_output=True, text=True, **kw)


@pytest.fixture
def second_engine(tmp_path: Path, base_image: str):
    if os.geteuid() != 0 or not shutil.which("dockerd") or not shutil.which("ip"):
        unavailable("a second engine needs root, dockerd and ip")
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0:
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", BRIDGE_ADDR, "dev", BRIDGE], check=True)
        subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
    root = Path("/var/tmp") / f"dockrun-engine2-{os.getpid()}"  # not under /tmp: overlay upper dirs
    root.mkdir(parents=True, exist_ok=True)
    engine = Engine(root)
    engine.start()
    try:
        saved = subprocess.Popen(["docker", "save", base_image], stdout=subprocess.PIPE)
        loaded = subprocess.run(["docker", "-H", engine.host, "load", "-q"], stdin=saved.stdout,
                                capture_output=True, text=True)
        saved.wait()
        assert loaded.returncode == 0, loaded.stderr
        yield engine
    finally:
        engine.stop()
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)


def test_engine_restart_during_a_run(cli, second_engine: Engine, home: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "sleeper", {
        "MLproject": "name: sleeper\nentry_points:\n  main: {command: \"echo started; sleep 120\"}\n"
                     "  quick: {command: \"echo quick\"}\n"})
    env = {"DOCKER_HOST": second_engine.host}
    run_id = cli("run", str(project), "--detach", "-q", env=env).out.strip()
    deadline = time.time() + 60
    while "RUNNING" not in cli("runs", "list", env=env).out and time.time() < deadline:
        time.sleep(0.2)
    second_engine.stop()
    second_engine.start()
    r = cli("runs", "wait", run_id, env=env, timeout=120)
    assert r.code == 1 and len(r.err.strip().splitlines()) == 1, r.err
    show = cli("runs", "show", run_id, env=env).out
    assert '"status": "FAILED"' in show and '"reason": null' not in show and '"ended": null' not in show
    assert second_engine.docker("ps", "-aq", "--filter", f"label=dockrun.run-id={run_id}").stdout.strip() == ""
    again = cli("run", str(project), "-e", "quick", "-q", env=env)
    assert again.code == 0 and again.out.strip() == "quick", again.err
