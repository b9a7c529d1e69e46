"""The supervisor against the real engine: a run cancelled while it was being submitted never
starts its command."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from dockrun.backends.local.supervisor import supervise
from dockrun.engine.client import ContainerSpec, Docker
from dockrun.store.records import RunRecord, RunStore


def test_a_run_cancelled_before_it_started_never_runs_its_command(tmp_path: Path, base_image: str) -> None:
    store, docker = RunStore(tmp_path / "home"), Docker()
    marks = tmp_path / "marks"
    marks.mkdir(mode=0o777)
    marks.chmod(0o777)
    spec = ContainerSpec(image=base_image, command=("sh", "-c", f"touch {marks}/ran"), name="dockrun-test-sched",
                         labels={"dockrun.run-id": "sched1"}, environment={}, mounts=((str(marks), str(marks), "rw"),),
                         working_dir="/", user=None)
    record = RunRecord(run_id="sched1", status="SCHEDULED", created=time.time(), uri="/p", source_key="k",
                       project="p", entry_point="main", parameters={}, command="touch", image=base_image,
                       env_key="e", outputs=str(marks))
    store.insert(record)
    container = docker.create(spec)
    store.update("sched1", container_id=container.id)
    store.transition("sched1", "KILLED", ("SCHEDULED", "RUNNING"), reason="cancelled")  # the cancel wins the race
    supervise(store, docker, "sched1", watch_driver=False)
    after = store.get("sched1")
    assert (after.status, after.ended is not None) == ("KILLED", True)
    assert docker.get_container(container.id) is None  # removed, never started
    assert not (marks / "ran").exists()
    # and a run that was not cancelled does run
    store.insert(dataclasses.replace(record, run_id="sched2"))
    second = docker.create(dataclasses.replace(spec, name="dockrun-test-sched2", labels={"dockrun.run-id": "sched2"}))
    store.update("sched2", container_id=second.id)
    store.run_dir("sched2").mkdir(parents=True)  # as the submitting process makes it
    supervise(store, docker, "sched2", watch_driver=False)
    assert store.get("sched2").status == "FINISHED" and (marks / "ran").exists()
