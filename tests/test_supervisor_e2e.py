"""The supervisor against the real engine: a run cancelled while it was being submitted never
starts its command."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from dockrun.backends.local.supervisor import Supervisor
from dockrun.backends.owner import own
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
    own(Supervisor(store, docker, "sched1"), watch_driver=False)
    after = store.get("sched1")
    assert (after.status, after.ended is not None) == ("KILLED", True)
    assert docker.get_container(container.id) is None  # removed, never started
    assert not (marks / "ran").exists()
    # and a run that was not cancelled does run
    store.insert(dataclasses.replace(record, run_id="sched2"))
    second = docker.create(dataclasses.replace(spec, name="dockrun-test-sched2", labels={"dockrun.run-id": "sched2"}))
    store.update("sched2", container_id=second.id)
    store.run_dir("sched2").mkdir(parents=True)  # as the submitting process makes it
    own(Supervisor(store, docker, "sched2"), watch_driver=False)
    assert store.get("sched2").status == "FINISHED" and (marks / "ran").exists()


def test_a_run_after_a_pool_of_runs_gets_a_working_supervisor(tmp_path: Path, base_image: str,
                                                               monkeypatch) -> None:  # noqa: ANN001
    """A sweep's pool threads leave their run-store connections behind when they finish (in stores
    still held, and in dropped ones until the garbage collector runs); the next run, started from
    the main thread, forks its supervisor directly, and SQLite's state must not cross that fork (it
    failed with "disk I/O error" in the supervisor: "the supervisor vanished")."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    import dockrun

    monkeypatch.setenv("DOCKRUN_HOME", str(tmp_path / "home"))
    project = tmp_path / "proj"
    project.mkdir()
    (project / "MLproject").write_text(f"name: pool\ndocker_env:\n  image: {base_image}\nentry_points:\n"
                                       "  main:\n    parameters: {n: {type: int, default: 0}}\n"
                                       "    command: \"echo run {n}\"\n")
    quiet = io.BytesIO()

    def one(n: int):  # noqa: ANN202
        return dockrun.execute(str(project), parameters={"n": n}, synchronous=False, log=lambda line: None)

    with ThreadPoolExecutor(2) as pool:
        handles = list(pool.map(one, range(3)))  # kept: their stores hold finished threads' connections
    assert all(h.wait() for h in handles)
    with ThreadPoolExecutor(2) as pool:  # dropped: their connections wait for the garbage collector
        assert all(pool.map(lambda n: one(n).wait(), range(3, 6)))
    last = dockrun.execute(str(project), parameters={"n": 9}, log=lambda line: None, stdout=quiet, stderr=quiet)
    assert last.get_status() == "FINISHED" and b"run 9" in quiet.getvalue()
