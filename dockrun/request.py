"""The data at the seam between the front half and the backends.

``RunRequest`` is what the user asked for, as one frozen value, built once by the CLI or by
``dockrun.execute()``; nothing in it is checked yet (defined with its options in ``options.py``,
importable from here). ``PreparedRun`` is what ``prepare`` made of it: everything a backend needs,
validated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import Settings
from .images.environment import EnvSpec
from .images.plan import ImagePlan
from .options import RunRequest as RunRequest  # where it was always imported from
from .project.params import RenderedCommand
from .project.source import Source
from .project.spec import EntryPoint, ProjectSpec
from .tracking.target import TrackingTarget


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
