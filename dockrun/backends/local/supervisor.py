"""A local run's supervisor: what the run's owner (``backends/owner.py``) does for a container,
from its start to its removal.

The submitting process creates the container and starts the owner (``owner local RUN_ID``) in a new
session. The supervisor attaches, starts the container, writes its output to the run's log files,
and when the command ends records the outcome and removes the container. A detached run therefore
goes on after its CLI exits; a synchronous run's owner also watches its driver and has the
container stopped if the driver dies, so no container outlives the process that cared about it.
"""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

from ...engine.client import Docker
from ...engine.lean import connect
from ...store.records import RunStore
from ..outcome import record_end
from .files import finish_files
from .wake import notifier


@contextmanager
def supervised(store: RunStore, run_id: str) -> Iterator[Supervisor]:
    """The run's container as its owner follows it (an ``owner.Owned``)."""
    # Opened before anything is recorded, closed after everything is: the close (or this process's
    # end, however it ends) is the driver's last wake.
    wake = notifier(store.run_dir(run_id))
    try:
        yield Supervisor(store, connect(ping=False), run_id, wake.poke)
    finally:
        wake.close()


class Supervisor:
    """Owns the run's container until it is removed and the outcome recorded. ``wake`` tells a
    listening driver the run has started (the owner's exit tells it the run is over)."""

    def __init__(self, store: RunStore, docker: Docker, run_id: str, wake: Callable[[], None] = lambda: None):
        self.store, self.docker, self.run_id, self.wake = store, docker, run_id, wake
        self.container: Any = None
        self.why: list[str] = []  # why the container was stopped before its command ended, if it was
        self.outside = False  # ... by the owner (the driver vanished), not by a cancel
        rec = store.get(run_id)
        self.driver = (rec.driver_pid, rec.driver_start) if rec and rec.driver_pid else None

    def stop(self, reason: str) -> None:
        """The owner stops the run (its driver vanished): the end says so."""
        self.outside = not self.why
        self._halt(reason)

    def _halt(self, reason: str) -> None:
        if not self.why:
            self.why.append(reason)
        self.docker.stop(self.container)

    def follow(self, under_way: Callable[[], None]) -> None:
        store, docker, run_id = self.store, self.docker, self.run_id
        rec = store.get(run_id)
        if rec is None or rec.over:
            return
        container = docker.get_container(rec.container_id) if rec.container_id else None
        if container is None:
            record_end(store, run_id, "FAILED", None, "the run's container vanished before it started")
            return
        self.container = container

        def on_sigterm(signum: int, frame: object) -> None:  # `kill SUPERVISOR` is a cancel
            store.transition(run_id, "KILLED", ("SCHEDULED", "RUNNING"), reason="the supervisor was terminated")
            threading.Thread(target=self._halt, args=("terminated",), daemon=True).start()

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
                    self._halt("cancelled before it started")
                self.wake()
                under_way()
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
        self._end(exit_code)

    def _end(self, exit_code: int) -> None:
        # Its outputs come back (a remote engine's run, before the container goes) and are put in
        # place, whatever the outcome, before the end is recorded: a run that is over has its files
        # where they belong. A copy or move that failed fails the run, saying why.
        store, run_id, container = self.store, self.run_id, self.container
        ok = exit_code == 0 and not self.why
        lost = finish_files(self.docker, container, store.run_dir(run_id), ok)
        self.docker.remove(container)  # it has exited: no stop needed
        if self.outside:
            record_end(store, run_id, "FAILED", exit_code, f"{self.why[0]}; the container was stopped")
        elif exit_code == 0 and not lost:
            record_end(store, run_id, "FINISHED", 0, None)
        elif exit_code == 0:
            record_end(store, run_id, "FAILED", 0, f"the command succeeded, but {lost}")
        else:
            record_end(store, run_id, "FAILED", exit_code,
                       f"command exited with status {exit_code}" + (f"; {lost}" if lost else ""))
