"""Starting supervisors cheaply.

``fork_supervisor`` double-forks the calling (single-threaded) process into a supervisor in its own
session: milliseconds, and docker-py is already imported. A threaded caller must not fork (another
thread may hold a lock the child would inherit locked), so it talks to a fork server: one helper
process per driver, ``python -m dockrun.backends.local.launch``, single-threaded, which forks supervisors on
request and exits when its driver closes the pipe (the same idea as multiprocessing's forkserver).
"""
from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ExecutionError
from ..module_command import module_command
from ..owner import owner_args

if TYPE_CHECKING:
    import subprocess


def start_owner(backend: str, home: Path, run_id: str, attached: bool, run_dir: Path) -> int:
    """Start the run's owner (``backends/owner.py``, for any backend) in a new session (Ctrl-C in
    the driver's terminal reaches the driver, which cancels cleanly) and return its pid. A
    single-threaded caller (the CLI) forks it directly; a threaded one (a sweep driver) cannot fork
    safely, and asks its fork server (a single-threaded helper process, started once) to fork it.
    Either way a run costs milliseconds, not a new interpreter."""
    args = owner_args(backend, run_id, home, attached)
    if hasattr(os, "fork") and threading.active_count() == 1:
        return fork_supervisor(args, run_dir)
    return fork_server().start(args, run_dir)


def fork_supervisor(args: dict[str, Any], run_dir: Path) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    # A collection in the child just after the fork would write to most of the parent's objects and
    # so copy most of its memory, page by page, on the way to the container's start (about 15 ms).
    # Frozen objects are never collected; the parent unfreezes its own at once.
    gc.freeze()
    pid = -1
    try:
        pid = os.fork()
    finally:
        if pid != 0:  # the parent, or a fork that failed
            gc.unfreeze()
    if pid == 0:  # the intermediate child: a new session, then fork again so init reaps the supervisor
        code = 1
        try:
            os.close(read_end)
            os.setsid()
            code = 0 if os.fork() else _be_supervisor(args, run_dir, write_end)
        finally:
            os._exit(code)
    os.close(write_end)
    os.waitpid(pid, 0)
    data = b""
    while select.select([read_end], [], [], 10)[0]:
        chunk = os.read(read_end, 64)
        if not chunk:
            break
        data += chunk
    os.close(read_end)
    if not data:
        raise ExecutionError("the run's supervisor did not start")
    return int(data)


def _be_supervisor(args: dict[str, Any], run_dir: Path, report_fd: int) -> int:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # the parent blocked them while starting us
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    os.write(report_fd, str(os.getpid()).encode())
    os.close(report_fd)
    log = os.open(run_dir / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    # Nothing of the driver's stays open here: its sockets, files, and the fork server's pipes
    # (which must see EOF when the driver exits).
    os.closerange(3, _max_fd())
    # The driver's objects that owned those descriptors (an ssh engine's pipes, sockets) must never
    # be collected here: their finalizers would close descriptor numbers that now belong to this
    # process's own files (the run's logs).
    gc.freeze()
    try:
        from ..owner import run_owner

        run_owner(**args)
        return 0
    except BaseException:  # noqa: BLE001 - reported in the log; the run itself is reconciled
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        return 1


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 4096


class ForkServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None

    def _ensure(self) -> subprocess.Popen:
        import subprocess  # here: a CLI's run forks its owner itself

        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                module_command("dockrun.backends.local.launch"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True, text=True, bufsize=1)
        return self.proc

    def start(self, args: dict[str, Any], run_dir: Path) -> int:
        with self.lock:
            proc = self._ensure()
            try:
                proc.stdin.write(json.dumps({"args": args, "run_dir": str(run_dir)}) + "\n")
                proc.stdin.flush()
                answer = json.loads(proc.stdout.readline() or "{}")
            except (OSError, ValueError):
                answer = {}
        if "pid" not in answer:
            raise ExecutionError(f"the run's supervisor did not start: {answer.get('error', 'fork server gone')}")
        return int(answer["pid"])


_server: ForkServer | None = None
_server_lock = threading.Lock()


def fork_server() -> ForkServer:
    """This process's fork server (one per driver process, like a connection pool)."""
    global _server
    with _server_lock:
        if _server is None:
            _server = ForkServer()
        return _server


def main() -> None:
    """The fork server: read requests, fork supervisors, answer with their pids; stop at EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    from ...engine.address import local_socket
    from ...engine.client import _docker
    from .. import owner  # noqa: F401 - imported once here, so every fork starts warm
    from . import supervisor  # noqa: F401

    if not local_socket(os.environ):  # the lean client needs no docker-py; any other engine does
        _docker()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            answer = {"pid": fork_supervisor(req["args"], Path(req["run_dir"]))}
        except Exception as e:  # noqa: BLE001 - reported to the driver, which fails that run
            answer = {"error": str(e).splitlines()[0] if str(e) else type(e).__name__}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
