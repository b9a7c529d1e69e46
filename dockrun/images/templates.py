"""Render the Dockerfile templates shipped in ``templates/`` (inside the wheel as dockrun/_templates)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


def templates_dir() -> Path:
    """The templates folder: ``dockrun/_templates`` in an installed wheel (setup.py maps the
    top-level templates/ there), else the checkout's ``templates/``."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_templates", package.parent / "templates"):
        if (candidate / "project.Dockerfile.j2").is_file():
            return candidate
    raise FileNotFoundError(f"dockrun's Dockerfile templates are missing (looked in {package})")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2  # only when rendering: a warm run needs the templates' text, not Jinja

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


@lru_cache(maxsize=16)
def template_source(name: str) -> str:
    """The template's text with what it imports: part of the environment key."""
    folder = templates_dir()
    return (folder / name).read_text(encoding="utf-8") + (folder / "_macros.j2").read_text(encoding="utf-8")


def render(name: str, **context: Any) -> str:
    return _environment().get_template(name).render(**context)
