"""The path of a local run: source -> project spec -> environment -> image -> container."""
from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import Settings
from .dockerio import Docker
from .environment import EnvSpec, env_spec
from .feedback import build_feedback
from .images import ImagePlan, ensure_images, plan_images
from .params import RenderedCommand, render_command
from .source import Source, resolve_source
from .spec import EntryPoint, ProjectSpec, load_project


@dataclass(frozen=True)
class Prepared:
    """Everything decided before a container starts (no side effects beyond reading files)."""

    source: Source
    project: ProjectSpec
    entry_point: EntryPoint
    rendered: RenderedCommand
    env: EnvSpec
    plan: ImagePlan
    given: Mapping[str, str]  # the parameters as the user gave them
    cwd: Path | None


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def prepare(
    uri: str,
    settings: Settings,
    entry_point: str = "main",
    version: str | None = None,
    parameters: Mapping[str, str] | None = None,
    env_manager: str = "auto",
    cwd: Path | None = None,
) -> Prepared:
    """Resolve, parse and validate: every user error surfaces here, before anything is built."""
    source = resolve_source(uri, version, settings.home)
    project = load_project(source.root)
    ep = project.entry_point(entry_point)
    rendered = render_command(ep, {k: str(v) for k, v in (parameters or {}).items()}, cwd=cwd)
    env = env_spec(project, settings, env_manager)
    plan = plan_images(project, source, env, settings)
    return Prepared(source, project, ep, rendered, env, plan, dict(parameters or {}), cwd)


def fetch_inputs(prepared: Prepared, storage_dir: Path, log: Callable[[str], None]) -> Prepared:
    """Download remote path parameters (s3://) into ``storage_dir`` and render the command with
    the local copies, which are then mounted like any other path."""
    if not prepared.rendered.downloads:
        return prepared
    from .storage import download_inputs

    local = download_inputs(prepared.rendered.downloads, storage_dir, log)
    rendered = render_command(prepared.entry_point, prepared.given, cwd=prepared.cwd, downloaded=local)
    return dataclasses.replace(prepared, rendered=rendered)


def build(
    prepared: Prepared,
    settings: Settings,
    docker: Docker,
    rebuild: bool = False,
    log: Callable[[str], None] | None = None,
) -> str:
    """Build what is missing; feedback goes to ``log``, else to stderr (live on a TTY)."""
    if log is not None:
        return ensure_images(prepared.plan, prepared.source.root, settings, docker, rebuild, log)
    with build_feedback() as default_log:
        return ensure_images(prepared.plan, prepared.source.root, settings, docker, rebuild, default_log)
