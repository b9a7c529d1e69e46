"""A run forwarded to Databricks, followed by polling ``runs/get``; its record is brought up to date
whenever someone looks."""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import IO, Any

from ...config import seconds
from ...databricks_api.client import DatabricksClient
from ...databricks_api.workspace import connect
from ...errors import DockrunError
from ...store.records import ACTIVE, RunRecord, RunStore
from ...terminal import printable_lines
from ..handle import RunHandle
from ..outcome import record_end
from .launcher import EXITED

POLL_S = seconds("DOCKRUN_DATABRICKS_POLL_S")


_STATES = {"PENDING": "SCHEDULED", "QUEUED": "SCHEDULED", "BLOCKED": "SCHEDULED", "WAITING_FOR_RETRY": "SCHEDULED",
           "RUNNING": "RUNNING", "TERMINATING": "RUNNING"}
# The documented terminal life-cycle states; only these end a run.
_TERMINAL = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
_RESULTS = {"SUCCESS": "FINISHED", "CANCELED": "KILLED"}
LOGS_KEPT = "5 MB"  # runs/get-output: "Databricks restricts this API to return the last 5 MB of these logs"
# Termination codes that say only "the code failed": the exit code or the error says more.
_PLAIN_FAILURES = frozenset({"RUN_EXECUTION_ERROR", "SUCCESS"})


def exit_code(logs: str) -> int | None:
    """The failed command's exit code, from the launcher's last line (launcher.EXITED)."""
    found = None
    for line in logs.splitlines()[-20:]:
        if line.startswith(EXITED) and line[len(EXITED):].strip().isdigit():
            found = int(line[len(EXITED):].strip())
    return found


def ended_reason(state: Mapping[str, Any], code: int | None, error: str = "") -> str:
    """One line saying why a run did not finish: the command's exit status, else Databricks' reason
    (a termination code such as LIBRARY_INSTALLATION_ERROR with its message), else the task's error."""
    details = (state.get("status") or {}).get("termination_details") or {}
    message = " ".join(str(state.get("state", {}).get("state_message") or details.get("message") or "").split())
    kind = str(details.get("code") or "")
    if code is not None:
        return f"command exited with status {code}"
    if kind and kind not in _PLAIN_FAILURES:
        return f"{kind}: {message}"[:2000] if message else kind
    last = error.strip().splitlines()[-1] if error.strip() else ""
    return last or message or str(state.get("state", {}).get("result_state") or "FAILED")


class DatabricksRun(RunHandle):
    """A run forwarded to Databricks, with the same interface as a local run."""

    poll_s = POLL_S
    cancel_summary = "cancelled in the Databricks workspace"

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
        status = _RESULTS.get(result, "FAILED")
        code, error = self._save_logs(state)
        reason = None if status == "FINISHED" else ended_reason(state, code, error)
        record_end(self._store, self.run_id, status, 0 if status == "FINISHED" else code, reason)
        return self._store.get(self.run_id) or rec

    def _save_logs(self, state: Mapping[str, Any]) -> tuple[int | None, str]:
        """The task's output as the run's logs (Databricks keeps its last 5 MB; a line on stderr says
        when the start is gone), its error and stack trace on stderr; the command's exit code, read
        from the launcher's last line, when it failed, and get-output's error."""
        tasks = state.get("tasks") or []
        if not tasks:
            return None, ""
        try:
            out = self.client.output(str(tasks[0]["run_id"]))
        except DockrunError:
            return None, ""
        logs = str(out.get("logs") or "")
        err = []
        if out.get("logs_truncated"):
            err.append(f"dockrun: Databricks keeps only the last {LOGS_KEPT} of a task's output: the start of this "
                       "run's output is not shown (write what you need to keep to $DOCKRUN_OUTPUT_DIR)")
        trace = str(out.get("error_trace") or "").rstrip()
        error = str(out.get("error") or "").rstrip()
        if trace:
            err.append(trace if error in trace else f"{error}\n{trace}")
        elif error:
            err.append(error)
        run_dir = self._store.run_dir(self.run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "stdout.log").write_text(logs)
        # The error and its trace are the workspace's words: `runs logs` prints them as they are.
        (run_dir / "stderr.log").write_text("".join(printable_lines(line) + "\n" for line in err))
        return exit_code(logs), error

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
