"""A run on Kubernetes, from any process: its record is brought up to date by its watcher
(watch.py); whoever looks at a run whose watcher is gone starts a new one, so a run is never left
unfollowed. Cancel deletes the Job with its pods and returns when they are gone."""
from __future__ import annotations

import time
from typing import IO, Any

from ...store.liveness import alive, start_token
from ...store.records import ACTIVE, RunRecord, RunStore
from ..handle import RunHandle, follow_logs, shielded
from ..local.launch import start_owner
from ..outcome import record_end
from .state import job_uid
from .watch import job_info

POLL_S = 0.1


class KubernetesRun(RunHandle):
    poll_s = POLL_S
    cancel_summary = "cancelled and its Job deleted"

    def __init__(self, store: RunStore, run_id: str, cluster: Any = None):
        super().__init__(store, run_id)
        self._cluster = cluster

    @property
    def cluster(self) -> Any:
        if self._cluster is None:
            from .cluster import Cluster

            self._cluster = Cluster(self._info().get("context"))
        return self._cluster

    def _info(self) -> dict[str, Any]:
        return job_info(self._store.run_dir(self.run_id))

    def record(self) -> RunRecord:
        rec = self._stored()
        if rec.over or rec.status == "KILLED" or alive(rec.supervisor_pid, rec.supervisor_start):
            return rec
        if not (self._store.run_dir(self.run_id) / "kubernetes.json").exists():
            return rec  # still being submitted
        pid = start_owner("kubernetes", self._store.home, self.run_id, False, self._store.run_dir(self.run_id))
        self._store.update(self.run_id, supervisor_pid=pid, supervisor_start=start_token(pid))
        return self._store.get(self.run_id) or rec

    def cancel(self) -> None:
        """Delete the Job and its pods; record KILLED once nothing of it is left."""
        rec = self._stored()
        if rec.over:
            return
        self._store.transition(self.run_id, "KILLED", ACTIVE, reason="cancelled")
        info = self._info() if (self._store.run_dir(self.run_id) / "kubernetes.json").exists() else None
        with shielded():
            if info:
                uid = info.get("uid") or job_uid(self.cluster.job(info["namespace"], info["job"]))
                if uid:
                    self.cluster.delete_job_and_wait(info["namespace"], info["job"], uid)
            record_end(self._store, self.run_id, "KILLED", None, "cancelled")

    def follow(self, out: IO[bytes], err: IO[bytes], follow: bool = True) -> RunRecord:
        """Copy the run's output (the pod's, as the watcher saves it) until the run is over."""
        return follow_logs(self, self._store.run_dir(self.run_id), (out, err), follow, lambda: time.sleep(POLL_S))
