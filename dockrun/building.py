"""``dockrun build``: the project's image for CI, optionally tagged and pushed."""
from __future__ import annotations

from .config import load_settings
from .dockerio import Docker
from .environment import env_spec
from .feedback import build_feedback
from .images import ensure_images, plan_images
from .source import resolve_source
from .spec import load_project


def build_project(
    uri: str,
    version: str | None = None,
    tag: str | None = None,
    push: bool = False,
    rebuild: bool = False,
    env_manager: str = "auto",
    base_image: str | None = None,
    quiet: bool = False,
) -> str:
    """Build (or reuse) the project image, optionally tag and push it; return its reference."""
    settings = load_settings(base_image=base_image)
    source = resolve_source(uri, version, settings.home)
    project = load_project(source.root)
    plan = plan_images(project, source, env_spec(project, settings, env_manager), settings)
    docker = Docker()
    with build_feedback(quiet) as log:
        ensure_images(plan, source.root, settings, docker, rebuild, log)
        ref = plan.project_image
        if tag:
            docker.tag(ref, tag)
            ref = tag
        if push:
            images = [ref]
            if settings.registry:
                # The environment image too: another machine with a code change then builds only the code.
                images = [plan.env_image] if plan.env.needs_build else []
                images += [plan.project_image, ref]
            for image in dict.fromkeys(images):
                docker.push_if_missing(image, log)
    return ref
