"""Remote mode's settings, checked before anything is sent: the cluster the run goes to and where
it is tracked (pure).
The workspace and its credentials are `databricks_api.workspace`."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ...options import json_config
from ...tracking.target import DATABRICKS, TrackingTarget, redact, uri_kind

if TYPE_CHECKING:
    from ...request import RunRequest

# /Volumes/<catalog>/<schema>/<volume>, optionally a folder inside it.
VOLUME = re.compile(r"^/Volumes/[^/\s{}]+/[^/\s{}]+/[^/\s{}]+(/[^/\s{}]+)*/?$")  # no {{ }}: Databricks would substitute
# Access modes in which a cluster runs many users' code side by side (standard, formerly "shared"):
# they refuse code from the DBFS root, so the project must come from a volume.
SHARED_MODES = frozenset({"USER_ISOLATION", "DATA_SECURITY_MODE_STANDARD"})
NEEDS_VOLUME = ("name a Unity Catalog volume for the code: \"volume\": \"/Volumes/<catalog>/<schema>/<volume>\" "
                "in --backend-config")


@dataclass(frozen=True)
class Cluster:
    """Where the run goes: a new cluster spec, an existing cluster or serverless compute, plus extra
    libraries, and where the code is put."""

    new_cluster: Mapping[str, Any] | None
    existing_cluster_id: str | None
    libraries: tuple[Mapping[str, Any], ...] = ()
    timeout_seconds: int | None = None
    volume: str | None = None  # a Unity Catalog volume for the code (the Files API), else the DBFS root
    # Serverless jobs compute: {"environment_version", "dependencies"} of the task's environment.
    serverless: Mapping[str, Any] | None = None
    # The workspace has Databricks Container Services: a project's docker_env may become the new
    # cluster's docker_image (an explicit opt-in: without the feature such a cluster fails to start).
    container_services: bool = False


OWN = ("libraries", "timeout_seconds", "volume", "container_services")  # dockrun's fields beside a cluster spec
SERVERLESS = ("serverless", "environment_version", "dependencies")
SERVERLESS_VERSION = "2"  # the environment version used when -c names none


def cluster_from_config(config: Any, cwd: Path | None = None) -> Cluster:
    """``-c``: a new_cluster spec itself (as `mlflow run` takes it), {"new_cluster": {...}},
    {"existing_cluster_id": "..."}, or {"serverless": true} (with optional "environment_version" and
    "dependencies", pip requirement lines); each with optional "libraries" (classic clusters),
    "timeout_seconds" and "volume". A JSON file is found from ``cwd``."""
    config, _ = json_config(config, cwd)
    if not isinstance(config, dict) or not config:
        raise ConfigError("--backend-config: expected a JSON object with a cluster spec (spark_version, "
                          "node_type_id, num_workers), {\"existing_cluster_id\": ...} or {\"serverless\": true}")
    if not (config.keys() & {"new_cluster", "existing_cluster_id", "serverless"}):  # mlflow run's form
        ours = (*OWN, *SERVERLESS)
        config = {"new_cluster": {k: v for k, v in config.items() if k not in ours},
                  **{k: v for k, v in config.items() if k in ours}}
    unknown = set(config) - {"new_cluster", "existing_cluster_id", *OWN, *SERVERLESS}
    if unknown:
        raise ConfigError(f"--backend-config: unknown field(s) {', '.join(sorted(unknown))}")
    volume = _volume(config.get("volume"))
    timeout = config.get("timeout_seconds")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0):
        raise ConfigError(f"--backend-config: timeout_seconds: expected a whole number of seconds, got {timeout!r}")
    containers = config.get("container_services", False)
    if not isinstance(containers, bool):
        raise ConfigError(f"--backend-config: container_services: expected true or false, got {containers!r}")
    serverless = _serverless(config, volume)
    if serverless is not None:
        if containers:
            raise ConfigError("--backend-config: container_services: serverless compute runs no container image")
        return Cluster(None, None, (), timeout, volume, serverless)
    if ("new_cluster" in config) == ("existing_cluster_id" in config):
        raise ConfigError("--backend-config: give new_cluster or existing_cluster_id, not both")
    new = config.get("new_cluster")
    if new is not None:
        if not isinstance(new, dict) or "spark_version" not in new:
            raise ConfigError("--backend-config: new_cluster.spark_version is required")
        if not (new.keys() & {"node_type_id", "instance_pool_id"}):
            raise ConfigError("--backend-config: new_cluster needs node_type_id or instance_pool_id")
        if not (new.keys() & {"num_workers", "autoscale"}):
            raise ConfigError("--backend-config: new_cluster needs num_workers or autoscale")
    if new is not None and new.get("data_security_mode") in SHARED_MODES and volume is None:
        raise ConfigError(f"--backend-config: new_cluster.data_security_mode {new['data_security_mode']} (standard, "
                          f"shared access) runs no code from the DBFS root: {NEEDS_VOLUME}")
    libraries = config.get("libraries") or []
    if not isinstance(libraries, list) or not all(isinstance(x, dict) for x in libraries):
        raise ConfigError("--backend-config: libraries: expected a list of library objects")
    return Cluster(new, config.get("existing_cluster_id"), tuple(libraries), timeout, volume,
                   container_services=containers)


def check_docker_env(cluster: Cluster, env_kind: str) -> None:
    """A project's docker_env runs only as a new cluster's image, and only where the user says the
    workspace has Databricks Container Services (dockrun cannot ask)."""
    if env_kind != "docker":
        return
    if cluster.serverless is not None:
        raise ConfigError("--backend-config: serverless compute runs no container image: the project's "
                          "docker_env needs a cluster (new_cluster with Databricks Container Services)")
    if cluster.new_cluster is None:
        raise ConfigError("--backend-config: the project's docker_env needs a new_cluster: an existing cluster "
                          "runs the image it was started with")
    if not cluster.container_services:
        raise ConfigError("--backend-config: the project's docker_env runs on Databricks only with Databricks "
                          "Container Services: enable it for the workspace and add \"container_services\": true "
                          "(the image must be built for it, e.g. FROM databricksruntime/standard)")


def _serverless(config: Mapping[str, Any], volume: str | None) -> Mapping[str, Any] | None:
    """Serverless jobs compute: the task's environment (version, pip dependencies) instead of a
    cluster and its libraries. None when -c names a cluster."""
    if "serverless" not in config:
        stray = [k for k in SERVERLESS if k in config]
        if stray:
            raise ConfigError(f"--backend-config: {stray[0]} is for serverless compute: add \"serverless\": true")
        return None
    if config["serverless"] is not True:
        raise ConfigError(f"--backend-config: serverless: expected true, got {config['serverless']!r}")
    clash = [k for k in ("new_cluster", "existing_cluster_id", "libraries") if k in config]
    if clash:
        hint = " (serverless takes pip requirements as \"dependencies\")" if clash[0] == "libraries" else ""
        raise ConfigError(f"--backend-config: serverless compute has no {clash[0]}{hint}")
    if volume is None:  # serverless compute runs in standard access mode: no code from the DBFS root
        raise ConfigError(f"--backend-config: serverless compute runs no code from the DBFS root: {NEEDS_VOLUME}")
    version = config.get("environment_version", SERVERLESS_VERSION)
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not version.isdigit():
        raise ConfigError(f"--backend-config: environment_version: expected a version number such as \"2\", "
                          f"got {version!r}")
    dependencies = config.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) and d.strip() for d in dependencies):
        raise ConfigError("--backend-config: dependencies: expected a list of pip requirement lines")
    return {"environment_version": version, "dependencies": tuple(dependencies)}


def _volume(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not VOLUME.match(value) or "/../" in value + "/" or "/./" in value + "/":
        raise ConfigError(f"--backend-config: volume: expected a Unity Catalog volume path such as "
                          f"/Volumes/main/ml/dockrun, got {value!r}")
    return value.rstrip("/")


ENV_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")


def remote_tracking(request: RunRequest, environ: Mapping[str, str]) -> tuple[TrackingTarget | None, str]:
    """Where a run on Databricks is tracked: in its workspace's MLflow (as `mlflow run -b databricks`;
    the task logs with MLFLOW_TRACKING_URI=databricks, the runtime's own credentials), or nowhere.
    Tracked when --tracking-uri or MLFLOW_TRACKING_URI is databricks[://PROFILE], or an experiment, run
    name or MLflow run is given as an option. (target or None, a line to show when environment
    settings are left aside)."""
    uri = request.tracking_uri
    if uri and uri_kind(uri) != DATABRICKS:
        raise ConfigError(f"--tracking-uri {redact(uri)}: a run on Databricks is tracked in its workspace's MLflow: "
                          "expected databricks (or databricks://PROFILE, of the same workspace)")
    env_uri = environ.get("MLFLOW_TRACKING_URI") or ""
    uri = uri or (env_uri if uri_kind(env_uri or "x") == DATABRICKS else None)
    asked = bool(uri or request.experiment_name or request.experiment_id or request.run_name or request.mlflow_run_id)
    name, experiment_id = request.experiment_name, request.experiment_id
    if not (name or experiment_id):  # as MLflow: the options first, then the environment
        name = environ.get("MLFLOW_EXPERIMENT_NAME") or None
        experiment_id = None if name else environ.get("MLFLOW_EXPERIMENT_ID") or None
    if not asked:
        set_vars = [v for v in ENV_VARS if environ.get(v)]
        note = (f"{', '.join(set_vars)} set, but not for a Databricks workspace: this run is not tracked (give "
                "--experiment-name /Users/<you>/<experiment> to track it in the workspace's MLflow)")
        return None, note if set_vars else ""
    if not (name or experiment_id or request.mlflow_run_id):
        raise ConfigError("tracking on Databricks needs --experiment-name /Users/<you>/<experiment> or "
                          "--experiment-id: the workspace's MLflow has no default experiment")
    if name and not name.startswith("/"):
        raise ConfigError(f"--experiment-name {name!r}: Databricks names experiments by workspace path: expected "
                          f"an absolute path such as /Users/<you>/{name}")
    note = (f"MLFLOW_TRACKING_URI {redact(env_uri)} is not this workspace: the run is tracked in the "
            "workspace's MLflow") if env_uri and uri_kind(env_uri) != DATABRICKS else ""
    return TrackingTarget(uri or "databricks", experiment_id, name, request.run_name, False,
                          request.mlflow_run_id), note
