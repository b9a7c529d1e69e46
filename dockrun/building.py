"""``dockrun build``: the project's image for CI, optionally tagged and pushed."""
from __future__ import annotations

from .config import image_ref_ok
from .engine.lean import connect
from .errors import ConfigError
from .images.build import ensure_env_image, ensure_images, push_pinned
from .images.feedback import build_feedback
from .prepare import prepare_image
from .request import RunRequest


def build_project(request: RunRequest, tag: str | None = None, push: bool = False, quiet: bool = False,
                  verbose: bool = False) -> str:
    """Build (or reuse) the project image, optionally tag and push it; return its reference."""
    if tag is not None and not image_ref_ok(tag):
        raise ConfigError(f"--tag {tag!r}: expected an image reference [HOST[:PORT]/]NAME[:TAG] (a lowercase name; "
                          "a tag of letters, digits, '_', '.' or '-'), e.g. registry:5000/ml/forecast:v1")
    prepared = prepare_image(request)
    settings, plan = prepared.settings, prepared.plan
    docker = connect()
    with build_feedback(quiet, verbose=verbose) as log:
        ensure_images(plan, prepared.source.root, settings, docker, request.rebuild, log)
        ref = plan.project_image
        if tag:
            docker.tag(ref, tag)
            ref = tag
        if push:
            images = [ref]
            if settings.registry:
                # The environment image too: another machine with a code change then builds only the code.
                images = [plan.env_image] if plan.env.needs_build else []
                if images:  # a project image found here (or pulled) left it unnamed under the registry
                    ensure_env_image(plan, settings, docker, False, log)
                images += [plan.project_image, ref]
            for image in dict.fromkeys(images):
                push_pinned(docker, image, log)
    return ref
