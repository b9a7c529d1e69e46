"""Start and end the MLflow run of a dockrun run, whichever way the target is reached: the REST
adapter for a server or Databricks, MLflow's own client for a local store (imported only then).

Every backend starts its runs' MLflow runs the same way, through ``start_project_run``: the tags
and params `mlflow run` logs, then the run created (or resumed), and back one ``Tracked``: what the
run's record keeps and what its task needs to log into it."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..project.source import Source
from ..project.spec import EntryPoint
from .tags import RESUME_TAGS, logged_params, login_name, project_tags
from .target import DATABRICKS, STORE, TrackingTarget, container_env, uri_kind

Mount = tuple[str, str, str]  # host path, container path, "ro" | "rw"
# What a task needs when it runs inside the tracking workspace and logs with the runtime's own credentials.
WHERE_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")


@dataclass(frozen=True)
class ProjectRun:
    """What MLflow is told about a dockrun run, as `mlflow run` tells it."""

    run_id: str  # dockrun's
    source: Source
    entry_point: EntryPoint
    parameters: Mapping[str, object]  # as the user gave them
    mlflow_env: str  # MLflow's name for the environment (EnvSpec.mlflow_env)
    backend: str  # mlflow.project.backend
    image: str = ""  # the image's reference and ID: none where the run has no image (nor image tags)
    image_id: str = ""


@dataclass(frozen=True)
class Tracked:
    """A dockrun run's MLflow run, as its record and its task see it (not tracked: all empty)."""

    uri: str | None = None  # where the run's end is reported
    experiment_id: str | None = None
    run_id: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # for the task: where to log, into which run
    mounts: tuple[Mount, ...] = ()  # a local store and the run's local artifact folder

    @property
    def record(self) -> dict[str, str | None]:
        """The run record's fields for it."""
        return {"tracking_uri": self.uri, "mlflow_run_id": self.run_id, "experiment_id": self.experiment_id}


def start_project_run(target: TrackingTarget | None, run: ProjectRun, environ: Mapping[str, str],
                      credentials: bool = True) -> Tracked:
    """The one start of a dockrun run's MLflow run (every backend's): created (or ``--run-id``
    resumed) with `mlflow run`'s tags and params; nothing when the run is not tracked. Without
    ``credentials`` (a task that runs in the tracking workspace itself and logs with its runtime's
    own) the task is told where and into which run, and nothing more."""
    if target is None:
        return Tracked()
    tags = project_tags(run.source, run.entry_point.name, run.mlflow_env, run.image, run.image_id, login_name(),
                        run.run_id)
    tags["mlflow.project.backend"] = run.backend
    tags = {k: v for k, v in tags.items() if v or not k.startswith("mlflow.docker.")}  # no image, no image tags
    tracked = start_tracked_run(target, environ, tags, logged_params(run.entry_point, run.parameters))
    if credentials:
        return tracked
    return Tracked(tracked.uri, tracked.experiment_id, tracked.run_id, {k: tracked.env[k] for k in WHERE_VARS})


def start_tracked_run(target: TrackingTarget, environ: Mapping[str, str], tags: Mapping[str, str],
                      params: Mapping[str, str]) -> Tracked:
    """Create the MLflow run for a dockrun run (or resume ``--run-id``, setting only the tags
    `mlflow run` sets on a run it did not create)."""
    from .databricks import workspace_credentials  # here: a run that is not tracked imports no adapter
    from .rest import MlflowRest

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
    return Tracked(target.uri, experiment_id, run_id, container_env(target, experiment_id, run_id, environ, workspace))


def _start_in_store(target: TrackingTarget, environ: Mapping[str, str], tags: Mapping[str, str],
                    params: Mapping[str, str], resume_tags: Mapping[str, str]) -> Tracked:
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
    return Tracked(target.uri, experiment_id, run_id, container_env(target, experiment_id, run_id, environ),
                   tuple(mounts))


def end_tracked_run(uri: str, run_id: str, status: str, environ: Mapping[str, str]) -> None:
    """Report a run's final status to the MLflow run recorded for it."""
    from .databricks import workspace_credentials
    from .rest import MlflowRest

    kind = uri_kind(uri)
    if kind == STORE:
        from .store import end_run

        end_run(uri, run_id, status)
    elif kind == DATABRICKS:
        creds = workspace_credentials(uri, environ)
        MlflowRest(creds.host, environ, token=creds.token).end_run(run_id, status)
    else:
        MlflowRest(uri, environ).end_run(run_id, status)
