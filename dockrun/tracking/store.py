"""MLflow tracking into a local store (sqlite:, file:) with MLflow's own client (adapter).

MLflow is imported only here and only when a run is tracked into a local store: `dockrun --help`
and the supervisor's imports stay light, and without the `mlflow` extra the error says what to
install.
"""
from __future__ import annotations

import contextlib
import logging
import os
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ConfigError
from .target import INSTALL_HINT


class StoreError(ConfigError):
    pass


@contextlib.contextmanager
def _one_line(uri: str) -> Iterator[None]:
    """MLflow's and SQLAlchemy's exceptions as one line naming the store."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - MLflow raises MlflowException, SQLAlchemy and OS errors
        text = str(getattr(e, "message", e)).strip().splitlines()
        if "MLFLOW_ALLOW_FILE_STORE" in str(e):
            msg = "this MLflow refuses file stores unless MLFLOW_ALLOW_FILE_STORE=true (or use sqlite:///FILE)"
        else:
            msg = (text[0] if text else type(e).__name__)[:300]
        raise StoreError(f"MLflow store {uri}: {msg}") from None


def _client(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise StoreError(f"MLflow store {uri}: needs MLflow on this machine: {INSTALL_HINT}") from None
    # The run's supervisor is forked from this process once the run is created, and a pooled SQLite
    # connection used across a fork fails ("disk I/O error"): connect per use instead. MLflow reads
    # this when it first opens a store; a caller's own choice stands.
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
    # A new store's schema migration logs a page at INFO; the user asked for a run, not that.
    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def start_run(uri: str, experiment: tuple[str | None, str | None], run_name: str | None,
              tags: Mapping[str, str], params: Mapping[str, str]) -> tuple[str, str, str]:
    """Create a run in ``experiment`` (id, name; the name created if missing, neither: Default);
    returns (experiment_id, run_id, artifact URI)."""
    experiment_id, experiment_name = experiment
    with _one_line(uri):
        client = _client(uri)
        from mlflow.entities import Param

        if experiment_name:
            experiment_id = _experiment_id(client, experiment_name)
        run = client.create_run(experiment_id or "0", tags=dict(tags), run_name=run_name)
        if params:
            client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
        return run.info.experiment_id, run.info.run_id, run.info.artifact_uri


def resume_run(uri: str, run_id: str, tags: Mapping[str, str]) -> tuple[str, str]:
    """``--run-id``: the existing run's (experiment_id, artifact URI), after setting ``tags``."""
    with _one_line(uri):
        client = _client(uri)
        from mlflow.entities import RunTag

        run = client.get_run(run_id)
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        return run.info.experiment_id, run.info.artifact_uri


def end_run(uri: str, run_id: str, status: str) -> None:
    with _one_line(uri):
        _client(uri).set_terminated(run_id, status)


def run_metrics(uri: str, run_id: str) -> dict[str, float]:
    """The latest value of each metric the run logged."""
    with _one_line(uri):
        return {k: float(v) for k, v in _client(uri).get_run(run_id).data.metrics.items()}


def _experiment_id(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # created by a concurrent run in between
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def local_path(artifact_uri: str) -> str | None:
    """The folder of a local artifact URI (which the container must see), else None."""
    parsed = urllib.parse.urlparse(artifact_uri)
    if parsed.scheme in ("", "file") and parsed.netloc in ("", "localhost"):
        return urllib.parse.unquote(parsed.path)
    return None
