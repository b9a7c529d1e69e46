"""What every submitted run offers (the API's SubmittedRun), whatever runs it: subclasses say how
to bring the record up to date (``record``), cancel and follow."""
from __future__ import annotations

import time

from .errors import DockrunError
from .records import RunRecord, RunStore


class RunNotFound(DockrunError):
    """No run has that ID."""


class RunHandle:
    poll_s = 0.025

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.run_id!r})"
