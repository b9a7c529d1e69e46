"""The front half every backend shares: from what the user asked (RunRequest) to everything a
backend needs (PreparedRun). Every user error surfaces here, before anything is built, uploaded,
recorded or started, and it is the only place that reads the MLproject, validates parameters and
decides the environment.

    prepare_image(request)     source -> project spec -> environment (+ key) -> image plan
    prepare(request, backend)  the above, then: options the backend honours, the entry point's
                               validated command, tracking, the backend's own config
    fetch_inputs(prepared)     remote path parameters downloaded, for backends that read host files
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

from .backends import Backend
from .config import load_settings
from .errors import ConfigError, ParameterError, ProjectError
from .images.environment import env_spec
from .images.plan import local_code, plan_images
from .locks import make_private_dir
from .options import label, refused
from .project.access import check_host_access, dangerous_mounts, requested_access
from .project.params import RenderedCommand, render_command
from .project.resolve import is_git_uri, resolve_source, unquote_uri
from .project.spec import EntryPoint, load_project
from .project.uri import is_archive_uri
from .request import PreparedImage, PreparedRun, RunRequest
from .tracking.compat import check_store_mlflow, host_mlflow, pinned_mlflow, schema_matters
from .tracking.target import TrackingTarget, tracking_target

log = logging.getLogger("dockrun")
TRACKING_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")


def engine_base_id(ref: str) -> str | None:
    """The base image's content identity, from the engine (one inspect; none for a reference given
    by digest). On a local socket the client is the lean one: a connection costs a millisecond."""
    if "@sha256:" in ref:
        return ref.rsplit("@", 1)[1]
    from .engine.lean import connect  # docker-py itself only if the engine is not a local socket

    try:
        engine = connect()
    except ConfigError:  # no engine: the build says so, after any mistake in the request itself
        return None
    digest = engine.image_digest(ref)
    if digest is None:  # the build would fail at its first step, with the registry's words
        raise ConfigError(f"base image {ref}: not on this engine and no registry it can reach serves it; "
                          "pull or build it first, or name another with --base-image or DOCKRUN_BASE_IMAGE")
    return digest


def prepare_image(request: RunRequest, read_lock: bool = True,
                  base_id: Callable[[str], str | None] | None = engine_base_id) -> PreparedImage:
    """Resolve the source, read the project and decide its environment and images. Without
    ``read_lock`` (`dockrun lock` only) a requirements.lock is left out of the environment.
    ``base_id`` finds the base image's content identity, which the image names' key includes;
    None where no image is built on it (a backend without --base-image)."""
    settings = load_settings(base_image=request.base_image)
    make_private_dir(settings.home)  # before any cache below makes it with the umask's mode
    source = resolve_source(request.uri, request.version, settings.home)
    if request.source_key and source.key != request.source_key:
        raise ConfigError(f"run {request.rerun_of}: its source {source.uri} is not the code that ran any more "
                          f"(it hashes to {source.key[:12]}, the run had {request.source_key[:12]}); a rerun runs the "
                          "same code: restore it, or start a new run with dockrun run")
    project = load_project(source.root, settings.yaml_cache)
    env = env_spec(project, settings, request.env_manager, read_lock)
    try:
        base = base_id(env.base_image) if base_id else None
    except ConfigError:
        if env.needs_build:
            raise
        base = None  # used as given (docker_env): pulled, or refused by name, where it runs
    plan = plan_images(project, source, env, settings, base, is_from_elsewhere(request.uri), request.trust)
    return PreparedImage(request, settings, source, project, env, plan.env_key, plan)


def prepare(request: RunRequest, backend: Backend, environ: Mapping[str, str] | None = None,
            command_needed: bool = True) -> PreparedRun:
    """Validate the whole request for ``backend``; returns what its ``submit`` takes. Without
    ``command_needed`` (a shell, which runs no entry point) an entry point that is missing or
    lacks a parameter is no error: its command says what is missing when it is tried."""
    environ = os.environ if environ is None else environ
    check_options(request, backend)
    if request.dev:
        check_dev_source(request.uri)
    backend_config = backend.configure(request, environ)  # a bad cluster spec fails before any Git fetch
    image = prepare_image(request, base_id=engine_base_id if "base_image" in backend.options else None)
    if request.dev and local_code(image.plan):
        raise ConfigError("--dev: the environment installs the project's own code (-e .), which only an "
                          "image build can do; run without --dev")
    try:
        ep = image.project.entry_point(request.entry_point)
        rendered = render_command(ep, request.parameters, cwd=request.cwd, placement=backend.placement)
    except (ProjectError, ParameterError) as e:
        if command_needed:
            raise
        ep = EntryPoint(name=request.entry_point, command="")
        rendered = RenderedCommand(f"echo {shlex.quote(f'dockrun: {e}')} >&2; exit 2", {}, ())
    if backend.placement.host_paths:  # a backend that mounts host folders, copies host variables, downloads
        check_project_access(image, environ, rendered.downloads)
    for warning in near_misses(ep, request.parameters):
        log.warning("%s", warning)
    tracking = run_tracking(request, backend, environ)
    if schema_matters(tracking) and image.env.kind == "uv":  # pinned: known before anything is built
        check_store_mlflow(tracking, pinned_mlflow(image.env.lock or image.env.requirements), host_mlflow())
    return PreparedRun(image, ep, rendered, tracking, backend_config)


def run_tracking(request: RunRequest, backend: Backend, environ: Mapping[str, str]) -> TrackingTarget | None:
    """Where the run is tracked, by MLflow's rules (tracking.target), for a backend that reports to
    MLflow and has no default tracking URI of its own (one that has decides in ``configure``); a
    local store only where the backend's runs can reach it."""
    if "tracking_uri" not in backend.options:
        if any(environ.get(name) for name in TRACKING_VARS):  # options were refused by check_options
            log.warning("%s is set, but backend %s does not report runs to it",
                        next(name for name in TRACKING_VARS if environ.get(name)), backend.name)
        return None
    if backend.default_tracking_uri is not None:
        return None
    target = tracking_target(request.tracking_uri, request.experiment_name, request.experiment_id,
                             request.run_name, environ, request.mlflow_run_id, request.cwd)
    refusal = backend.local_store_refusal(environ) if target and target.store_dir else None
    if refusal:  # before an image is built or an MLflow run is started for nothing
        raise ConfigError(f"tracking: the local MLflow store {target.uri} cannot be reached from {refusal}")
    return target


def near_misses(ep: EntryPoint, given: Mapping[str, str]) -> list[str]:
    """An undeclared key is passed on as ``--key value`` (MLflow's rule), so a typo fails inside the
    container, or worse, is taken by argparse as the declared option it is a prefix of: say so when
    an undeclared key is close to a declared one."""
    declared = [p.name for p in ep.parameters]
    out = []
    for key in given:
        if key in declared:
            continue
        import difflib  # here: a run whose keys are all declared needs none

        close = [d for d in declared if d.startswith(key)] or difflib.get_close_matches(key, declared, n=1, cutoff=0.75)
        if close:
            out.append(f"-P {key}: not declared by entry point {ep.name!r}; did you mean {close[0]}?")
    return out


def check_options(request: RunRequest, backend: Backend) -> None:
    """An option the backend cannot honour is an error naming both, never silently dropped."""
    unsupported = refused(request, backend.options)
    if unsupported:
        raise ConfigError(f"{', '.join(label(name) for name in unsupported)}: not supported by backend {backend.name}")


def check_project_access(image: PreparedImage, environ: Mapping[str, str], downloads: Mapping[str, str]) -> None:
    """The host access a project asks for (``downloads``: the run's remote path parameters, whose
    defaults are the project's word): refused for code from elsewhere unless trusted, and said out
    loud where it hands over the machine, whoever wrote the project."""
    access = requested_access(image.project, downloads, image.request.parameters)
    if not access:
        return
    check_host_access(access, from_elsewhere=image.plan.from_elsewhere, trusted=image.request.trust,
                      shown_uri=image.source.uri)
    for warning in dangerous_mounts(access, environ):
        log.warning("%s", warning)


def is_from_elsewhere(uri: str) -> bool:
    """A Git URI or an archive holds code the user did not write in place; a folder is theirs."""
    uri = unquote_uri(uri)
    return is_archive_uri(uri) or is_git_uri(uri)


def check_dev_source(uri: str) -> None:
    """--dev runs the code of a folder the user edits; a Git URI or an archive has none to mount.
    The URI is not quoted back: it may carry credentials."""
    if is_from_elsewhere(uri):
        raise ConfigError("--dev: the project must be a local folder, not a Git URI or an archive")


def fetch_inputs(prepared: PreparedRun, log: Callable[[str], None]) -> PreparedRun:
    """Download remote path parameters into the storage dir and render the command with the local
    copies, which are then mounted like any other path."""
    if not prepared.rendered.downloads:
        return prepared
    from .project.inputs import download_inputs

    request = prepared.request
    storage_dir = request.storage_dir or prepared.settings.home / "downloads"
    local = download_inputs(prepared.rendered.downloads, Path(storage_dir), log, request.tracking_uri)
    rendered = render_command(prepared.entry_point, request.parameters, cwd=request.cwd, downloaded=local)
    return dataclasses.replace(prepared, rendered=rendered)
