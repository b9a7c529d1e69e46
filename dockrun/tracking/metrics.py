"""The metrics an MLflow run logged, read back for a sweep's table: each metric's latest value,
from wherever the run was tracked (a local store through MLflow's own client, a server or
Databricks through the REST adapter)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from .databricks import workspace_credentials
from .rest import MlflowRest
from .target import DATABRICKS, STORE, uri_kind


def metrics_reader(uri: str, environ: Mapping[str, str]) -> Callable[[str], dict[str, float]]:
    """A function of an MLflow run ID at ``uri`` giving ``{key: latest value}`` of its metrics; the
    store or server is reached once per reader (a workspace's credentials resolved once, for every
    run of a sweep). It, or the reader, raises ConfigError if the store or server cannot be read."""
    kind = uri_kind(uri)
    if kind == STORE:
        from .store import run_metrics

        return lambda run_id: run_metrics(uri, run_id)
    if kind == DATABRICKS:
        creds = workspace_credentials(uri, environ)
        rest = MlflowRest(creds.host, environ, token=creds.token)
    else:
        rest = MlflowRest(uri, environ)
    return lambda run_id: _numbers(rest.get_run(run_id).get("data", {}).get("metrics", []))


def logged_metrics(uri: str, run_id: str, environ: Mapping[str, str]) -> dict[str, float]:
    """``{key: latest value}`` of the MLflow run ``run_id`` at ``uri``."""
    return metrics_reader(uri, environ)(run_id)


def _numbers(items: Any) -> dict[str, float]:
    """runs/get's ``data.metrics`` (a list of {key, value, ...}: the latest value of each key)."""
    out: dict[str, float] = {}
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            continue
        try:
            out[item["key"]] = float(item.get("value"))
        except (TypeError, ValueError):
            continue
    return out
