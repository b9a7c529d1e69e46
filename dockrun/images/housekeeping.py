"""`dockrun images`: list dockrun's images and prune the unused ones.

dockrun's images are those it recorded when it built them (the run store's ``images`` table), under
the names it gave them. A label is no proof: every image a user builds FROM one of dockrun's
inherits its labels, and anyone can set them. Labels only describe a recorded image (its project
and image key), and what they and its package list say is shown terminal-safe."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..config import load_settings
from ..engine.client import Docker
from ..engine.lean import connect
from ..store.records import RunStore
from ..terminal import printable
from .cached_build import prune_build_cache
from .installed import image_installed, package_lines
from .plan import LABEL_IMAGE_KEY, LABEL_PROJECT

DAY = 86400.0


@dataclass(frozen=True)
class ImageInfo:
    id: str
    refs: tuple[str, ...]
    project: str | None  # None for environment images
    image_key: str
    size: int
    created: float
    last_used: float  # the latest run of it (or of a project image on it), else its creation


def dockrun_images(docker: Docker, store: RunStore) -> tuple[list[ImageInfo], int]:
    """The images dockrun made that are on the engine, with only the references it gave them; and
    how many other images carry its labels (built FROM its images, or elsewhere)."""
    owned = store.owned_images()
    runs = store.last_use_by_image()
    infos, others = [], 0
    for img in docker.images_with_label(LABEL_IMAGE_KEY):
        tags = [r for r in img.get("RepoTags") or () if r != "<none>:<none>"]
        refs = tuple(r for r in tags if r in owned.get(img["Id"], ()))
        if img["Id"] not in owned or (tags and not refs):  # not made here, or only the user's names left
            others += 1
            continue
        labels = img.get("Labels") or {}
        used = max([runs.get(r, 0.0) for r in refs] + [float(img["Created"])])
        infos.append(ImageInfo(img["Id"], refs, labels.get(LABEL_PROJECT), labels[LABEL_IMAGE_KEY], int(img["Size"]),
                               float(img["Created"]), used))
    # An environment image is in use as long as a project image on it is.
    by_key: dict[str, float] = {}
    for i in infos:
        if i.project:
            by_key[i.image_key] = max(by_key.get(i.image_key, 0.0), i.last_used)
    infos = [i if i.project else ImageInfo(i.id, i.refs, None, i.image_key, i.size, i.created,
                                           max(i.last_used, by_key.get(i.image_key, 0.0))) for i in infos]
    return sorted(infos, key=lambda i: i.last_used, reverse=True), others


def list_table(packages: bool = False) -> tuple[str, str | None]:
    """The images, most recently used first; with ``packages``, under each environment image what
    it installed (a project image shows its own only when its environment image is not listed).
    And a note, when other images carry dockrun's labels, saying why they are not listed."""
    settings = load_settings()
    docker = connect()
    infos, others = dockrun_images(docker, RunStore(settings.home))
    note = (f"{others} more image(s) carry dockrun's labels but were not built with this DOCKRUN_HOME, or were "
            f"built FROM its images: not listed, never pruned (docker image ls --filter label={LABEL_IMAGE_KEY})"
            if others else None)
    rows = [("IMAGE", "PROJECT", "IMAGE KEY", "SIZE", "LAST USED")]
    for i in infos:
        rows.append((_names(i)[0], printable(i.project) if i.project else "(environment)", printable(i.image_key[:12]),
                     f"{i.size / 1e6:.0f} MB", _ago(i.last_used)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    # An image's other names go on lines of their own below its row: the table is as wide as one
    # name, not as all of an image's names together.
    entries = [[line, *("  " + n for n in _names(i)[1:])] for i, line in zip(infos, lines[1:])]
    if not packages:
        return "\n".join([lines[0], *(line for entry in entries for line in entry)]), note
    env_images = {i.image_key: i for i in infos if not i.project}
    out = lines[:1]
    for i, entry in zip(infos, entries):
        out += entry
        if i.project and i.image_key in env_images:
            out.append(f"    packages: as its environment image {_names(env_images[i.image_key])[0]}")
        else:
            out += ["    " + printable(text) for text in _packages(docker, i.id, settings.home)]
    return "\n".join(out), note


def _names(i: ImageInfo) -> list[str]:
    """The names dockrun gave the image (the shortest first), or its short ID."""
    return [printable(r) for r in sorted(i.refs, key=lambda r: (len(r), r))] or [i.id[7:19]]


def _packages(docker: Docker, image_id: str, home: Path) -> list[str]:
    data = image_installed(docker, image_id, home)
    if not data.get("recorded"):
        return [data.get("why", "not recorded")]
    return [f"python {data.get('python') or '(none)'}", *package_lines(data)]


def prune(older_than_days: float, project: str | None = None) -> list[str]:
    """Remove dockrun images not used for ``older_than_days`` (project images first, then the
    environment images no remaining project image needs): the names dockrun gave them, and so the
    image unless someone else named it or built on it. Returns what was removed."""
    settings = load_settings()
    docker = connect()
    cutoff = time.time() - older_than_days * DAY
    store = RunStore(settings.home)
    infos, _ = dockrun_images(docker, store)
    removed: list[str] = []
    kept_keys = set()
    for i in (i for i in infos if i.project):
        if i.last_used <= cutoff and (project is None or i.project == project):
            removed += _remove(docker, store, i)
        else:
            kept_keys.add(i.image_key)
    for i in (i for i in infos if not i.project):
        if i.image_key not in kept_keys and i.last_used <= cutoff and project is None:
            removed += _remove(docker, store, i)
    if project is None:  # the build cache (images/cached_build.py): shared, so never for one project
        removed += prune_build_cache(docker, settings.home, older_than_days)
    return [printable(r) for r in removed]


def _remove(docker: Docker, store: RunStore, image: ImageInfo) -> list[str]:
    removed = docker.remove_image(image.id, image.refs)
    if docker.image_id(image.id) is None:  # gone (not still named or built on by someone else)
        store.forget_image(image.id)
    return removed


def _ago(t: float) -> str:
    s = time.time() - t
    for unit, size in (("d", DAY), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f}{unit} ago"
    return "just now"
