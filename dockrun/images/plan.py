"""Decide which images a run needs, their names, labels and Dockerfiles (pure).

Two images per project: the environment image, tagged by the image key (environment.image_key),
and the project image (environment + code), tagged by the source key and the image key. If a tag
exists, nothing is built. What each kind of environment installs with is images/kinds.py.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..config import Settings
from ..project.source import Source
from ..project.spec import ProjectSpec
from . import templates
from .environment import EnvSpec, environment_key, image_key
from .kinds import OS_SCRIPT, PROJECT_TEMPLATE, TOOLS_SCRIPT, kind_of

WORKDIR = "/project"
LABEL_PROJECT = "dockrun.project"
# Holds the *image key* (environment.image_key). Its name on the engine stays "dockrun.env-hash":
# CONTRACT.md lists it for users' tooling (`docker image ls --filter label=dockrun.env-hash`), and
# `dockrun images` finds the images of earlier versions by it.
LABEL_IMAGE_KEY = "dockrun.env-hash"
LABEL_SOURCE = "dockrun.source"


@dataclass(frozen=True)
class ImagePlan:
    project: str
    env: EnvSpec
    env_key: str  # environment.environment_key: the same for every backend (the record's env_key)
    image_key: str  # environment.image_key: names the images, their LABEL_IMAGE_KEY
    env_image: str  # the environment image's reference (the given image for docker_env/system)
    project_image: str
    source_key: str
    source_key_is_tree_hash: bool
    env_labels: Mapping[str, str] = field(default_factory=dict)
    project_labels: Mapping[str, str] = field(default_factory=dict)
    base_id: str | None = None  # the base image's content identity, in the names' key (None: not resolved)
    # A project from a Git URI or an archive: its environment build shares nothing writable with
    # other builds (images/cached_build.py), and is given no credential of the host's build settings
    # unless the user trusts it (--trust): its packages' code runs in the build.
    from_elsewhere: bool = False
    trusted: bool = False


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


def plan_images(project: ProjectSpec, source: Source, env: EnvSpec, settings: Settings,
                base_id: str | None = None, from_elsewhere: bool = False, trusted: bool = False) -> ImagePlan:
    key = image_key(env, base_id)
    prefix = f"{settings.registry}/" if settings.registry else ""
    env_image = f"{prefix}dockrun-env:{key[:32]}" if env.needs_build else env.base_image
    name = repo_name(project.name)
    return ImagePlan(
        project=project.name,
        env=env,
        env_key=environment_key(env),
        image_key=key,
        env_image=env_image,
        project_image=f"{prefix}dockrun-{name}:{source.key[:20]}-{key[:12]}",
        source_key=source.key,
        source_key_is_tree_hash=source.key_is_tree_hash,
        env_labels={LABEL_IMAGE_KEY: key},
        project_labels={
            LABEL_PROJECT: project.name,
            LABEL_IMAGE_KEY: key,
            LABEL_SOURCE: source.commit or source.key,
        },
        base_id=base_id,
        from_elsewhere=from_elsewhere,
        trusted=trusted,
    )


def env_dockerfile(plan: ImagePlan, settings: Settings) -> str:
    env = plan.env
    template = kind_of(env.kind).dockerfile
    assert template is not None, f"{env.kind} environments have no image to build"
    return templates.render(
        template,
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
    kind = kind_of(env.kind)
    if kind.script is None:
        return {}
    values = {"base_image": env.base_image, "installer_image": env.installer_image, "python": env.python,
              "locked": env.lock is not None, "apt": env.apt}
    return {
        "tools.sh": templates.render(TOOLS_SCRIPT, tool=kind.tool, **values),
        "env.sh": templates.render(kind.script, **values),
        "os.sh": templates.render(OS_SCRIPT, **values),
    }


_PREDEFINED_ARGS = {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "FTP_PROXY", "ALL_PROXY"}


def _declared_build_args(settings: Settings) -> list[str]:
    return sorted(k for k in settings.build_args if k.upper() not in _PREDEFINED_ARGS)


def local_code(plan: ImagePlan) -> tuple[str, ...]:
    """The project's own code to install in the project image (none where nothing is installed)."""
    return plan.env.local_code if kind_of(plan.env.kind).prefix else ()


def project_dockerfile(plan: ImagePlan, settings: Settings) -> str:
    return templates.render(
        PROJECT_TEMPLATE,
        env_image=plan.env_image,
        workdir=WORKDIR,
        local_code=local_code(plan),
        prefix=kind_of(plan.env.kind).prefix,
        ca_bundle=settings.ca_bundle is not None,
        build_args=_declared_build_args(settings),
    )
