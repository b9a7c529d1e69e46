"""A rerun's image: the very image the run used, by content ID. Here on the engine, or pulled by
its recorded name from the team's registry and checked to be the same content; else it is built
again from the recorded source (and lock), and the rerun says whether what was built installed the
same packages as the run's image did."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ...engine.client import Docker
from ...images.installed import image_installed, package_lines

if TYPE_CHECKING:
    from ...request import PreparedRun


def pinned_image(prepared: PreparedRun, docker: Docker, log: Callable[[str], None]) -> tuple[str, str] | None:
    """(reference, ID) of the run's own image if it can be had; None if it is gone."""
    want, ref, registry = prepared.request.image_id, prepared.plan.project_image, prepared.settings.registry
    found = docker.image_id(want)
    if found is None and registry and ref.startswith(registry + "/"):
        pulled = docker.try_pull(ref)
        if pulled is not None and pulled != want:
            log(f"{ref} in the registry is now another image ({short(pulled)}), not the run's")
        found = pulled if pulled == want else None
    if found is None:
        log(f"the run's image {short(want)} is gone: building it again from the recorded source")
        return None
    log(f"same image {found}")
    return ref, found


def compare_rebuilt(prepared: PreparedRun, docker: Docker, built: str, log: Callable[[str], None]) -> None:
    """Say whether the rebuilt image installed what the run's image did, as this machine knows it
    (read before, or given by the record file the rerun came from)."""
    home = prepared.settings.home
    old = _cached(prepared)
    new = image_installed(docker, built, home)
    if not new.get("recorded") or not old or not old.get("packages"):
        log(f"rebuilt as {built}; what the run's image installed is not known here, so it cannot be compared")
        return
    before = set(old["packages"]) if isinstance(old["packages"][0], str) else set(package_lines(old))
    after = set(package_lines(new))
    if before == after and old.get("python") == new.get("python"):
        log(f"rebuilt as {built}: identical environment (Python {new.get('python')}, the same {len(after)} "
            "packages as the run's)")
        return
    changed = sorted(before ^ after)[:6]
    log(f"rebuilt as {built}: NOT identical to the run's environment ({', '.join(changed)}"
        f"{', ...' if len(before ^ after) > 6 else ''}; Python {old.get('python')} -> {new.get('python')})")


def _cached(prepared: PreparedRun) -> dict[str, Any] | None:
    path = prepared.settings.home / "cache" / "installed" / (prepared.request.image_id.split(":")[-1] + ".json")
    if not path.is_file():
        return None
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def short(image_id: str) -> str:
    return image_id[:19] if image_id.startswith("sha256:") else image_id[:12]
