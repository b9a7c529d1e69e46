"""The backend seam: where a prepared run goes. A backend is a small object with a name, the
request options it honours, how it sees path parameters, what it says about tracking, and its
calls; backends are chosen by name from one registry (ARCHITECTURE.md: where to add a backend).
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..project.params import Placement
    from ..request import PreparedRun, RunRequest
    from ..store.records import RunStore
    from .handle import RunHandle

# name -> "module:attribute", imported on first use so that a local run never loads the others.
REGISTRY: Mapping[str, str] = {
    "local": "dockrun.backends.local.backend:LocalBackend",
    "databricks": "dockrun.backends.databricks.backend:DatabricksBackend",
    "kubernetes": "dockrun.backends.kubernetes.backend:KubernetesBackend",
}


class Backend(Protocol):
    name: str
    # RunRequest fields this backend acts on; setting any other is an error (prepare.check_options).
    options: frozenset[str]
    placement: Placement
    # What it says about MLflow tracking. A tracked run given no tracking URI goes to its default:
    # None is MLflow's own (prepare decides the target by MLflow's rules, tracking.target); a backend
    # with a home of its own (Databricks: its workspace) decides the whole target by that home's rules
    # in ``configure``, whose result carries it to ``submit``.
    default_tracking_uri: str | None

    def local_store_refusal(self, environ: Mapping[str, str]) -> str | None:
        """Where its runs run and what to track to instead, when a local MLflow store (a folder or
        sqlite file on this machine) cannot be reached from there; None when it can (it is mounted).
        Asked by prepare, which refuses such a store in one line."""

    def configure(self, request: RunRequest, environ: Mapping[str, str]) -> Any:
        """Check --backend-config and credentials (no side effects); the result is passed on
        to ``submit`` as ``prepared.backend_config``."""

    def submit(self, prepared: PreparedRun, log: Callable[[str], None]) -> RunHandle:
        """Start the run; return once it is submitted (or running)."""

    def attach(self, store: RunStore, run_id: str) -> RunHandle:
        """A handle on a run this backend submitted earlier, from any process."""

    def batch(self, sweep_id: str, home: Path) -> AbstractContextManager[Backend]:
        """The backend a sweep's runs are submitted through, until its last is: itself where runs
        share nothing but the image (local, Databricks); Kubernetes' shares one cluster client, one
        push and one owner process following every Job of the sweep."""


def get_backend(name: str) -> Backend:
    if name not in REGISTRY:
        raise ConfigError(f"--backend {name!r}: expected one of {', '.join(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)()
