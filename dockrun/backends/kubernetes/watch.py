"""A Kubernetes run's watcher: the process that follows its Job from creation to end.

Started by the submitting process in a new session (``python -m dockrun.backends.kubernetes.watch
RUN_ID``), so a detached run is followed after its CLI exits. It writes the pod's output to the
run's log file as the cluster streams it (the log is kept after the Job and its pods are gone),
records RUNNING and then how the run ended, and deletes the Job when the run cannot go on: an image
the node cannot pull, a pod that stays unschedulable, a synchronous driver that died.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ...errors import DockrunError
from ...store.liveness import alive, start_token
from ...store.records import RunStore
from ...terminal import printable
from ..module_command import module_command
from ..outcome import record_end
from .state import Verdict, job_uid, verdict

POLL_S = float(os.environ.get("DOCKRUN_K8S_POLL_S", "0.5"))
# How long a pod may stay unschedulable (a cluster autoscaler may be adding a node) before the run fails.
PENDING_S = float(os.environ.get("DOCKRUN_K8S_PENDING_TIMEOUT_S", "120"))
POLL_DRIVER_S = 0.5


def start_watcher(store: RunStore, run_id: str, attached: bool) -> tuple[int, str | None]:
    """The run's watcher, in its own session (Ctrl-C in the terminal reaches the driver, which
    cancels); returns its pid and start token."""
    run_dir = store.run_dir(run_id)
    args = [*module_command("dockrun.backends.kubernetes.watch"), run_id, "--home", str(store.home)]
    with open(run_dir / "watcher.log", "ab") as log:
        proc = subprocess.Popen(args + (["--watch-driver"] if attached else []), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid, start_token(proc.pid)


def job_info(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "kubernetes.json").read_text())


def watch(store: RunStore, cluster: Any, run_id: str, watch_driver: bool) -> None:
    """Follow the run's Job until the run is over and recorded."""
    rec = store.get(run_id)
    if rec is None or rec.over:
        return
    run_dir = store.run_dir(run_id)
    info = job_info(run_dir)
    ns, name = info["namespace"], info["job"]
    uid = info.get("uid") or job_uid(cluster.job(ns, name))  # a record from before the UID was kept
    ending: list[str] = []  # why the watcher is deleting the Job, if it is
    gone: list[str] = []  # ... and once the Job and its pods are gone

    def end_job(reason: str) -> None:
        if ending:
            return
        ending.append(reason)
        cluster.delete_job_and_wait(ns, name, uid)
        gone.append(reason)

    if watch_driver and rec.driver_pid:
        threading.Thread(target=_watch_driver, args=(rec.driver_pid, rec.driver_start, end_job, ending),
                         daemon=True).start()
    streamed: set[str] = set()
    stuck_since: float | None = None
    said = None
    with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
        while True:
            current = store.get(run_id)
            if current is None or current.over or current.status == "KILLED":  # cancelled: the canceller deletes
                return
            if ending:  # the driver died: the Job is being deleted
                if gone:
                    record_end(store, run_id, "FAILED", None, f"{gone[0]}; the Job was deleted")
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
                _stream(cluster, ns, v.pod, out, err)  # returns when the container has ended
                continue
            if v.over:
                record_end(store, run_id, v.status, v.exit_code, v.reason)
                return
            stuck_since = (stuck_since or time.monotonic()) if v.stuck else None
            if v.stuck and v.stuck != said:
                said = v.stuck
                err.write(f"dockrun: waiting: {printable(v.stuck)}\n".encode())  # the kubelet's words
                err.flush()
            if _fatal(v, stuck_since):
                end_job(v.stuck or "stuck")
                record_end(store, run_id, "FAILED", None, v.stuck)
                return
            time.sleep(POLL_S)


def _fatal(v: Verdict, stuck_since: float | None) -> bool:
    return bool(v.stuck and (v.fatal or (stuck_since is not None and time.monotonic() - stuck_since > PENDING_S)))


def _stream(cluster: Any, ns: str, pod: str, out: Any, err: Any) -> None:
    try:
        for chunk in cluster.log_stream(ns, pod):
            out.write(chunk)
            out.flush()
    except DockrunError as e:  # the pod went before its log was read: say so, the outcome still counts
        err.write(f"dockrun: the output of pod {pod} could not be read: {printable(str(e))}\n".encode())
        err.flush()


def _watch_driver(pid: int, token: str | None, end_job: Callable[[str], None], ending: list[str]) -> None:
    while not ending:
        if not alive(pid, token):
            end_job("the driver process vanished")
            return
        time.sleep(POLL_DRIVER_S)


def main(argv: list[str] | None = None) -> None:
    from .cluster import Cluster

    ap = argparse.ArgumentParser(prog="python -m dockrun.backends.kubernetes.watch")
    ap.add_argument("run_id")
    ap.add_argument("--home", required=True)
    ap.add_argument("--watch-driver", action="store_true")
    args = ap.parse_args(argv)
    store = RunStore(Path(args.home))
    try:
        cluster = Cluster(job_info(store.run_dir(args.run_id)).get("context"))
        watch(store, cluster, args.run_id, args.watch_driver)
    except Exception as e:  # never leave the run open: record why the watcher stopped
        record_end(store, args.run_id, "FAILED", None, f"watcher error: {e}".splitlines()[0])
        raise


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # already recorded on the run; the log is for developers
        sys.stderr.write(f"dockrun watcher: {e}\n")
        sys.exit(1)
