"""How a run ended: reported to MLflow when the run is tracked, and recorded in the run store.

Kept apart from the backends' run modules so that the supervisor, which calls it, imports only what it needs.
"""
from __future__ import annotations

import logging
import os

from ..errors import DockrunError
from ..store.records import ACTIVE, RunStore

log = logging.getLogger("dockrun")


def record_end(store: RunStore, run_id: str, status: str, exit_code: int | None, reason: str | None) -> None:
    """Tell the run's MLflow run (if tracked) its final status, then record the end. MLflow first:
    the record's end is what everyone waits for, so a caller that sees the run over reads the final
    status in MLflow too."""
    rec = store.get(run_id)
    tracked = bool(rec and rec.mlflow_run_id and rec.tracking_uri)
    final = rec.status if rec and rec.status not in ACTIVE else status  # a cancel may have decided it
    if tracked:
        _report(rec.tracking_uri, rec.mlflow_run_id, final, run_id)
    store.finish(run_id, status, exit_code, reason)
    after = store.get(run_id)
    if tracked and after and after.status != final:  # a cancel won the race in between
        _report(rec.tracking_uri, rec.mlflow_run_id, after.status, run_id)


def _report(tracking_uri: str, mlflow_run_id: str, status: str, run_id: str) -> None:
    try:
        from ..tracking.runs import end_tracked_run  # lazy: MLflow itself only for a local store

        end_tracked_run(tracking_uri, mlflow_run_id, status, os.environ)
    except DockrunError as e:  # the run's outcome is recorded either way
        log.warning("run %s: could not report its end to MLflow: %s", run_id, e)
    except Exception as e:  # noqa: BLE001 - never keep the record from its end
        log.warning("run %s: could not report its end to MLflow: %s", run_id, type(e).__name__)
