"""The Python faces: ``dockrun.execute()`` (MLflow's flat options) builds a RunRequest and hands it
to ``submit``, the one path every run takes, from the CLI too:

    RunRequest -> prepare (validate everything) -> fetch inputs -> backend.submit -> RunHandle
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any, Callable

from .backends import get_backend
from .backends.handle import RunHandle, RunNotFound, ended_error, shielded
from .config import load_settings
from .errors import Interrupted, OutputClosed
from .options import from_keywords
from .prepare import fetch_inputs, prepare
from .request import PreparedRun, RunRequest
from .store.records import RunStore

if TYPE_CHECKING:
    from .backends import Backend


def execute(
    uri: str,
    entry_point: str = "main",
    version: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    docker_args: Mapping[str, Any] | list[str] | None = None,
    experiment_name: str | None = None,
    experiment_id: str | None = None,
    backend: str = "local",
    backend_config: Mapping[str, Any] | str | None = None,
    storage_dir: str | None = None,
    synchronous: bool = True,
    run_id: str | None = None,
    run_name: str | None = None,
    env_manager: str = "auto",
    build_image: bool = False,
    docker_auth: Mapping[str, Any] | None = None,
    *,
    log: Callable[[str], None] | None = None,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
    **options: Any,
) -> RunHandle:
    """Run a project in a container (or on Databricks, or Kubernetes) and return the submitted run.

    The keywords up to ``docker_auth`` are ``mlflow.projects.run``'s, in its order (``run_id``:
    log into this existing MLflow run; ``build_image``: accepted, dockrun always builds the code
    into the image; ``docker_auth``: refused, dockrun uses the engine's own registry login).
    ``options`` are dockrun's own, the fields of ``dockrun.options.RunRequest`` by name:
    ``tracking_uri``, ``base_image``, ``rebuild``, ``dev``, ``trust``.

    ``synchronous=True`` streams the run's output (to ``stdout``/``stderr``, default the
    process's), returns when the run is over and raises ExecutionError if it did not finish;
    Ctrl-C cancels it. ``synchronous=False`` returns as soon as the run has started; a local run
    goes on under its own supervisor process even if the caller exits. ``dev=True`` runs a local
    folder's code in place (mounted at the project root) in the environment image: nothing is
    built for the code. ``trust=True`` grants a project from a Git URI or an archive the host
    access its MLproject asks for (docker_env volumes and host variables) and its builds the
    credentials in the host's index and proxy settings, as ``--trust`` does.
    """
    # First thing: the only names bound yet are the parameters. The rest follows from the table.
    keywords = {k: v for k, v in locals().items() if k not in ("uri", "log", "stdout", "stderr", "options")}
    keywords.update(options)
    return submit(from_keywords(uri, keywords), log=log, output=(stdout, stderr))


def submit(request: RunRequest, log: Callable[[str], None] | None = None,
           output: tuple[IO[bytes] | None, IO[bytes] | None] = (None, None),
           backend: Backend | None = None, quiet: bool = False, verbose: bool = False) -> RunHandle:
    """Prepare ``request``, submit it to its backend (``backend`` overrides the registry, for test
    doubles) and, if synchronous, stream its output until it is over. Without ``log``, build output
    goes to stderr (``quiet``: a failed step's only; ``verbose``: the engine's whole log)."""
    backend = backend or get_backend(request.backend)
    return submit_prepared(prepare(request, backend), backend, log, output, quiet, verbose)


def submit_prepared(prepared: PreparedRun, backend: Backend, log: Callable[[str], None] | None = None,
                    output: tuple[IO[bytes] | None, IO[bytes] | None] = (None, None),
                    quiet: bool = False, verbose: bool = False) -> RunHandle:
    """``submit`` after ``prepare``: for a face that looks at the prepared run first (a rerun)."""
    from .images.feedback import build_feedback

    request = prepared.request
    with build_feedback(quiet=quiet, verbose=verbose) as default_log:
        say = log or default_log
        if backend.placement.host_paths:  # inputs first: a wrong URI fails before a long build
            prepared = fetch_inputs(prepared, say)
        handle = backend.submit(prepared, say)
    if request.synchronous:
        attend(handle, *output)
    return handle


def attend(handle: RunHandle, out: IO[bytes] | None = None, err: IO[bytes] | None = None) -> None:
    """Stream a run's output until it ends; Ctrl-C / SIGTERM cancel it and raise Interrupted;
    a run that did not finish raises ExecutionError."""
    try:
        rec = handle.follow(out or sys.stdout.buffer, err or sys.stderr.buffer)
    except KeyboardInterrupt:
        with shielded():
            handle.cancel()
        raise Interrupted(f"interrupted; run {handle.run_id} was {handle.cancel_summary}") from None
    except BrokenPipeError:
        # Whoever read the output is gone (`dockrun run ... | head -1`): the run ends as a pipeline's
        # writer does when its reader has read enough.
        with shielded():
            handle.cancel()
        raise OutputClosed(f"its output was closed; run {handle.run_id} was {handle.cancel_summary}") from None
    if rec.status != "FINISHED":
        raise ended_error(rec)


def get_run(run_id: str) -> RunHandle:
    """A handle on an existing run (from this or any other process), whatever backend runs it."""
    store = RunStore(load_settings().home)
    rec = store.get(run_id)  # resolves a unique ID prefix
    if rec is None:
        raise RunNotFound(f"run {run_id!r}: no such run in {store.path}")
    return get_backend(rec.backend).attach(store, rec.run_id)
