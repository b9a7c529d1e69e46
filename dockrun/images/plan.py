"""Decide which images a run needs, their names, labels and Dockerfiles (pure).

Two images per project: the environment image, tagged by the environment key, and the project
image (environment + code), tagged by the source key on top. If a tag exists, nothing is built.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..project.source import Source
from ..project.spec import ProjectSpec
from . import templates
from .environment import EnvSpec

WORKDIR = "/project"
LABEL_PROJECT = "dockrun.project"
LABEL_ENV = "dockrun.env-hash"
LABEL_SOURCE = "dockrun.source"
ENV_TEMPLATES = {"uv": "env-uv.Dockerfile.j2", "conda": "env-conda.Dockerfile.j2",
                 "micromamba": "env-micromamba.Dockerfile.j2"}
# What the conda template runs in its install stage: shipped in the build context, keyed like a template.
CONDA_INSTALLER = Path(__file__).with_name("conda_install.py")
PROJECT_TEMPLATE = "project.Dockerfile.j2"
# The scripts both build paths run (the classic Dockerfile's stages, dockrun's build container):
# the tools (uv, py-rattler), the environment's install, and its OS packages.
ENV_SCRIPTS = {"uv": "env-uv.sh.j2", "conda": "env-conda.sh.j2"}
TOOLS_SCRIPT = "tools.sh.j2"
OS_SCRIPT = "os-packages.sh.j2"


@dataclass(frozen=True)
class ImagePlan:
    project: str
    env: EnvSpec
    env_key: str
    env_image: str  # the environment image's reference (the given image for docker_env/system)
    project_image: str
    source_key: str
    source_key_is_tree_hash: bool
    env_labels: Mapping[str, str] = field(default_factory=dict)
    project_labels: Mapping[str, str] = field(default_factory=dict)
    base_id: str | None = None  # the base image's content identity, in the names' key (None: not resolved)


_MAX_NAME = 64


def repo_name(name: str) -> str:
    """A valid Docker repository component from any project name: lower case, separators Docker
    accepts between alphanumerics only (so `my..proj` -> `my-proj`), and a bounded length (a long
    name keeps a hash of itself, so two long names stay apart)."""
    cleaned = re.sub(r"[^a-z0-9]+", lambda m: "." if m.group() == "." else "_" if m.group() == "_" else "-",
                     name.lower()).strip("._-")
    if len(cleaned) > _MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        cleaned = cleaned[:_MAX_NAME - 9].rstrip("._-") + "-" + digest
    return cleaned or "project"


def environment_key(env: EnvSpec, base_id: str | None = None) -> str:
    """The environment's key: its canonical form plus the text of the templates that install it,
    so a template change makes a new key for every backend alike. With ``base_id`` (the base
    image's content identity, where images are built on it) it is the *image key* that names and
    labels the images: a base image tag moved to other content then builds anew."""
    template = ENV_TEMPLATES.get(env.kind)
    text = templates.template_source(template) if template else ""
    if env.kind in ENV_SCRIPTS:
        text += "".join(templates.template_source(t) for t in (ENV_SCRIPTS[env.kind], TOOLS_SCRIPT, OS_SCRIPT))
    if env.kind == "conda":
        text += CONDA_INSTALLER.read_text(encoding="utf-8")
    return env.key(text + templates.template_source(PROJECT_TEMPLATE), base_id)


def plan_images(project: ProjectSpec, source: Source, env: EnvSpec, settings: Settings,
                base_id: str | None = None) -> ImagePlan:
    env_key, image_key = environment_key(env), environment_key(env, base_id)
    prefix = f"{settings.registry}/" if settings.registry else ""
    env_image = f"{prefix}dockrun-env:{image_key[:32]}" if env.needs_build else env.base_image
    name = repo_name(project.name)
    return ImagePlan(
        project=project.name,
        env=env,
        env_key=env_key,
        env_image=env_image,
        project_image=f"{prefix}dockrun-{name}:{source.key[:20]}-{image_key[:12]}",
        source_key=source.key,
        source_key_is_tree_hash=source.key_is_tree_hash,
        env_labels={LABEL_ENV: image_key},
        project_labels={
            LABEL_PROJECT: project.name,
            LABEL_ENV: image_key,
            LABEL_SOURCE: source.commit or source.key,
        },
        base_id=base_id,
    )


def env_dockerfile(plan: ImagePlan, settings: Settings) -> str:
    env = plan.env
    return templates.render(
        ENV_TEMPLATES[env.kind],
        base_image=env.base_image,
        micromamba_image=env.micromamba_image,
        installer_image=env.installer_image,
        python=env.python,
        locked=env.lock is not None,
        ca_bundle=settings.ca_bundle is not None,
        build_args=_declared_build_args(settings),
        channel_alias=None,
        apt=env.apt,
    )


def env_scripts(plan: ImagePlan) -> dict[str, str]:
    """The scripts that install the environment (by file name), for either build path: ``tools.sh``
    (uv or py-rattler, pinned), ``env.sh`` (the environment) and ``os.sh`` (its OS packages)."""
    env = plan.env
    if env.kind not in ENV_SCRIPTS:
        return {}
    values = {"base_image": env.base_image, "installer_image": env.installer_image, "python": env.python,
              "locked": env.lock is not None, "apt": env.apt}
    return {
        "tools.sh": templates.render(TOOLS_SCRIPT, tool="uv" if env.kind == "uv" else "py-rattler", **values),
        "env.sh": templates.render(ENV_SCRIPTS[env.kind], **values),
        "os.sh": templates.render(OS_SCRIPT, **values),
    }


_PREDEFINED_ARGS = {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "FTP_PROXY", "ALL_PROXY"}


def _declared_build_args(settings: Settings) -> list[str]:
    return sorted(k for k in settings.build_args if k.upper() not in _PREDEFINED_ARGS)


# Where each kind of environment lives in its image (local code is installed into it).
PREFIXES = {"uv": "/opt/dockrun/venv", "conda": "/opt/dockrun/conda", "micromamba": "/opt/dockrun/conda"}


def local_code(plan: ImagePlan) -> tuple[str, ...]:
    """The project's own code to install in the project image (none where nothing is installed)."""
    return plan.env.local_code if plan.env.kind in PREFIXES else ()


def project_dockerfile(plan: ImagePlan, settings: Settings) -> str:
    return templates.render(
        PROJECT_TEMPLATE,
        env_image=plan.env_image,
        workdir=WORKDIR,
        local_code=local_code(plan),
        prefix=PREFIXES.get(plan.env.kind, ""),
        ca_bundle=settings.ca_bundle is not None,
        build_args=_declared_build_args(settings),
    )
