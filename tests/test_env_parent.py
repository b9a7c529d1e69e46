"""Which environment image a changed environment's build starts from (images/cached_build.py):
only one the same install scripts made. The derived install brings the distributions to the set a
fresh install gets, not the files an older dockrun's scripts left otherwise (a venv made before
bytecode was compiled keeps its packages uncompiled), so an environment recorded by another version
of the scripts is never a parent: that build starts from the OS layer, as a fresh one does."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import write_project
from dockrun.images.cached_build import INDEX, build_env_cached, install_digest
from dockrun.prepare import prepare_image
from dockrun.request import RunRequest

OS_LAYER = "sha256:" + "0" * 64
OLD = "dockrun-env:" + "1" * 32
OLD_ID = "sha256:" + "1" * 64


class Engine:
    """The build engine's part the cached path uses, recording which image each build started from."""

    def __init__(self, base_id: str):
        self.base_id = base_id
        self.started_from: list[str] = []

    def image_id(self, ref: str) -> str | None:
        return {OLD: OLD_ID}.get(ref, OS_LAYER if ref.startswith("dockrun-os:") else None)

    def tag(self, ref: str, target: str) -> None: ...

    def ensure_pulled(self, ref: str, log: Any) -> str:
        return self.base_id

    def ensure_volume(self, name: str, labels: Any) -> None: ...

    def image_config(self, ref: str) -> dict[str, Any]:
        return {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["python3"]}

    def run_build_container(self, image: str, command: list[str], volumes: Any, inputs: Any, labels: Any,
                            log: Any) -> tuple[str, int, list[str]]:
        self.started_from.append(image)
        return "cid", 0, []

    def commit(self, container_id: str, ref: str, config: Any) -> str:
        return "sha256:" + "2" * 64

    def remove_build_container(self, container_id: str) -> None: ...

    def discard_build_container(self, container_id: str) -> None: ...


@pytest.mark.parametrize("recorded_by", ["older scripts", "no scripts recorded", "these scripts",
                                         "these scripts, before builds from elsewhere were told apart"])
def test_only_an_environment_the_same_install_scripts_made_is_a_parent(
        base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded_by: str) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DOCKRUN_HOME", str(home))
    monkeypatch.setenv("DOCKRUN_BASE_IMAGE", base_image)
    project = write_project(tmp_path / "p", {"MLproject": "name: p\nentry_points:\n  main:\n    command: python -V\n",
                                             "requirements.txt": "tabulate\nsix\nidna\n"})
    prepared = prepare_image(RunRequest(uri=str(project)))
    plan = prepared.plan
    # An environment with two of its three requirements, on the same OS layer and Python.
    entry = {"image": OLD, "id": OLD_ID, "start": OS_LAYER, "python": plan.env.python, "names": ["six", "tabulate"],
             "depth": 0}
    if recorded_by != "no scripts recorded":
        entry["script"] = install_digest(plan) if recorded_by.startswith("these scripts") else "0123456789abcdef"
    if recorded_by != "these scripts, before builds from elsewhere were told apart":
        entry["local"] = True  # a project on this machine: a Git URI's or an archive's build is never recorded
    (home / INDEX).parent.mkdir(parents=True, exist_ok=True)
    (home / INDEX).write_text(json.dumps([entry]))
    engine = Engine(base_id="sha256:" + "3" * 64)
    lines: list[str] = []
    build_env_cached(plan, prepared.settings, engine, lines.append, environ={})  # type: ignore[arg-type]
    assert engine.started_from == [OLD if recorded_by == "these scripts" else OS_LAYER]
    assert any("only the difference is installed" in line for line in lines) == (recorded_by == "these scripts")
    # What it records names the scripts that made it: the next change may start from it.
    recorded = json.loads((home / INDEX).read_text())
    assert recorded[-1]["image"] == plan.env_image and recorded[-1]["script"] == install_digest(plan)
    assert recorded[-1]["local"] is True
