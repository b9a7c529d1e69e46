"""A Kubernetes run's watcher: what the run's owner (``backends/owner.py``) does for a Job, from
its creation to its end.

The submitting process starts the owner (``owner kubernetes RUN_ID``) in a new session, so a
detached run is followed after its CLI exits. It writes the pod's output to the run's log file as
the cluster streams it (the log is kept after the Job and its pods are gone), records RUNNING and
then how the run ended, and deletes the Job when the run cannot go on: an image the node cannot
pull, a pod that stays unschedulable, a synchronous driver that died.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import DockrunError
from ...store.records import RunStore
from ...terminal import printable
from ..outcome import record_end
from .state import Verdict, job_uid, verdict

POLL_S = float(os.environ.get("DOCKRUN_K8S_POLL_S", "0.5"))
# How long a pod may stay unschedulable (a cluster autoscaler may be adding a node) before the run fails.
PENDING_S = float(os.environ.get("DOCKRUN_K8S_PENDING_TIMEOUT_S", "120"))


def job_info(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "kubernetes.json").read_text())


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


class Watcher:
    """Follows one run's Job until the run is over and recorded."""

    def __init__(self, store: RunStore, cluster: Any, run_id: str):
        self.store, self.cluster, self.run_id = store, cluster, run_id
        info = job_info(store.run_dir(run_id))
        self.ns, self.name = info["namespace"], info["job"]
        self.uid = info.get("uid") or job_uid(cluster.job(self.ns, self.name))  # a record from before the UID was kept
        self.ending: list[str] = []  # why the watcher is deleting the Job, if it is
        self.gone: list[str] = []  # ... and once the Job and its pods are gone

    def stop(self, reason: str) -> None:
        """Delete the Job and its pods; the run ends FAILED with ``reason`` once they are gone."""
        if self.ending:
            return
        self.ending.append(reason)
        self.cluster.delete_job_and_wait(self.ns, self.name, self.uid)
        self.gone.append(reason)

    def follow(self, under_way: Any) -> None:
        store, cluster, run_id, ns, name, uid = self.store, self.cluster, self.run_id, self.ns, self.name, self.uid
        run_dir = store.run_dir(run_id)
        under_way()
        streamed: set[str] = set()
        stuck_since: float | None = None
        said = None
        with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
            while True:
                current = store.get(run_id)
                if current is None or current.over or current.status == "KILLED":  # cancelled: the canceller deletes
                    return
                if self.ending:  # the driver died: the Job is being deleted
                    if self.gone:
                        record_end(store, run_id, "FAILED", None, f"{self.gone[0]}; the Job was deleted")
                        return
                    time.sleep(POLL_S)
                    continue
                job = cluster.job(ns, name)
                if job is None or job_uid(job) != uid:  # gone, or another Job of that name since
                    record_end(store, run_id, "FAILED", None, f"the Job {ns}/{name} was deleted before the run ended")
                    return
                v = verdict(job, cluster.pods(ns, uid))
                if v.started:
                    store.transition(run_id, "RUNNING", ("SCHEDULED",), started=time.time())
                if v.pod and v.started and v.pod not in streamed:
                    streamed.add(v.pod)
                    stream_log(cluster, ns, v.pod, out, err)  # returns when the container has ended
                    continue
                if v.over:
                    record_end(store, run_id, v.status, v.exit_code, v.reason)
                    return
                stuck_since = (stuck_since or time.monotonic()) if v.stuck else None
                if v.stuck and v.stuck != said:
                    said = v.stuck
                    err.write(f"dockrun: waiting: {printable(v.stuck)}\n".encode())  # the kubelet's words
                    err.flush()
                if fatal(v, stuck_since):
                    self.stop(v.stuck or "stuck")
                    record_end(store, run_id, "FAILED", None, v.stuck)
                    return
                time.sleep(POLL_S)


def fatal(v: Verdict, stuck_since: float | None) -> bool:
    return bool(v.stuck and (v.fatal or (stuck_since is not None and time.monotonic() - stuck_since > PENDING_S)))


def stream_log(cluster: Any, ns: str, pod: str, out: Any, err: Any) -> None:
    try:
        for chunk in cluster.log_stream(ns, pod):
            out.write(chunk)
            out.flush()
    except DockrunError as e:  # the pod went before its log was read: say so, the outcome still counts
        err.write(f"dockrun: the output of pod {pod} could not be read: {printable(str(e))}\n".encode())
        err.flush()
