"""A run's supervisor: the process that owns its container from start to removal.

The submitting process creates the container and starts ``python -m dockrun.backends.local.supervisor RUN_ID``
in a new session. The supervisor attaches, starts the container, writes its output to the run's
log files, and when the command ends records the outcome and removes the container. A detached run
therefore goes on after its CLI exits; a synchronous run's supervisor also watches its driver and
stops the container if the driver dies, so no container outlives the process that cared about it.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from ...engine.client import Docker
from ...engine.lean import connect
from ...store.liveness import alive
from ...store.records import RunStore
from ..outcome import record_end
from .files import finish_files
from .wake import notifier

POLL_DRIVER_S = 0.5


def supervise(store: RunStore, docker: Docker, run_id: str, watch_driver: bool,
              wake: Callable[[], None] = lambda: None) -> None:
    """Own the run's container until it is removed and the outcome recorded. ``wake`` tells a
    listening driver the run has started (its exit tells it the run is over)."""
    rec = store.get(run_id)
    if rec is None or rec.over:
        return
    container = docker.get_container(rec.container_id) if rec.container_id else None
    if container is None:
        record_end(store, run_id, "FAILED", None, "the run's container vanished before it started")
        return
    why: list[str] = []  # why the supervisor stopped the container, if it did

    def stop(reason: str) -> None:
        if not why:
            why.append(reason)
        docker.stop(container)

    def on_sigterm(signum: int, frame: object) -> None:  # `kill SUPERVISOR` is a cancel
        store.transition(run_id, "KILLED", ("SCHEDULED", "RUNNING"), reason="the supervisor was terminated")
        threading.Thread(target=stop, args=("terminated",), daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the driver, which cancels
    current = store.get(run_id)
    if current is None or current.status != "SCHEDULED":  # cancelled while being submitted
        docker.remove(container)
        record_end(store, run_id, current.status if current else "KILLED", None, "cancelled before it started")
        return
    exit_code: int | None = None
    try:
        run_dir = store.run_dir(run_id)
        with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
            stream = docker.stream_output(container)  # attach before start: no output is lost
            container.start()
            if not store.transition(run_id, "RUNNING", ("SCHEDULED",), started=time.time()):
                stop("cancelled before it started")
            wake()
            if watch_driver and rec.driver_pid:
                threading.Thread(target=_watch_driver, args=(rec.driver_pid, rec.driver_start, stop, why),
                                 daemon=True).start()
            for chunk_out, chunk_err in stream:
                if chunk_out:
                    out.write(chunk_out)
                    out.flush()
                if chunk_err:
                    err.write(chunk_err)
                    err.flush()
        exit_code = int(container.wait().get("StatusCode", 1))
    except Exception as e:  # the engine failed us: record it, never leave the run open
        docker.stop_and_remove(container)
        try:
            finish_files(docker, None, store.run_dir(run_id), ok=False)  # what it wrote, into place
        finally:
            record_end(store, run_id, "FAILED", exit_code, f"supervisor error: {e}".splitlines()[0])
        raise
    # Its outputs come back (a remote engine's run, before the container goes) and are put in
    # place, whatever the outcome, before the end is recorded: a run that is over has its files
    # where they belong. A copy or move that failed fails the run, saying why.
    ok = exit_code == 0 and not why
    lost = finish_files(docker, container, store.run_dir(run_id), ok)
    docker.remove(container)  # it has exited: no stop needed
    if why and why[0] == "driver vanished":
        record_end(store, run_id, "FAILED", exit_code, "the driver process vanished; the container was stopped")
    elif exit_code == 0 and not lost:
        record_end(store, run_id, "FINISHED", 0, None)
    elif exit_code == 0:
        record_end(store, run_id, "FAILED", 0, f"the command succeeded, but {lost}")
    else:
        record_end(store, run_id, "FAILED", exit_code,
                   f"command exited with status {exit_code}" + (f"; {lost}" if lost else ""))


def _watch_driver(pid: int, token: str | None, stop, why: list[str]) -> None:  # noqa: ANN001
    while not why:
        if not alive(pid, token):
            stop("driver vanished")
            return
        time.sleep(POLL_DRIVER_S)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m dockrun.backends.local.supervisor")
    ap.add_argument("run_id")
    ap.add_argument("--home", required=True)
    ap.add_argument("--watch-driver", action="store_true")
    args = ap.parse_args(argv)
    store = RunStore(Path(args.home))
    # Opened before anything is recorded, closed after everything is: the close (or this process's
    # end, however it ends) is the driver's last wake.
    wake = notifier(store.run_dir(args.run_id))
    try:
        supervise(store, connect(ping=False), args.run_id, args.watch_driver, wake.poke)
    finally:
        wake.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # already recorded on the run; the log is for developers
        sys.stderr.write(f"dockrun supervisor: {e}\n")
        sys.exit(1)
