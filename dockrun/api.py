"""``dockrun.execute()``: the one entry point that both the CLI and Python drivers call."""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from .config import Settings, load_settings
from .errors import ConfigError, Interrupted
from .handle import RunNotFound
from .records import RunStore
from .runs import LocalRun, ended_error, run_attached, start_local_run
from .tracking import tracking_target

if TYPE_CHECKING:
    from .databricks import DatabricksRun


def execute(
    uri: str,
    entry_point: str = "main",
    version: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    docker_args: Mapping[str, Any] | list[str] | None = None,
    backend: str = "local",
    backend_config: Mapping[str, Any] | str | None = None,
    env_manager: str = "auto",
    synchronous: bool = True,
    experiment_name: str | None = None,
    run_name: str | None = None,
    storage_dir: str | None = None,
    *,
    base_image: str | None = None,
    rebuild: bool = False,
    log: Callable[[str], None] | None = None,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
    experiment_id: str | None = None,
    tracking_uri: str | None = None,
    mlflow_run_id: str | None = None,
) -> LocalRun | DatabricksRun:
    """Run a project in a container (or on Databricks) and return the submitted run.

    ``synchronous=True`` streams the run's output (to ``stdout``/``stderr``, default the
    process's), returns when the run is over and raises ExecutionError if it did not finish;
    Ctrl-C cancels it. ``synchronous=False`` returns as soon as the container has started; the run
    goes on under its own supervisor process even if the caller exits.
    """
    if backend not in ("local", "databricks"):
        raise ConfigError(f"--backend {backend!r}: expected local or databricks")
    settings = load_settings(base_image=base_image)
    if backend == "databricks":
        return _execute_databricks(uri, settings, entry_point, version, parameters, env_manager, backend_config,
                                   synchronous, log, stdout, stderr)
    tracking = tracking_target(tracking_uri, experiment_name, experiment_id, run_name, os.environ, mlflow_run_id)
    run = start_local_run(
        uri,
        settings,
        entry_point=entry_point,
        version=version,
        parameters={k: str(v) for k, v in (parameters or {}).items()},
        docker_args=docker_args,
        env_manager=env_manager,
        rebuild=rebuild,
        log=log,
        cwd=Path.cwd(),
        attached=synchronous,
        tracking=tracking,
        storage_dir=Path(storage_dir).expanduser().resolve() if storage_dir else None,
    )
    if synchronous:
        rec = run_attached(run, stdout, stderr)
        if rec.status != "FINISHED":
            raise ended_error(rec)
    return run


def _execute_databricks(uri: str, settings: Settings, entry_point: str, version: str | None,
                        parameters: Mapping[str, Any] | None, env_manager: str, backend_config: Any,
                        synchronous: bool, log: Callable[[str], None] | None, stdout: IO[bytes] | None,
                        stderr: IO[bytes] | None) -> DatabricksRun:
    from .databricks import submit_run
    from .feedback import plain
    from .runner import new_run_id

    if backend_config is None:
        raise ConfigError("--backend databricks needs --backend-config: a cluster spec (JSON file or string)")
    run = submit_run(uri, settings, entry_point, version, {k: str(v) for k, v in (parameters or {}).items()},
                     env_manager, backend_config, new_run_id(), log or plain(sys.stderr))
    if synchronous:
        try:
            rec = run.follow(stdout or sys.stdout.buffer, stderr or sys.stderr.buffer)
        except KeyboardInterrupt:
            run.cancel()
            raise Interrupted(f"interrupted; Databricks run of {run.run_id} was cancelled") from None
        if rec.status != "FINISHED":
            raise ended_error(rec)
    return run


def get_run(run_id: str) -> LocalRun | DatabricksRun:
    """A handle on an existing run (from this or any other process), local or remote."""
    store = RunStore(load_settings().home)
    rec = store.get(run_id)  # resolves a unique ID prefix
    if rec is None:
        raise RunNotFound(f"run {run_id!r}: no such run in {store.path}")
    if rec.backend == "databricks":
        from .databricks import DatabricksRun

        return DatabricksRun(store, rec.run_id)
    return LocalRun(store, rec.run_id)
