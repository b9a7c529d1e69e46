"""Following Kubernetes runs: what a run's owner (``backends/owner.py``) does for a Job, from its
creation to its end.

``RunFollower`` is one run: given its Job and pods as last seen, it records RUNNING, streams the
pod's output into the run's log (kept after the Job and its pods are gone), records how the run
ended, and deletes the Job when the run cannot go on (an image the node cannot pull, a pod that
stays unschedulable, a synchronous driver that died). ``Watcher`` follows one run by looking at its
Job every DOCKRUN_K8S_POLL_S; a sweep's owner (``batch.SweepWatcher``) follows all its runs from one
watch of their labels.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable

from ...config import seconds
from ...errors import DockrunError
from ...store.records import RunStore
from ...terminal import printable
from ..outcome import record_end
from .state import Verdict, job_uid, verdict

POLL_S = seconds("DOCKRUN_K8S_POLL_S")
# How long a pod may stay unschedulable (a cluster autoscaler may be adding a node) before the run fails.
PENDING_S = seconds("DOCKRUN_K8S_PENDING_TIMEOUT_S")
STREAM_END_S = 60  # how long a run's end waits for the rest of its pod's output


def job_info(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "kubernetes.json").read_text())


def driver_of(store: RunStore, run_id: str) -> tuple[int, str | None] | None:
    rec = store.get(run_id)
    return (rec.driver_pid, rec.driver_start) if rec and rec.driver_pid else None


@contextmanager
def watched(store: RunStore, run_id: str) -> Iterator[Watcher]:
    """The run's Job as its owner follows it (an ``owner.Owned``); a failure of the watcher's own
    fails the run, saying why: a run is never left open."""
    from .cluster import Cluster

    try:
        yield Watcher(store, Cluster(job_info(store.run_dir(run_id)).get("context")), run_id)
    except Exception as e:
        record_end(store, run_id, "FAILED", None, f"watcher error: {e}".splitlines()[0])
        raise


class RunFollower:
    """One run's Job, as its owner sees it change."""

    def __init__(self, store: RunStore, cluster: Any, run_id: str, info: Mapping[str, Any]):
        self.store, self.cluster, self.run_id = store, cluster, run_id
        self.ns, self.name = info["namespace"], info["job"]
        self.uid = info.get("uid") or job_uid(cluster.job(self.ns, self.name))  # a record from before the UID was kept
        self.ending: list[str] = []  # why the owner is deleting the Job, if it is
        self.gone: list[str] = []  # ... and once the Job and its pods are gone
        self.streams: dict[str, threading.Thread] = {}  # pod -> the thread copying its output
        self.stuck_since: float | None = None
        self.said: str | None = None
        self._files: tuple[IO[bytes], IO[bytes]] | None = None

    def stop(self, reason: str, grace_s: int = 10) -> None:
        """Delete the Job and its pods; the run ends FAILED with ``reason`` once they are gone."""
        if self.ending:
            return
        self.ending.append(reason)
        self.cluster.delete_job_and_wait(self.ns, self.name, self.uid, grace_s=grace_s)
        self.gone.append(reason)

    def step(self, job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]) -> bool:
        """Act on the Job and its pods as last seen; True once the run is over."""
        store, run_id = self.store, self.run_id
        current = store.get(run_id)
        if current is None or current.over or current.status == "KILLED":  # cancelled: the canceller deletes
            return True
        if self.ending:  # the driver died: the Job is being deleted
            if self.gone:
                self._end("FAILED", None, f"{self.gone[0]}; the Job was deleted")
            return bool(self.gone)
        if job is None or job_uid(job) != self.uid:  # gone, or another Job of that name since
            self._end("FAILED", None, f"the Job {self.ns}/{self.name} was deleted before the run ended")
            return True
        v = verdict(job, pods)
        if v.started:
            store.transition(run_id, "RUNNING", ("SCHEDULED",), started=time.time())
        if v.pod and v.started and v.pod not in self.streams:
            self._stream(v.pod)
        if v.over:
            self._end(v.status, v.exit_code, v.reason)
            return True
        self.stuck_since = (self.stuck_since or time.monotonic()) if v.stuck else None
        if v.stuck and v.stuck != self.said:
            self.said = v.stuck
            err = self._logs()[1]
            err.write(f"dockrun: waiting: {printable(v.stuck)}\n".encode())  # the kubelet's words
            err.flush()
        if fatal(v, self.stuck_since):
            # A container that never started has nothing to stop gracefully; a grace period would
            # leave its pod terminating while the kubelet is still busy with it (a pull that cannot
            # succeed: about 50 s here), and the run waiting for that.
            self.stop(v.stuck or "stuck", grace_s=10 if v.started else 0)
            self._end("FAILED", None, v.stuck)
            return True
        return False

    def _logs(self) -> tuple[IO[bytes], IO[bytes]]:
        if self._files is None:
            run_dir = self.store.run_dir(self.run_id)
            # Open while the run is followed (a sweep's owner follows many), closed at its end.
            self._files = (open(run_dir / "stdout.log", "ab"), open(run_dir / "stderr.log", "ab"))  # noqa: SIM115
        return self._files

    def _stream(self, pod: str) -> None:
        """Copy the pod's output into the run's log, until its container ends (a thread of its own)."""
        out, err = self._logs()
        thread = threading.Thread(target=stream_log, args=(self.cluster, self.ns, pod, out, err), daemon=True)
        self.streams[pod] = thread
        thread.start()

    def _end(self, status: str, exit_code: int | None, reason: str | None) -> None:
        """The run's end, once the output its pods wrote is in its log; the log files closed."""
        for thread in self.streams.values():
            thread.join(STREAM_END_S)
        if self._files is not None:
            for f in self._files:
                f.close()
            self._files = None
        record_end(self.store, self.run_id, status, exit_code, reason)


class Watcher:
    """Follows one run's Job, looking at it every POLL_S, until the run is over and recorded."""

    def __init__(self, store: RunStore, cluster: Any, run_id: str):
        self.follower = RunFollower(store, cluster, run_id, job_info(store.run_dir(run_id)))
        self.driver = driver_of(store, run_id)

    def stop(self, reason: str) -> None:
        self.follower.stop(reason)

    def follow(self, under_way: Callable[[], None]) -> None:
        f = self.follower
        under_way()
        while True:
            job = f.cluster.job(f.ns, f.name)
            pods = f.cluster.pods(f.ns, f.uid) if job_uid(job) == f.uid else []
            if f.step(job, pods):
                return
            time.sleep(POLL_S)


def fatal(v: Verdict, stuck_since: float | None) -> bool:
    return bool(v.stuck and (v.fatal or (stuck_since is not None and time.monotonic() - stuck_since > PENDING_S)))


def stream_log(cluster: Any, ns: str, pod: str, out: IO[bytes], err: IO[bytes]) -> None:
    try:
        for chunk in cluster.log_stream(ns, pod):
            out.write(chunk)
            out.flush()
    except DockrunError as e:  # the pod went before its log was read: say so, the outcome still counts
        err.write(f"dockrun: the output of pod {pod} could not be read: {printable(str(e))}\n".encode())
        err.flush()
