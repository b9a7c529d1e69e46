"""Remote mode's settings, checked before anything is sent: the cluster the run goes to (pure).
The workspace and its credentials are `databricks_api.workspace`."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError


@dataclass(frozen=True)
class Cluster:
    """Where the run goes: a new cluster spec, or an existing cluster, plus extra libraries."""

    new_cluster: Mapping[str, Any] | None
    existing_cluster_id: str | None
    libraries: tuple[Mapping[str, Any], ...] = ()
    timeout_seconds: int | None = None


def cluster_from_config(config: Any) -> Cluster:
    """``-c``: a new_cluster spec itself (as `mlflow run` takes it), or {"new_cluster": {...}} /
    {"existing_cluster_id": "..."} with optional "libraries" and "timeout_seconds"."""
    if isinstance(config, str):
        try:
            config = json.loads(Path(config).read_text() if Path(config).is_file() else config)
        except (ValueError, OSError) as e:
            raise ConfigError(f"--backend-config: not valid JSON ({e})") from None
    if not isinstance(config, dict) or not config:
        raise ConfigError("--backend-config: expected a JSON object with a cluster spec (spark_version, "
                          "node_type_id, num_workers) or {\"existing_cluster_id\": ...}")
    known = {"new_cluster", "existing_cluster_id", "libraries", "timeout_seconds"}
    if not (config.keys() & {"new_cluster", "existing_cluster_id"}):
        config = {"new_cluster": config}
    unknown = set(config) - known
    if unknown:
        raise ConfigError(f"--backend-config: unknown field(s) {', '.join(sorted(unknown))}")
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
    libraries = config.get("libraries") or []
    if not isinstance(libraries, list) or not all(isinstance(x, dict) for x in libraries):
        raise ConfigError("--backend-config: libraries: expected a list of library objects")
    return Cluster(new, config.get("existing_cluster_id"), tuple(libraries), config.get("timeout_seconds"))
