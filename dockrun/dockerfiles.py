"""Render the Dockerfile templates shipped in ``templates/`` (inside the wheel as dockrun/_templates)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2


def templates_dir() -> Path:
    """The templates folder: ``dockrun/_templates`` in an installed wheel (setup.py maps the
    top-level templates/ there), else the checkout's ``templates/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_templates", here.parent / "templates"):
        if (candidate / "project.Dockerfile.j2").is_file():
            return candidate
    raise FileNotFoundError(f"dockrun's Dockerfile templates are missing (looked in {here})")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def template_source(name: str) -> str:
    """The template's text with what it imports: part of the environment key."""
    env = _environment()
    text = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
    return text + env.loader.get_source(env, "_macros.j2")[0]  # type: ignore[union-attr]


def render(name: str, **context: Any) -> str:
    return _environment().get_template(name).render(**context)
