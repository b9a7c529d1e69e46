"""``dockrun.execute()``: the one entry point that both the CLI and Python drivers call."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from .config import load_settings
from .errors import ConfigError, ExecutionError
from .runs import LocalRun, start_local_run


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
) -> LocalRun:
    """Run a project in a container and return the submitted run.

    With ``synchronous=True`` this returns when the run has ended and raises ExecutionError if it
    failed; otherwise it returns as soon as the container has started.
    """
    if backend != "local":
        raise ConfigError(f"--backend {backend!r}: only 'local' is available in this version")
    settings = load_settings(base_image=base_image)
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
        synchronous=synchronous,
    )
    if synchronous and not run.wait():
        raise ExecutionError(
            f"run {run.run_id} failed: {run.describe_end()}", run_id=run.run_id, exit_status=run.exit_code
        )
    return run
