"""The data at the seam between the front half and the backends.

``RunRequest`` is what the user asked for, as one frozen value, built once by the CLI or by
``dockrun.execute()``; nothing in it is checked yet. ``PreparedRun`` is what ``prepare`` made of
it: everything a backend needs, validated.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Settings
from .images.environment import EnvSpec
from .images.plan import ImagePlan
from .project.params import RenderedCommand
from .project.source import Source
from .project.spec import EntryPoint, ProjectSpec
from .tracking.target import TrackingTarget


@dataclass(frozen=True)
class RunRequest:
    uri: str
    entry_point: str = "main"
    version: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    docker_args: tuple[str, ...] | Mapping[str, Any] = ()
    backend: str = "local"
    backend_config: Any = None  # parsed JSON (or a JSON file name / text, as the API accepts it)
    env_manager: str = "auto"
    synchronous: bool = True
    experiment_name: str | None = None
    experiment_id: str | None = None
    run_name: str | None = None
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None  # log into this existing MLflow run (`--run-id`)
    storage_dir: Path | None = None
    base_image: str | None = None
    rebuild: bool = False
    cwd: Path | None = None  # relative path parameters are taken from here (default: the process's)
    # Run in the environment image with the project folder mounted read-write at the project root:
    # edits are live on the next run and no image is built for the code.
    dev: bool = False
    # Honour the host access a project from elsewhere (Git, archive) asks for in its MLproject
    # (docker_env volumes and host variables); a local folder's is honoured without it.
    trust: bool = False
    # Set by a rerun: run exactly this image (by content ID) where it is still to be had, and
    # record which run this repeats.
    image_id: str | None = None
    rerun_of: str | None = None
    source_key: str | None = None  # the code must still be this (commit or content hash)

    def given(self) -> dict[str, str]:
        """The options the user set to something other than their default, by field name."""
        defaults = RunRequest(uri=self.uri)
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(defaults, f.name)}


# The command-line spelling of each option, for messages that name it.
FLAGS = {
    "entry_point": "--entry-point", "version": "--version", "parameters": "-P", "docker_args": "-A/--docker-args",
    "backend_config": "--backend-config", "env_manager": "--env-manager", "synchronous": "--detach",
    "experiment_name": "--experiment-name", "experiment_id": "--experiment-id", "run_name": "--run-name",
    "tracking_uri": "--tracking-uri", "mlflow_run_id": "--run-id", "storage_dir": "--storage-dir",
    "base_image": "--base-image", "rebuild": "--rebuild", "dev": "--dev", "trust": "--trust",
    "image_id": "runs rerun", "rerun_of": "runs rerun", "source_key": "runs rerun",
}


@dataclass(frozen=True)
class PreparedImage:
    """What an image needs: the resolved source, the project spec, the environment and the plan."""

    request: RunRequest
    settings: Settings
    source: Source
    project: ProjectSpec
    env: EnvSpec
    env_key: str  # the same key for every backend: canonical environment + template text
    plan: ImagePlan


@dataclass(frozen=True)
class PreparedRun:
    """Everything a backend needs to submit a run; nothing in it has had a side effect yet
    (beyond reading files and the clone cache)."""

    image: PreparedImage
    entry_point: EntryPoint
    rendered: RenderedCommand  # validated, quoted command; mounts; remote inputs to fetch
    tracking: TrackingTarget | None
    backend_config: Any  # what the backend's ``configure`` made of --backend-config

    # Shorthands: backends read these often.
    @property
    def request(self) -> RunRequest:
        return self.image.request

    @property
    def settings(self) -> Settings:
        return self.image.settings

    @property
    def source(self) -> Source:
        return self.image.source

    @property
    def project(self) -> ProjectSpec:
        return self.image.project

    @property
    def env(self) -> EnvSpec:
        return self.image.env

    @property
    def plan(self) -> ImagePlan:
        return self.image.plan
