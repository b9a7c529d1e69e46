"""Where a run is tracked, decided from the user's options and environment (pure).

A tracking URI on localhost is reachable from the container only through the host's network, so
such runs get ``network_mode=host`` (unless the user chose a network with ``-A network=...``):
`mlflow run` users know the other outcome.
"""
from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
AUTH_VARS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
             "MLFLOW_TRACKING_INSECURE_TLS")


@dataclass(frozen=True)
class TrackingTarget:
    uri: str
    experiment_id: str | None
    experiment_name: str | None
    run_name: str | None
    host_network: bool  # the server is on the host's loopback
    mlflow_run_id: str | None = None  # log into this existing MLflow run (`--run-id`)


def tracking_target(
    tracking_uri: str | None,
    experiment_name: str | None,
    experiment_id: str | None,
    run_name: str | None,
    environ: Mapping[str, str],
    mlflow_run_id: str | None = None,
) -> TrackingTarget | None:
    """Tracking is on when a tracking URI is given (option or MLFLOW_TRACKING_URI)."""
    uri = tracking_uri or environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        if experiment_name or experiment_id or mlflow_run_id:
            raise ConfigError("--experiment-name/--experiment-id/--run-id need a tracking server: give "
                              "--tracking-uri or set MLFLOW_TRACKING_URI")
        return None
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        if not tracking_uri:
            return None  # a local store in the environment (file:, sqlite:) is not a server to report to
        raise ConfigError(f"--tracking-uri {uri!r}: expected an http(s):// MLflow tracking server "
                          "(run `mlflow server` for a local store and pass its URL)")
    if experiment_name and experiment_id:
        raise ConfigError("give --experiment-name or --experiment-id, not both")
    return TrackingTarget(uri.rstrip("/"), experiment_id, experiment_name or environ.get("MLFLOW_EXPERIMENT_NAME"),
                          run_name, (parsed.hostname or "") in LOCAL_HOSTS, mlflow_run_id)


def container_env(target: TrackingTarget, experiment_id: str, mlflow_run_id: str,
                  environ: Mapping[str, str]) -> dict[str, str]:
    env = {"MLFLOW_TRACKING_URI": target.uri, "MLFLOW_RUN_ID": mlflow_run_id, "MLFLOW_EXPERIMENT_ID": experiment_id}
    env.update({k: environ[k] for k in AUTH_VARS if environ.get(k)})
    return env
