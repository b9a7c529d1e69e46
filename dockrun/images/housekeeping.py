"""`dockrun images`: list dockrun's images and prune the unused ones, found by their labels."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..config import load_settings
from ..engine.client import Docker
from ..store.records import RunStore
from .cached_build import prune_build_cache
from .installed import image_installed, package_lines
from .plan import LABEL_ENV, LABEL_PROJECT

DAY = 86400.0


@dataclass(frozen=True)
class ImageInfo:
    id: str
    refs: tuple[str, ...]
    project: str | None  # None for environment images
    env_key: str
    size: int
    created: float
    last_used: float  # the latest run of it (or of a project image on it), else its creation


def dockrun_images(docker: Docker, store: RunStore) -> list[ImageInfo]:
    runs = store.last_use_by_image()
    raw = docker.images_with_label(LABEL_ENV)
    infos = []
    for img in raw:
        labels = img.get("Labels") or {}
        refs = tuple(r for r in img.get("RepoTags") or () if r != "<none>:<none>")
        used = max([runs.get(r, 0.0) for r in refs] + [float(img["Created"])])
        infos.append(ImageInfo(img["Id"], refs, labels.get(LABEL_PROJECT), labels[LABEL_ENV], int(img["Size"]),
                               float(img["Created"]), used))
    # An environment image is in use as long as a project image on it is.
    by_env: dict[str, float] = {}
    for i in infos:
        if i.project:
            by_env[i.env_key] = max(by_env.get(i.env_key, 0.0), i.last_used)
    infos = [i if i.project else ImageInfo(i.id, i.refs, None, i.env_key, i.size, i.created,
                                           max(i.last_used, by_env.get(i.env_key, 0.0))) for i in infos]
    return sorted(infos, key=lambda i: i.last_used, reverse=True)


def list_table(packages: bool = False) -> str:
    """The images, most recently used first; with ``packages``, under each environment image what
    it installed (a project image shows its own only when its environment image is not listed)."""
    settings = load_settings()
    docker = Docker()
    infos = dockrun_images(docker, RunStore(settings.home))
    rows = [("IMAGE", "PROJECT", "ENV KEY", "SIZE", "LAST USED")]
    for i in infos:
        rows.append((_name(i), i.project or "(environment)", i.env_key[:12],
                     f"{i.size / 1e6:.0f} MB", _ago(i.last_used)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    if not packages:
        return "\n".join(lines)
    env_images = {i.env_key: i for i in infos if not i.project}
    out = lines[:1]
    for i, line in zip(infos, lines[1:]):
        out.append(line)
        if i.project and i.env_key in env_images:
            out.append(f"    packages: as its environment image {_name(env_images[i.env_key])}")
        else:
            out += ["    " + text for text in _packages(docker, i.id, settings.home)]
    return "\n".join(out)


def _name(i: ImageInfo) -> str:
    return ", ".join(i.refs) or i.id[7:19]


def _packages(docker: Docker, image_id: str, home: Path) -> list[str]:
    data = image_installed(docker, image_id, home)
    if not data.get("recorded"):
        return [data.get("why", "not recorded")]
    return [f"python {data.get('python') or '(none)'}", *package_lines(data)]


def prune(older_than_days: float, project: str | None = None) -> list[str]:
    """Remove dockrun images not used for ``older_than_days`` (project images first, then the
    environment images no remaining project image needs). Returns what was removed."""
    settings = load_settings()
    docker = Docker()
    cutoff = time.time() - older_than_days * DAY
    infos = dockrun_images(docker, RunStore(settings.home))
    removed: list[str] = []
    kept_envs = set()
    for i in (i for i in infos if i.project):
        if i.last_used <= cutoff and (project is None or i.project == project):
            removed += docker.remove_image(i.id, i.refs)
        else:
            kept_envs.add(i.env_key)
    for i in (i for i in infos if not i.project):
        if i.env_key not in kept_envs and i.last_used <= cutoff and project is None:
            removed += docker.remove_image(i.id, i.refs)
    if project is None:  # the build cache (images/cached_build.py): shared, so never for one project
        removed += prune_build_cache(docker, settings.home, older_than_days)
    return removed


def _ago(t: float) -> str:
    s = time.time() - t
    for unit, size in (("d", DAY), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f}{unit} ago"
    return "just now"
