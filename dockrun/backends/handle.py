"""What every submitted run offers (the API's SubmittedRun), whatever runs it: subclasses say how
to bring the record up to date (``record``), cancel and follow. Also what every backend shares:
the SCHEDULED record a run starts with, the error for a run that did not finish, and holding off
signals while cleaning up."""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from ..errors import DockrunError, ExecutionError
from ..options import kept_options
from ..store.records import RunRecord, RunStore

if TYPE_CHECKING:
    from ..request import PreparedRun, RunRequest


class RunNotFound(DockrunError):
    """No run has that ID."""


class RunHandle:
    poll_s = 0.025
    # What ``cancel`` does, as the end of "run X was ...": said when Ctrl-C cancels a run.
    cancel_summary = "cancelled"

    def __init__(self, store: RunStore, run_id: str):
        self._store = store
        self.run_id = run_id

    def _stored(self) -> RunRecord:
        rec = self._store.get(self.run_id)
        if rec is None:
            raise RunNotFound(f"run {self.run_id!r}: no such run in {self._store.path}")
        return rec

    def record(self) -> RunRecord:
        return self._stored()

    @property
    def outputs(self) -> str:
        return self.record().outputs

    @property
    def exit_code(self) -> int | None:
        return self.record().exit_code

    def get_status(self) -> str:
        return self.record().status

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run is over (nothing of it left running); True if it FINISHED."""
        deadline = None if timeout is None else time.monotonic() + timeout
        rec = self.record()
        while not rec.over:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.run_id} still {rec.status} after {timeout} s")
            time.sleep(self.poll_s)
            rec = self.record()
        return rec.status == "FINISHED"

    def cancel(self) -> None:
        raise NotImplementedError

    def follow(self, out: IO[bytes], err: IO[bytes], follow: bool = True) -> RunRecord:
        """Copy the run's output to ``out``/``err``; with ``follow``, until the run is over."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.run_id!r})"


def follow_logs(handle: RunHandle, run_dir: Path, sinks: tuple[IO[bytes], IO[bytes]], follow: bool,
                pause: Callable[[], None]) -> RunRecord:
    """Copy a run's stdout.log and stderr.log to ``sinks`` as they grow, until the run is over
    (or once, without ``follow``); ``pause`` waits between looks."""
    files = [(run_dir / "stdout.log", sinks[0]), (run_dir / "stderr.log", sinks[1])]
    offsets = [0, 0]
    while True:
        rec = handle.record()
        for i, (path, sink) in enumerate(files):
            offsets[i] = copy_new(path, offsets[i], sink)
        if rec.over or not follow:
            return rec
        pause()


def copy_new(path: Path, offset: int, sink: IO[bytes]) -> int:
    """Copy what was appended to a run's log file since ``offset`` to ``sink``; the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    if data:
        sink.write(data)
        sink.flush()
    return offset + len(data)


def new_record(prepared: PreparedRun, run_id: str, outputs: str) -> RunRecord:
    """The SCHEDULED record every backend starts a run with."""
    source = prepared.source
    return RunRecord(
        run_id=run_id, status="SCHEDULED", created=time.time(), uri=source.uri, commit_sha=source.commit,
        dirty=source.dirty, source_key=source.key, subdirectory=source.subdirectory, project=prepared.project.name,
        entry_point=prepared.entry_point.name, parameters=dict(prepared.rendered.values),
        command=prepared.rendered.command, image="", env_key=prepared.image.env_key, outputs=outputs,
        backend=prepared.request.backend, options=_without_credentials(rerun_options(prepared.request), prepared),
        rerun_of=prepared.request.rerun_of)


def _without_credentials(options: dict[str, Any], prepared: PreparedRun) -> dict[str, Any]:
    """No credentials in the record (`runs show` prints it, a record file travels): a value dockrun
    downloaded (the command got the local copy) is kept without the URL's userinfo and query, which
    a rerun asks for again; a docker variable without its value."""
    from ..httpauth import redact
    from .local.docker_args import without_values

    out = dict(options)
    if options.get("parameters"):
        values = prepared.rendered.values
        out["parameters"] = {k: redact(v) if isinstance(v, str) and k in values and values[k] != v and redact(v) != v
                             else v for k, v in options["parameters"].items()}
    if options.get("docker_args"):
        out["docker_args"] = without_values(options["docker_args"])
    return out


# What a rerun repeats besides the source and entry point (which have columns of their own): the
# parameters as the user gave them (the column has them as substituted, defaults included) and
# the folder relative paths were taken from. Only what was given: a default is the default of the
# dockrun that reruns.
def rerun_options(request: RunRequest) -> dict[str, Any]:
    """What a run's record keeps of its request for a rerun (the option table says which)."""
    return kept_options(request, "rerun")


def ended_error(rec: RunRecord) -> ExecutionError:
    return ExecutionError(f"run {rec.run_id} {rec.status}: {rec.reason or rec.status.lower()}",
                          run_id=rec.run_id, exit_status=rec.exit_code)


@contextmanager
def shielded() -> Iterator[None]:
    """Hold off SIGINT/SIGTERM while cleaning up, so a second Ctrl-C cannot leave a container."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
