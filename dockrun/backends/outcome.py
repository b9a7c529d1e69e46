"""How a run ended: recorded in the run store, and reported to MLflow when the run is tracked.

Kept apart from the backends' run modules so that the supervisor, which calls it, imports only what it needs.
"""
from __future__ import annotations

import logging
import os

from ..errors import DockrunError
from ..store.records import RunStore

log = logging.getLogger("dockrun")


def record_end(store: RunStore, run_id: str, status: str, exit_code: int | None, reason: str | None) -> None:
    """Record how a run ended, then tell its MLflow run (if tracked) the final status."""
    store.finish(run_id, status, exit_code, reason)
    rec = store.get(run_id)
    if rec and rec.mlflow_run_id and rec.tracking_uri:
        try:
            from ..tracking.rest import MlflowRest

            MlflowRest(rec.tracking_uri, os.environ).end_run(rec.mlflow_run_id, rec.status)
        except DockrunError as e:  # the run's outcome is recorded here either way
            log.warning("run %s: could not report its end to MLflow: %s", run_id, e)
