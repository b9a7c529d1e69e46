"""A run's owner: the one process that follows a run from its start to its recorded end, whatever
runs it (a local container, a Kubernetes Job; or every Job of a Kubernetes sweep).

It is started in its own session by the submitting process (``launch.start_owner``: forked, or
forked by the driver's fork server), so a detached run goes on after its CLI exits and Ctrl-C in
the terminal reaches the driver, which cancels. What differs per backend is passed in as an
``Owned`` (how to follow the run to its end and write that end, how to stop it, which driver
waits for it), made by the backend's context manager (which also fails the run, saying why, if
the backend's own code fails); what is the same is here: the command line, and watching a
synchronous run's driver (the run is stopped if the driver dies, so nothing outlives the process
that cared about it).

    python -m dockrun.backends.owner local|kubernetes RUN_ID --home HOME [--watch-driver]
    python -m dockrun.backends.owner kubernetes-sweep SWEEP_ID --home HOME --watch-driver
"""
from __future__ import annotations

import sys
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable, Protocol

from ..store.liveness import alive
from ..store.records import RunStore

POLL_DRIVER_S = 0.5
DRIVER_VANISHED = "the driver process vanished"
BACKENDS = ("local", "kubernetes", "kubernetes-sweep")


class Owned(Protocol):
    """One run (or a sweep's runs) as the backend follows it (local: ``local/supervisor.Supervisor``;
    Kubernetes: ``kubernetes/watch.Watcher``, a sweep's ``kubernetes/batch.SweepWatcher``)."""

    driver: tuple[int, str | None] | None  # the process that waits for the run: pid, start token

    def follow(self, under_way: Callable[[], None]) -> None:
        """Follow the run until its end is written (in the store, and in MLflow when tracked);
        call ``under_way`` once the run has started: from then on ``stop`` may be called."""

    def stop(self, reason: str) -> None:
        """End the run now (stop its container, delete its Job), saying why; its end says so.
        Called once at most, from another thread than ``follow``'s."""


def own(owned: Owned, watch_driver: bool) -> None:
    """Follow the run to its recorded end; with ``watch_driver``, stop it if its driver dies."""
    done = threading.Event()
    stopping: list[str] = []

    def stop(reason: str) -> None:
        if not stopping:
            stopping.append(reason)
            owned.stop(reason)

    def under_way() -> None:
        if watch_driver and owned.driver:
            threading.Thread(target=watch_driver_of, args=(*owned.driver, stop, done), daemon=True).start()

    try:
        owned.follow(under_way)
    finally:
        done.set()


def watch_driver_of(pid: int, token: str | None, stop: Callable[[str], None], done: threading.Event) -> None:
    """Stop the run once its driver (pid and start token) is gone, unless the run is over first."""
    while not done.wait(POLL_DRIVER_S):
        if not alive(pid, token):
            stop(DRIVER_VANISHED)
            return


def owner_args(backend: str, owned_id: str, home: Path, attached: bool) -> dict[str, Any]:
    """``run_owner``'s arguments, as JSON values (a fork server is sent them)."""
    return {"backend": backend, "owned_id": owned_id, "home": str(home), "watch_driver": attached}


def run_owner(backend: str, owned_id: str, home: str, watch_driver: bool) -> None:
    """Be the owner of run (or sweep) ``owned_id`` until its end is written."""
    store = RunStore(Path(home))
    with _backend_run(backend, store, owned_id) as owned:
        own(owned, watch_driver)


def _backend_run(backend: str, store: RunStore, owned_id: str) -> AbstractContextManager[Owned]:
    # Imported here, by name, so that the owner of a local run never imports the Kubernetes client.
    if backend == "local":
        from .local.supervisor import supervised

        return supervised(store, owned_id)
    if backend == "kubernetes-sweep":
        from .kubernetes.batch import swept

        return swept(store, owned_id)
    from .kubernetes.watch import watched

    return watched(store, owned_id)


def main(argv: list[str] | None = None) -> None:
    import argparse  # here: a forked owner is given run_owner's arguments and never parses any

    ap = argparse.ArgumentParser(prog="python -m dockrun.backends.owner")
    ap.add_argument("backend", choices=BACKENDS)
    ap.add_argument("id", help="the run's ID (a sweep's, for kubernetes-sweep)")
    ap.add_argument("--home", required=True)
    ap.add_argument("--watch-driver", action="store_true")
    args = ap.parse_args(argv)
    run_owner(args.backend, args.id, args.home, args.watch_driver)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # already recorded on the run; the log is for developers
        sys.stderr.write(f"dockrun owner: {e}\n")
        sys.exit(1)
