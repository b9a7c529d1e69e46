"""The metrics an MLflow run logged, read back for a sweep's table: each metric's latest value,
from wherever the run was tracked (a local store through MLflow's own client, a server or
Databricks through the REST adapter)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .databricks import workspace_credentials
from .rest import MlflowRest
from .target import DATABRICKS, STORE, uri_kind


def logged_metrics(uri: str, run_id: str, environ: Mapping[str, str]) -> dict[str, float]:
    """``{key: latest value}`` of the MLflow run ``run_id`` at ``uri``; ConfigError if the store or
    server cannot be read (its message names it)."""
    kind = uri_kind(uri)
    if kind == STORE:
        from .store import run_metrics

        return run_metrics(uri, run_id)
    if kind == DATABRICKS:
        creds = workspace_credentials(uri, environ)
        run = MlflowRest(creds.host, environ, token=creds.token).get_run(run_id)
    else:
        run = MlflowRest(uri, environ).get_run(run_id)
    return _numbers(run.get("data", {}).get("metrics", []))


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
