"""A sweep on Kubernetes: its runs share one cluster client, one check of the Job template, one
build and push of the image, and one owner process that follows every Job of the sweep from one
watch of its label (``dockrun.sweep=<id>``), instead of a watcher process per run polling the API.

The driver side is ``KubeSweep`` (held by the backend a sweep submits through); the owner side is
``SweepWatcher`` (``python -m dockrun.backends.owner kubernetes-sweep SWEEP_ID``). They share a
small state file, ``$DOCKRUN_HOME/sweeps/<id>/kubernetes.json``: the cluster and namespace, the
driver (whose death deletes every Job left), the runs submitted so far, and whether the driver
has submitted its last one (then the owner exits once they are all over).
"""
from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from ...locks import write_atomic
from ...store.liveness import start_token
from ...store.records import RunStore
from ..outcome import record_end
from .job import LABEL_RUN, LABEL_SWEEP
from .state import job_uid, verdict
from .watch import POLL_S, RunFollower, job_info

WATCH_RETRIES = 5  # a watch that keeps failing (the cluster gone) fails the runs it follows


def state_dir(home: Path, sweep_id: str) -> Path:
    return home / "sweeps" / sweep_id


class KubeSweep:
    """What a sweep's runs share, on the driver's side (its pool's threads submit through it)."""

    def __init__(self, home: Path, sweep_id: str, start: Callable[[Path], int]):
        self.home, self.sweep_id, self._start = home, sweep_id, start
        self.labels = {LABEL_SWEEP: sweep_id}
        self._lock = threading.Lock()
        self._cluster: Any = None
        self._images: dict[str, str] = {}
        self._owner: tuple[int, str | None] | None = None
        self._state: dict[str, Any] = {}

    def cluster(self, context: str | None) -> Any:
        with self._lock:
            if self._cluster is None:
                from .cluster import Cluster

                self._cluster = Cluster(context)
            return self._cluster

    def image(self, project_image: str, check_and_push: Callable[[], str]) -> str:
        """The pushed reference of ``project_image``: checked and pushed by the first run that
        needs it, while the others wait."""
        with self._lock:
            if project_image not in self._images:
                self._images[project_image] = check_and_push()
            return self._images[project_image]

    def follow(self, run_id: str, namespace: str, context: str | None) -> tuple[int, str | None]:
        """Hand the run (its Job created, kubernetes.json written) to the sweep's owner, started
        on first need; the owner's pid and start token."""
        with self._lock:
            if self._owner is None:
                folder = state_dir(self.home, self.sweep_id)
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._state = {"sweep_id": self.sweep_id, "namespace": namespace, "context": context,
                               "driver": [os.getpid(), start_token(os.getpid())], "runs": [], "closed": False}
                self._state["runs"].append(run_id)
                self._save()
                pid = self._start(folder)
                self._owner = (pid, start_token(pid))
                return self._owner
            self._state["runs"].append(run_id)
            self._save()
            return self._owner

    def close(self) -> None:
        """No more runs: the owner exits once those it has are over."""
        with self._lock:
            if self._owner is not None:
                self._state["closed"] = True
                self._save()

    def _save(self) -> None:
        write_atomic(state_dir(self.home, self.sweep_id) / "kubernetes.json", json.dumps(self._state))


@contextmanager
def swept(store: RunStore, sweep_id: str) -> Iterator[SweepWatcher]:
    """The sweep's Jobs as their owner follows them (an ``owner.Owned``); a failure of the owner's
    own fails the runs it had not seen end, saying why."""
    from .cluster import Cluster

    folder = state_dir(store.home, sweep_id)
    state = json.loads((folder / "kubernetes.json").read_text())
    watcher = SweepWatcher(store, Cluster(state.get("context")), folder, state)
    try:
        yield watcher
    except Exception as e:
        for run_id in watcher.submitted():
            if not _over(store, run_id):
                record_end(store, run_id, "FAILED", None, f"watcher error: {e}".splitlines()[0])
        raise


class SweepWatcher:
    """Follows every Job labelled with the sweep's ID, from one watch of its Jobs and one of its pods."""

    def __init__(self, store: RunStore, cluster: Any, folder: Path, state: Mapping[str, Any]):
        self.store, self.cluster, self.folder = store, cluster, folder
        self.ns, self.selector = state["namespace"], f"{LABEL_SWEEP}={state['sweep_id']}"
        self.driver = tuple(state["driver"]) if state.get("driver") else None
        self.followers: dict[str, RunFollower] = {}
        self.jobs: dict[str, Mapping[str, Any]] = {}  # run ID -> its Job as last seen
        self.pods: dict[str, dict[str, Mapping[str, Any]]] = {}  # run ID -> pod name -> pod
        self.done: set[str] = set()
        self.stopping: list[str] = []

    def submitted(self) -> list[str]:
        """The runs the driver has handed over, and whether it has handed over its last."""
        try:
            return list(json.loads((self.folder / "kubernetes.json").read_text()).get("runs") or [])
        except (OSError, ValueError):
            return list(self.followers)

    def _closed(self) -> bool:
        try:
            return bool(json.loads((self.folder / "kubernetes.json").read_text()).get("closed"))
        except (OSError, ValueError):
            return False

    def stop(self, reason: str) -> None:
        """The driver died: every Job of the sweep not over is deleted; each run ends saying why."""
        self.stopping.append(reason)
        deleting = [threading.Thread(target=follower.stop, args=(reason,), daemon=True)
                    for run_id, follower in list(self.followers.items()) if run_id not in self.done]
        for thread in deleting:  # at once: each waits out its pods' grace period
            thread.start()
        for thread in deleting:
            thread.join()

    def follow(self, under_way: Callable[[], None]) -> None:
        under_way()
        events: queue.Queue = queue.Queue()
        for kind in ("jobs", "pods"):
            threading.Thread(target=self._feed, args=(kind, events), daemon=True).start()
        while True:
            self._take(events)
            self._adopt()
            for run_id, follower in list(self.followers.items()):
                if run_id not in self.done and follower.step(self.jobs.get(run_id), self._pods_of(run_id)):
                    self.done.add(run_id)
            if self._over():
                return

    def _feed(self, kind: str, events: queue.Queue) -> None:
        failures = 0
        while True:
            try:
                for change, obj in self.cluster.watch(self.ns, kind, self.selector):
                    failures = 0
                    events.put((kind, change, obj))
            except Exception as e:  # noqa: BLE001 - retried; the last one reaches the owner's loop
                failures += 1
                if failures >= WATCH_RETRIES:
                    events.put((kind, "ERROR", e))
                    return
                threading.Event().wait(POLL_S * failures)

    def _take(self, events: queue.Queue) -> None:
        """What changed: the first event waited for (at most POLL_S), then all that are there."""
        try:
            item = events.get(timeout=POLL_S)
        except queue.Empty:
            return
        while True:
            kind, change, obj = item
            if change == "ERROR":
                raise obj
            run_id = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN)
            if run_id:
                name = obj["metadata"]["name"]
                if kind == "jobs":
                    if change == "DELETED":
                        self.jobs.pop(run_id, None)
                    else:
                        self.jobs[run_id] = obj
                elif change == "DELETED":
                    self.pods.get(run_id, {}).pop(name, None)
                else:
                    self.pods.setdefault(run_id, {})[name] = obj
            try:
                item = events.get_nowait()
            except queue.Empty:
                return

    def _adopt(self) -> None:
        """A Job seen is followed once its run's record names it (kubernetes.json, written by the
        driver after the Job was created): a label alone, which anyone may set, is not enough."""
        for run_id, job in self.jobs.items():
            if run_id in self.followers:
                continue
            try:
                info = job_info(self.store.run_dir(run_id))
            except (OSError, ValueError):  # not there yet, or being written by a driver before this one
                continue
            if info.get("uid") == job_uid(job) and info.get("namespace") == self.ns:
                self.followers[run_id] = RunFollower(self.store, self.cluster, run_id, info)
                if self.stopping:
                    self.followers[run_id].stop(self.stopping[0])

    def _pods_of(self, run_id: str) -> list[Mapping[str, Any]]:
        """The run's pods, oldest first: those its Job's controller made (by owner UID, not by label).
        Once its Job is over they are read from the cluster: the pods' watch may not have caught up
        with the Jobs' yet, and the run's end must come after its pod's output (one call a run)."""
        uid = self.followers[run_id].uid
        if verdict(self.jobs.get(run_id) or {}, []).over:
            return self.cluster.pods(self.ns, uid)
        pods = [p for p in self.pods.get(run_id, {}).values()
                if any(ref.get("uid") == uid and ref.get("controller")
                       for ref in p["metadata"].get("ownerReferences") or [])]
        return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")

    def _over(self) -> bool:
        if any(run_id not in self.done for run_id in self.followers):
            return False
        if self.stopping:
            return True
        if not self._closed():
            return False
        return all(run_id in self.done or _over(self.store, run_id) for run_id in self.submitted())


def _over(store: RunStore, run_id: str) -> bool:
    rec = store.get(run_id)
    return rec is None or rec.over
