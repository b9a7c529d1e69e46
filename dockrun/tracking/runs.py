"""Start and end the MLflow run of a dockrun run, whichever way the target is reached: the REST
adapter for a server or Databricks, MLflow's own client for a local store (imported only then)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .databricks import workspace_credentials
from .rest import MlflowRest
from .tags import RESUME_TAGS
from .target import DATABRICKS, STORE, TrackingTarget, container_env, uri_kind

Mount = tuple[str, str, str]  # host path, container path, "ro" | "rw"


@dataclass(frozen=True)
class StartedRun:
    experiment_id: str
    run_id: str
    env: Mapping[str, str]  # for the container: where to log, into which run
    mounts: tuple[Mount, ...] = ()  # a local store and the run's local artifact folder


def start_tracked_run(target: TrackingTarget, environ: Mapping[str, str], tags: Mapping[str, str],
                      params: Mapping[str, str]) -> StartedRun:
    """Create the MLflow run for a dockrun run (or resume ``--run-id``, setting only the tags
    `mlflow run` sets on a run it did not create)."""
    resume_tags = {k: v for k, v in tags.items() if k in RESUME_TAGS}
    if target.kind == STORE:
        return _start_in_store(target, environ, tags, params, resume_tags)
    workspace = None
    if target.kind == DATABRICKS:
        creds = workspace_credentials(target.uri, environ)
        rest, workspace = MlflowRest(creds.host, environ, token=creds.token), creds.as_env()
    else:
        rest = MlflowRest(target.uri, environ, userinfo=target.userinfo)
    if target.mlflow_run_id:
        run_id = target.mlflow_run_id
        experiment_id = rest.get_run(run_id)["info"]["experiment_id"]
        rest.set_tags(run_id, resume_tags)
    else:
        experiment_id = target.experiment_id or (rest.experiment_id(target.experiment_name)
                                                 if target.experiment_name else "0")
        run_id = rest.create_run(experiment_id, target.run_name, tags, params)
    return StartedRun(experiment_id, run_id, container_env(target, experiment_id, run_id, environ, workspace))


def _start_in_store(target: TrackingTarget, environ: Mapping[str, str], tags: Mapping[str, str],
                    params: Mapping[str, str], resume_tags: Mapping[str, str]) -> StartedRun:
    from . import store

    if target.mlflow_run_id:
        run_id = target.mlflow_run_id
        experiment_id, artifact_uri = store.resume_run(target.uri, run_id, resume_tags)
    else:
        experiment_id, run_id, artifact_uri = store.start_run(
            target.uri, (target.experiment_id, target.experiment_name), target.run_name, tags, params)
    store_dir = str(target.store_dir)
    # Docker would create a missing bind source as root; MLflow creates a file store's folder lazily.
    os.makedirs(store_dir, exist_ok=True)
    mounts: list[Mount] = [(store_dir, store_dir, "rw")]
    artifacts = store.local_path(artifact_uri)
    if artifacts and os.path.commonpath([artifacts, store_dir]) != store_dir:
        # `mlflow run` mounts a local artifact folder too: what the project logs stays on the host.
        os.makedirs(artifacts, exist_ok=True)
        mounts.append((artifacts, artifacts, "rw"))
    return StartedRun(experiment_id, run_id, container_env(target, experiment_id, run_id, environ), tuple(mounts))


def end_tracked_run(uri: str, run_id: str, status: str, environ: Mapping[str, str]) -> None:
    """Report a run's final status to the MLflow run recorded for it."""
    kind = uri_kind(uri)
    if kind == STORE:
        from .store import end_run

        end_run(uri, run_id, status)
    elif kind == DATABRICKS:
        creds = workspace_credentials(uri, environ)
        MlflowRest(creds.host, environ, token=creds.token).end_run(run_id, status)
    else:
        MlflowRest(uri, environ).end_run(run_id, status)
