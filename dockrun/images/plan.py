"""Decide which images a run needs, their names, labels and Dockerfiles (pure).

Two images per project: the environment image, tagged by the environment key, and the project
image (environment + code), tagged by the source key on top. If a tag exists, nothing is built.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..config import Settings
from ..project.source import Source
from ..project.spec import ProjectSpec
from . import templates
from .environment import EnvSpec

WORKDIR = "/project"
LABEL_PROJECT = "dockrun.project"
LABEL_ENV = "dockrun.env-hash"
LABEL_SOURCE = "dockrun.source"
ENV_TEMPLATES = {"uv": "env-uv.Dockerfile.j2", "micromamba": "env-micromamba.Dockerfile.j2"}
PROJECT_TEMPLATE = "project.Dockerfile.j2"


@dataclass(frozen=True)
class ImagePlan:
    project: str
    env: EnvSpec
    env_key: str
    env_image: str  # the environment image's reference (the given image for docker_env/system)
    project_image: str
    source_key: str
    env_labels: Mapping[str, str] = field(default_factory=dict)
    project_labels: Mapping[str, str] = field(default_factory=dict)


def repo_name(name: str) -> str:
    """A Docker repository component from a project name."""
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("._-")
    return cleaned or "project"


def environment_key(env: EnvSpec) -> str:
    """The environment's key: its canonical form plus the text of the templates that install it,
    so a template change makes a new key for every backend alike."""
    template = ENV_TEMPLATES.get(env.kind)
    text = templates.template_source(template) if template else ""
    return env.key(text + templates.template_source(PROJECT_TEMPLATE))


def plan_images(project: ProjectSpec, source: Source, env: EnvSpec, settings: Settings) -> ImagePlan:
    env_key = environment_key(env)
    prefix = f"{settings.registry}/" if settings.registry else ""
    env_image = f"{prefix}dockrun-env:{env_key[:32]}" if env.needs_build else env.base_image
    name = repo_name(project.name)
    return ImagePlan(
        project=project.name,
        env=env,
        env_key=env_key,
        env_image=env_image,
        project_image=f"{prefix}dockrun-{name}:{source.key[:20]}-{env_key[:12]}",
        source_key=source.key,
        env_labels={LABEL_ENV: env_key},
        project_labels={
            LABEL_PROJECT: project.name,
            LABEL_ENV: env_key,
            LABEL_SOURCE: source.commit or source.key,
        },
    )


def env_dockerfile(plan: ImagePlan, settings: Settings) -> str:
    env = plan.env
    return templates.render(
        ENV_TEMPLATES[env.kind],
        base_image=env.base_image,
        micromamba_image=env.micromamba_image,
        python=env.python,
        ca_bundle=settings.ca_bundle is not None,
        build_args=sorted(k for k in settings.build_args if k.upper() not in _PREDEFINED_ARGS),
        channel_alias=None,
    )


_PREDEFINED_ARGS = {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "FTP_PROXY", "ALL_PROXY"}


def project_dockerfile(plan: ImagePlan) -> str:
    return templates.render(PROJECT_TEMPLATE, env_image=plan.env_image, workdir=WORKDIR)
