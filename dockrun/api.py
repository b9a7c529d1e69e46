"""``dockrun.execute()``: the one entry point that both the CLI and Python drivers call."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Callable

from .config import load_settings
from .errors import ConfigError
from .records import RunStore
from .runs import LocalRun, ended_error, run_attached, start_local_run
from .tracking import tracking_target


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
) -> LocalRun:
    """Run a project in a container and return the submitted run.

    ``synchronous=True`` streams the run's output (to ``stdout``/``stderr``, default the
    process's), returns when the run is over and raises ExecutionError if it did not finish;
    Ctrl-C cancels it. ``synchronous=False`` returns as soon as the container has started; the run
    goes on under its own supervisor process even if the caller exits.
    """
    if backend != "local":
        raise ConfigError(f"--backend {backend!r}: only 'local' is available in this version")
    settings = load_settings(base_image=base_image)
    tracking = tracking_target(tracking_uri, experiment_name, experiment_id, run_name, os.environ)
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


def get_run(run_id: str) -> LocalRun:
    """A handle on an existing run (from this or any other process)."""
    run = LocalRun(RunStore(load_settings().home), run_id)
    return LocalRun(run._store, run.record().run_id)  # resolves a unique ID prefix; raises if unknown
