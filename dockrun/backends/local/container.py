"""Plan a run's container as data (pure): command, mounts, environment, user, options."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ...engine.client import ContainerSpec
from ...errors import ConfigError
from ...images.plan import WORKDIR
from ...project.params import RenderedCommand
from ...project.spec import DockerEnv
from .docker_args import parse_pairs, to_create_options
from .files import FilesPlan, Staged, stage_outputs
from .landing import copy_back_limit

LABEL_RUN = "dockrun.run-id"


@dataclass(frozen=True)
class RunContext:
    run_id: str
    project: str
    image: str
    outputs: Path  # DOCKRUN_OUTPUT_DIR, in the run's own folder (where outputs are staged too)
    rendered: RenderedCommand
    docker_env: DockerEnv | None = None
    docker_args: Mapping[str, str] | None = None
    extra_env: Mapping[str, str] | None = None
    extra_mounts: tuple[tuple[str, str, str], ...] = ()  # (host, container, ro|rw): a local MLflow store
    host_network: bool = False  # the MLflow server is on the host's loopback
    dev_root: Path | None = None  # --dev: this folder is the project root, mounted read-write
    # The engine cannot see this machine's files (engine.client.engine_is_remote): what would be
    # bind-mounted from here is copied in instead, and the writable part copied back.
    remote: bool = False


def files_plan(ctx: RunContext, environ: Mapping[str, str] | None = None) -> FilesPlan:
    """What the run writes on the host (pure): its outputs' staging folders in the run's folder,
    and on a remote engine which folders come back and how much may."""
    host_env = os.environ if environ is None else environ
    outputs = [m.path for m in ctx.rendered.mounts if m.output]
    writable = [host for host, inside, mode in ctx.extra_mounts if mode == "rw" and host == inside]
    staged = stage_outputs(outputs, ctx.outputs.parent, writable)
    if not ctx.remote:
        return FilesPlan(staged)
    back = tuple((host, inside) for host, inside, mode in _own(ctx, staged) if mode == "rw")
    return FilesPlan(staged, back, copy_back_limit(host_env))


def _own(ctx: RunContext, staged: tuple[Staged, ...]) -> list[tuple[str, str, str]]:
    """dockrun's own mounts (host, container, mode): inputs read-only, each output's folder the
    run's own staging folder, DOCKRUN_OUTPUT_DIR, a --dev folder."""
    own = [(m.path, m.path, "ro") for m in ctx.rendered.mounts if not m.output]
    own += [(s.stage, s.folder, "rw") for s in staged]
    own.append((str(ctx.outputs), str(ctx.outputs), "rw"))
    if ctx.dev_root is not None:
        own.append((str(ctx.dev_root), WORKDIR, "rw"))
    return own


def check_docker_args(docker_args: Mapping[str, str] | tuple[str, ...] | None,
                      environ: Mapping[str, str]) -> None:
    """-A as prepare checks it (LocalBackend.configure), before anything is built: each option
    known and well formed, the host variables it copies set, its volumes HOST:CONTAINER[:MODE]."""
    _, special = to_create_options(parse_pairs(docker_args))
    _environment(None, special, environ)
    _volumes(None, special)


def check_project_container(docker_env: DockerEnv | None, remote: bool, environ: Mapping[str, str]) -> None:
    """What the project's docker_env asks of the container (host variables set, volumes well
    formed) and a remote engine's copy-back limit, checked before anything is built or started, so
    that planning the container (container_spec) after the MLflow run has started cannot fail."""
    _environment(docker_env, {}, environ)
    _volumes(docker_env, {})
    if remote:
        copy_back_limit(environ)


def container_spec(ctx: RunContext, environ: Mapping[str, str] | None = None) -> ContainerSpec:
    """Everything about the container as data: command, mounts, env, user, options."""
    host_env = os.environ if environ is None else environ
    options, special = to_create_options(parse_pairs(ctx.docker_args))
    uid, gid = os.getuid(), os.getgid()
    env: dict[str, str] = {
        "DOCKRUN_RUN_ID": ctx.run_id,
        "DOCKRUN_OUTPUT_DIR": str(ctx.outputs),
    }
    if uid != 0:
        env["HOME"] = "/tmp"  # the calling user has no home directory in the image
    env.update(_environment(ctx.docker_env, special, host_env))
    env.update(ctx.extra_env or {})
    own = _own(ctx, files_plan(ctx, host_env).staged)
    if ctx.dev_root is not None:
        env.setdefault("PYTHONUNBUFFERED", "1")  # as the project image sets it: output is seen live
    # Volumes (docker_env, -A v=) stay bind mounts on any engine: they name the engine's paths,
    # as `docker run -v` does.
    copies = tuple(own) if ctx.remote else ()
    mounts = ([] if ctx.remote else own) + list(ctx.extra_mounts)
    mounts += _volumes(ctx.docker_env, special)
    if ctx.host_network and "network_mode" not in options:
        options["network_mode"] = "host"
    user = f"{uid}:{gid}"
    for u in special.get("user", []) + special.get("u", []):
        user = u
    workdir = WORKDIR
    for w in special.get("workdir", []) + special.get("w", []):
        workdir = w
    labels = {}
    for item in special.get("label", []) + special.get("l", []):
        name, _, value = item.partition("=")
        labels[name] = value
    # `-A rm` asks for what dockrun always does: the container is removed when the run is over.
    # dockrun's own win. None of them is read back to decide anything on the host: the engine
    # adds every label of the image, which whoever built it chose (files.py keeps the plan).
    labels.update({LABEL_RUN: ctx.run_id, "dockrun.project": ctx.project})
    return ContainerSpec(
        image=ctx.image,
        command=("sh", "-c", ctx.rendered.command),
        name=f"dockrun-{ctx.run_id}",
        labels=labels,
        environment=env,
        mounts=tuple(mounts),
        working_dir=workdir,
        user=user,
        options=options,
        copies=copies,
    )


def _environment(docker_env: DockerEnv | None, special: Mapping[str, list[str]],
                 host_env: Mapping[str, str]) -> dict[str, str]:
    """The variables docker_env and -A e= set, those given by name alone copied from the host."""
    env = {}
    for name, value in docker_env.environment if docker_env else ():
        if value is None:
            if name not in host_env:
                raise ConfigError(f"MLproject: docker_env.environment: {name} is to be copied from the "
                                  "host environment, but it is not set")
            value = host_env[name]
        env[name] = value
    for item in special.get("e", []) + special.get("env", []):
        name, sep, value = item.partition("=")
        if not sep:
            if name not in host_env:
                raise ConfigError(f"--docker-args env={name}: {name} is not set in the host environment")
            value = host_env[name]
        env[name] = value
    return env


def _volumes(docker_env: DockerEnv | None, special: Mapping[str, list[str]]) -> list[tuple[str, str, str]]:
    volumes = list(docker_env.volumes if docker_env else ()) + special.get("v", []) + special.get("volume", [])
    return [_volume(vol) for vol in volumes]


def _volume(text: str) -> tuple[str, str, str]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ConfigError(f"volume {text!r}: expected HOST:CONTAINER[:ro|rw]")
    host = os.path.abspath(os.path.expanduser(parts[0]))
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ConfigError(f"volume {text!r}: mode must be ro or rw")
    return host, parts[1], mode
