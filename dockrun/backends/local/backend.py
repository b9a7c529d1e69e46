"""The local backend's seam: every request option applies; path parameters are host files mounted
into the container."""
from __future__ import annotations

from collections.abc import Mapping
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

    def configure(self, request: RunRequest, environ: Mapping[str, str]) -> Any:
        """-A options are checked here, with every other user error: a typo, or GPUs on an engine
        without a GPU runtime, is one line before a cold build, not after it."""
        if request.docker_args:
            from .docker_args import check_gpus, parse_pairs, to_create_options

            to_create_options(parse_pairs(request.docker_args))
            check_gpus(request.docker_args, environ)
        return None

    def submit(self, prepared: PreparedRun, log: Callable[[str], None]) -> LocalRun:
        from .runs import submit_local_run

        return submit_local_run(prepared, log)

    def attach(self, store: RunStore, run_id: str) -> LocalRun:
        from .runs import LocalRun

        return LocalRun(store, run_id)
