"""The engine restarting under a running run: the run is recorded FAILED with the reason, its
container is gone, and the next run works. On a second, private engine (its own data root, bridge
and containerd namespace on loopback TCP), so the machine's engine and other tests are untouched."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import write_project
from remote_engine import Engine
from remote_engine import second_engine as start_engine

BRIDGE = "br-dkrtest"
BRIDGE_ADDR = "172.31.251.1/24"  # a private range no other test or network uses here


@pytest.fixture
def second_engine(base_image: str):
    with start_engine("dkrtest", BRIDGE, BRIDGE_ADDR, base_image) as engine:
        yield engine


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
