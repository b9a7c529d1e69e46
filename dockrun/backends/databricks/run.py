"""A run forwarded to Databricks, followed by polling ``runs/get``; its record is brought up to date
whenever someone looks."""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import IO, Any

from ...databricks_api.client import DatabricksClient
from ...databricks_api.workspace import connect
from ...errors import DockrunError
from ...store.records import ACTIVE, RunRecord, RunStore
from ..handle import RunHandle
from ..outcome import record_end

POLL_S = float(os.environ.get("DOCKRUN_DATABRICKS_POLL_S", "5"))


_STATES = {"PENDING": "SCHEDULED", "QUEUED": "SCHEDULED", "BLOCKED": "SCHEDULED", "WAITING_FOR_RETRY": "SCHEDULED",
           "RUNNING": "RUNNING", "TERMINATING": "RUNNING"}
# The documented terminal life-cycle states; only these end a run.
_TERMINAL = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
_RESULTS = {"SUCCESS": "FINISHED", "CANCELED": "KILLED"}


class DatabricksRun(RunHandle):
    """A run forwarded to Databricks, with the same interface as a local run."""

    poll_s = POLL_S

    def __init__(self, store: RunStore, run_id: str, client: DatabricksClient | None = None):
        super().__init__(store, run_id)
        self._client = client

    @property
    def client(self) -> DatabricksClient:
        if self._client is None:
            self._client = DatabricksClient(connect(os.environ))
        return self._client

    def record(self) -> RunRecord:
        rec = self._stored()
        if rec.over or not rec.remote_run_id:
            return rec
        state = self.client.get(rec.remote_run_id)
        life = state.get("state", {}).get("life_cycle_state", "PENDING")
        if life not in _TERMINAL:  # a state added after this was written is not an ending
            if _STATES.get(life) == "RUNNING":
                self._store.transition(self.run_id, "RUNNING", ("SCHEDULED",), started=time.time())
            return self._store.get(self.run_id) or rec
        result = state.get("state", {}).get("result_state", "FAILED")
        self._save_logs(state)
        status = _RESULTS.get(result, "FAILED")
        reason = None if status == "FINISHED" else (state.get("state", {}).get("state_message") or result)
        record_end(self._store, self.run_id, status, 0 if status == "FINISHED" else None, reason)
        return self._store.get(self.run_id) or rec

    def _save_logs(self, state: Mapping[str, Any]) -> None:
        tasks = state.get("tasks") or []
        if not tasks:
            return
        try:
            out = self.client.output(str(tasks[0]["run_id"]))
        except DockrunError:
            return
        run_dir = self._store.run_dir(self.run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "stdout.log").write_text(out.get("logs", ""))
        (run_dir / "stderr.log").write_text((out.get("error") or "") + ("\n" if out.get("error") else ""))

    def cancel(self) -> None:
        rec = self.record()
        if rec.over:
            return
        self._store.transition(self.run_id, "KILLED", ACTIVE, reason="cancelled")
        self.client.cancel(rec.remote_run_id or "0")
        self.wait()

    def follow(self, out: IO[bytes], err: IO[bytes], follow: bool = True) -> RunRecord:
        """Databricks gives a task's output when it has ended: wait, then print it."""
        rec = self.record()
        while follow and not rec.over:
            time.sleep(POLL_S)
            rec = self.record()
        run_dir = self._store.run_dir(self.run_id)
        for name, sink in (("stdout.log", out), ("stderr.log", err)):
            if (run_dir / name).exists():
                sink.write((run_dir / name).read_bytes())
                sink.flush()
        return rec
