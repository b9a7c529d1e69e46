"""Local runs: a run ID, its container's life, its status."""
from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from .config import Settings
from .dockerio import Docker
from .errors import Interrupted
from .execution import RunContext, container_spec, run_container, shielded
from .runner import build, new_run_id, prepare


class LocalRun:
    """A submitted local run (the API's SubmittedRun)."""

    def __init__(self, run_id: str, outputs: Path, docker: Docker):
        self.run_id = run_id
        self.outputs = str(outputs)
        self.exit_code: int | None = None
        self._status = "SCHEDULED"
        self._docker = docker
        self._container: Any = None
        self._done = threading.Event()
        self._error: BaseException | None = None

    def get_status(self) -> str:
        return self._status

    def wait(self) -> bool:
        self._done.wait()
        return self._status == "FINISHED"

    def cancel(self) -> None:
        if self._done.is_set():
            return
        self._status = "KILLED"
        if self._container is not None:
            with shielded():
                self._docker.stop_and_remove(self._container)
        self._done.wait()

    def describe_end(self) -> str:
        if self._status == "KILLED":
            return "cancelled"
        if self._error is not None:
            return str(self._error)
        return f"command exited with status {self.exit_code}"

    # ---- driven by start_local_run ----
    def _started(self, container: Any) -> None:
        self._container = container
        if self._status == "SCHEDULED":
            self._status = "RUNNING"

    def _run(self, spec: Any) -> None:
        try:
            self.exit_code = run_container(self._docker, spec, on_started=self._started)
            if self._status != "KILLED":
                self._status = "FINISHED" if self.exit_code == 0 else "FAILED"
        except Interrupted:
            self._status = "KILLED"
            raise
        except BaseException as e:  # recorded for the driver; the container is already removed
            self._error = e
            if self._status != "KILLED":
                self._status = "FAILED"
            raise
        finally:
            self._done.set()


def start_local_run(
    uri: str,
    settings: Settings,
    entry_point: str,
    version: str | None,
    parameters: Mapping[str, str],
    docker_args: Any,
    env_manager: str,
    rebuild: bool,
    log: Callable[[str], None] | None,
    cwd: Path,
    synchronous: bool,
) -> LocalRun:
    prepared = prepare(uri, settings, entry_point, version, parameters, env_manager, cwd)
    docker = Docker()
    result = build(prepared, settings, docker, rebuild=rebuild, log=log)
    run_id = new_run_id()
    outputs = settings.home / "runs" / run_id / "outputs"
    ctx = RunContext(
        run_id=run_id,
        project=prepared.project.name,
        image=result.image_id,
        outputs=outputs,
        rendered=prepared.rendered,
        docker_env=prepared.project.docker_env,
        docker_args=docker_args,
    )
    spec = container_spec(ctx)  # validates -A and env passthrough before anything is created
    outputs.mkdir(parents=True, exist_ok=True)
    run = LocalRun(run_id, outputs, docker)
    if synchronous:
        run._run(spec)
    else:
        thread = threading.Thread(target=_quiet(run._run), args=(spec,), daemon=True)
        thread.start()
        while run.get_status() == "SCHEDULED" and not run._done.wait(0.05):
            pass
    return run


def _quiet(fn: Callable[..., None]) -> Callable[..., None]:
    def call(*args: Any) -> None:
        try:
            fn(*args)
        except BaseException:
            pass  # the outcome is in the run's status

    return call
