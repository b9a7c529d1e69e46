"""Same key, same environment: a base image tag that moves to other content (a new `python:3.11-slim`,
a rebuilt team base, a docker_env image pushed again) must not reuse the images built on the old
content. The image key holds the base image's content identity, found with one inspect. Real engine."""
from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import image_id, write_project

pytestmark = pytest.mark.usefixtures("no_leaks")

PRINT_BASE = "python3 -c \\\"import os; print('base', os.environ.get('DOCKRUN_TEST_BASE', 'first'))\\\""


@pytest.fixture
def moving_tag(base_image: str):
    """A base image name only this test uses, first on the session's base image; yields it and a
    function that moves it to other content (the base plus one ENV line). Everything this test
    tagged or built is removed afterwards (nothing another session uses)."""
    tag = f"dockrun-test-base-{uuid.uuid4().hex[:12]}:moving"
    subprocess.run(["docker", "tag", base_image, tag], check=True)
    made: list[str] = [tag]

    def move(value: str) -> str:
        dockerfile = f"FROM {base_image}\nENV DOCKRUN_TEST_BASE={value}\nLABEL dockrun-test={uuid.uuid4().hex}\n"
        subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True, check=True,
                       capture_output=True)
        new = image_id(tag)
        assert new and new != image_id(base_image)
        made.append(new)
        return new

    yield tag, move, made
    subprocess.run(["docker", "rmi", "-f", *made], capture_output=True)


def _built(err: str, what: str) -> list[str]:
    return re.findall(rf"building {what} image (\S+)", err)


def test_a_moved_base_image_builds_a_new_environment_and_an_unchanged_one_reuses(
        cli, moving_tag, tmp_path: Path) -> None:
    tag, move, made = moving_tag
    project = write_project(tmp_path / "basekey", {
        "MLproject": f'name: basekey\nentry_points:\n  main:\n    command: "{PRINT_BASE}"\n',
        "requirements.txt": "tabulate==0.9.0\n",
        "marker.txt": uuid.uuid4().hex,
    })
    env = {"DOCKRUN_BASE_IMAGE": tag}
    first = cli("run", str(project), env=env)
    made += _built(first.err, "environment") + _built(first.err, "project")
    assert first.code == 0 and "base first" in first.out, first.err
    (env_first,) = _built(first.err, "environment")
    again = cli("run", str(project), env=env)
    assert again.code == 0 and "base first" in again.out and "building" not in again.err, again.err

    move("second")  # same name, other content
    moved = cli("run", str(project), env=env)
    made += _built(moved.err, "environment") + _built(moved.err, "project")
    assert moved.code == 0, moved.err
    (env_moved,) = _built(moved.err, "environment")  # fails when the key ignores the base's content
    assert env_moved != env_first and "base second" in moved.out
    rerun = cli("run", str(project), env=env)
    assert rerun.code == 0 and "base second" in rerun.out and "building" not in rerun.err, rerun.err
    # --base-image names the same moving tag: the same key as the variable.
    flag = cli("run", str(project), "--base-image", tag)
    assert flag.code == 0 and "base second" in flag.out and "building" not in flag.err, flag.err


def test_a_moved_docker_env_image_builds_a_new_project_image(cli, moving_tag, tmp_path: Path) -> None:
    tag, move, made = moving_tag
    project = write_project(tmp_path / "dockerenv", {
        "MLproject": f'name: basekey-docker\ndocker_env:\n  image: {tag}\n'
                     f'entry_points:\n  main:\n    command: "{PRINT_BASE}"\n',
        "marker.txt": uuid.uuid4().hex,
    })
    first = cli("run", str(project))
    made += _built(first.err, "project")
    assert first.code == 0 and "base first" in first.out, first.err
    move("second")
    moved = cli("run", str(project))
    made += _built(moved.err, "project")
    assert moved.code == 0 and "base second" in moved.out, moved.err  # not the image built on the old one
    again = cli("run", str(project))
    assert again.code == 0 and "base second" in again.out and "building" not in again.err, again.err


def test_the_base_is_looked_up_once_only_where_images_are_built(
        tmp_path: Path, base_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockrun.backends.databricks.backend import DatabricksBackend
    from dockrun.backends.local.backend import LocalBackend
    from dockrun.engine.client import Docker
    from dockrun.prepare import engine_base_id, prepare
    from dockrun.request import RunRequest

    calls: list[str] = []
    real = Docker.image_digest
    monkeypatch.setattr(Docker, "image_digest", lambda self, ref: calls.append(ref) or real(self, ref))
    monkeypatch.setenv("DOCKRUN_HOME", str(tmp_path / "home"))
    # Both backends on one base whatever the tester's shell exported (Databricks takes no --base-image).
    monkeypatch.setenv("DOCKRUN_BASE_IMAGE", base_image)
    project = write_project(tmp_path / "p", {
        "MLproject": "name: p\nentry_points:\n  main:\n    command: \"true\"\n",
        "requirements.txt": "tabulate==0.9.0\n"})
    local = prepare(RunRequest(uri=str(project), base_image=base_image), LocalBackend())
    assert calls == [base_image]
    assert local.plan.base_id == image_id(base_image) and local.plan.env_image.endswith(
        local.plan.env_labels["dockrun.env-hash"][:32])
    # The environment key itself (records, every backend) does not depend on the engine.
    cluster = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}
    remote = prepare(RunRequest(uri=str(project), backend="databricks", backend_config=cluster),
                     DatabricksBackend(), {"DATABRICKS_HOST": "https://example.invalid", "DATABRICKS_TOKEN": "t"})
    assert calls == [base_image] and remote.plan.base_id is None
    assert remote.image.env_key == local.image.env_key
    # A reference given by digest is its own identity: no engine is even reached; with no engine
    # at all, no identity (the build then says the engine is missing).
    digest = "sha256:" + "ab" * 32
    with monkeypatch.context() as m:
        m.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
        assert engine_base_id(f"team/base@{digest}") == digest
        assert engine_base_id("team/base:1") is None and calls == [base_image]
