"""The local backend's seam: every request option applies; path parameters are host files mounted
into the container."""
from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ...options import honoured_by
from ...project.params import IN_CONTAINER
from ...request import RunRequest

if TYPE_CHECKING:
    from ...request import PreparedRun
    from ...store.records import RunStore
    from .runs import LocalRun


class LocalBackend:
    name = "local"
    options = honoured_by(name)
    placement = IN_CONTAINER
    default_tracking_uri = None  # MLflow's own default store, mounted like any local store

    def local_store_refusal(self, environ: Mapping[str, str]) -> str | None:
        """A local store is mounted into the container, which an engine that cannot see this
        machine's files (engine.client.engine_is_remote, from settings alone) cannot do."""
        from ...engine.address import REMOTE_ENV, local_socket

        if local_socket(environ):  # the lean client's engine sees this machine's files
            return None
        from ...engine.client import engine_is_remote

        if not engine_is_remote(environ):
            return None
        return ("a remote Docker engine; track to a server (MLFLOW_TRACKING_URI=http://...), or set "
                f"{REMOTE_ENV}=0 if the engine sees this machine's files")

    def configure(self, request: RunRequest, environ: Mapping[str, str]) -> Any:
        """-A options are checked here, with every other user error: a typo, an unset variable
        to copy, or GPUs on an engine without a GPU runtime, is one line before a cold build, not
        after it."""
        if request.docker_args:
            from .container import check_docker_args
            from .docker_args import check_gpus

            check_docker_args(request.docker_args, environ)
            check_gpus(request.docker_args, environ)
        return None

    def submit(self, prepared: PreparedRun, log: Callable[[str], None]) -> LocalRun:
        from .runs import submit_local_run

        return submit_local_run(prepared, log)

    def attach(self, store: RunStore, run_id: str) -> LocalRun:
        from .runs import LocalRun

        return LocalRun(store, run_id)

    def batch(self, sweep_id: str, home: Path) -> AbstractContextManager[LocalBackend]:
        return nullcontext(self)  # a sweep's runs share nothing here but the image
