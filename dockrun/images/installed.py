"""What an environment image actually installed.

Every environment template's install stage writes ``INSTALLED_PATH`` (Python's version and every
package with its version; for conda also each package's URL and hashes and the explicit list), and
the final stage copies it, so the record travels with the image (and with every project image on
it). Reading it costs a created, never started, container: it is read once per image ID and kept
under ``$DOCKRUN_HOME/cache/installed/`` (an image ID names its content, so the copy never goes
stale), and a run remembers which image ID it was read from, so a second look at a run asks the
engine nothing. Only `dockrun runs show` and `dockrun images list --packages` read it; builds and
runs never do.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..engine.client import Docker
from ..errors import DockrunError
from ..locks import write_atomic

INSTALLED_PATH = "/opt/dockrun/installed.json"
# A record lists packages: a few hundred KB for the largest environments. An image is someone
# else's data (a docker_env image, a registry's): more than this is refused while it is read.
LIMIT = 16 << 20
NOT_RECORDED = ("not recorded: dockrun records what its environment templates install (uv and py-rattler); "
                "a docker_env image is used as given, a project with no environment runs the base image's "
                "Python as is, and micromamba builds do not record yet")


def _cache(home: Path) -> Path:
    return home / "cache" / "installed"


def _write(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True))


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent or torn: read it again


def image_installed(docker: Docker, image_id: str, home: Path) -> dict[str, Any]:
    """The image's record (``{"recorded": true, "python": ..., "packages": [...], ...}``), or
    ``{"recorded": false, "why": ...}``; from the cache when this image ID was read before."""
    path = _cache(home) / (image_id.split(":")[-1] + ".json")
    cached = _load(path)
    if cached is not None:
        return cached
    try:
        raw = docker.read_image_file(image_id, INSTALLED_PATH, LIMIT)
    except DockrunError as e:  # too large, or the engine said no: asked again next time
        return {"recorded": False, "why": f"not readable: {str(e).splitlines()[0]}", "image_id": image_id}
    data: dict[str, Any] = {"recorded": False, "why": NOT_RECORDED}
    if raw is not None:
        try:
            parsed = json.loads(raw)
            data = {**parsed, "recorded": True} if isinstance(parsed, dict) else data
        except ValueError:
            data = {"recorded": False, "why": f"not readable: {INSTALLED_PATH} in the image is not JSON"}
    data["image_id"] = image_id
    _write(path, data)
    return data


def run_installed(home: Path, run_id: str, image: str, docker: Callable[[], Docker]) -> dict[str, Any]:
    """What the run's image installed. The first look finds the image by the run's reference (the
    image it names now) and remembers its ID for the run; later looks read only the cache."""
    pointer = _cache(home) / "runs" / f"{run_id}.json"
    seen = _load(pointer)
    if seen and seen.get("image_id"):
        cached = _load(_cache(home) / (seen["image_id"].split(":")[-1] + ".json"))
        if cached is not None:
            return cached
    try:
        engine = docker()
        image_id = engine.image_id(image)
        if image_id is None:
            return {"recorded": False, "why": f"unknown: the image {image} is not on this engine (removed since?)"}
        data = image_installed(engine, image_id, home)
    except DockrunError as e:  # no engine: the rest of the record is still worth showing
        return {"recorded": False, "why": f"unknown: {str(e).splitlines()[0]}"}
    _write(pointer, {"image": image, "image_id": image_id})
    return data


def package_lines(data: dict[str, Any]) -> list[str]:
    """One line per package: ``name==version`` (PyPI) or ``name=version=build`` (conda, as conda
    writes a pinned spec)."""
    lines = []
    for p in data.get("packages") or []:
        if p.get("source") == "conda":
            lines.append(f"{p['name']}={p['version']}={p.get('build', '')}".rstrip("="))
        else:
            lines.append(f"{p['name']}=={p['version']}")
    return lines


def summary(data: dict[str, Any]) -> dict[str, Any]:
    """What `dockrun runs show` prints under "environment"."""
    if not data.get("recorded"):
        return {"recorded": False, "why": data.get("why", NOT_RECORDED)}
    out: dict[str, Any] = {"image_id": data.get("image_id"), "installer": data.get("installer"),
                           "python": data.get("python"), "packages": package_lines(data)}
    if data.get("explicit"):
        out["explicit"] = data["explicit"]
    return out
