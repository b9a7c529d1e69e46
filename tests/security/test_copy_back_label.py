"""Issue 21.1: nothing that decides what dockrun does on the host is read back from the engine.

Docker gives a container every label of its image that the create call did not set. The plan of
what a remote run's copy-back writes on the host once lived in a container label, so an image (a
`docker_env` image, or any base) carrying `LABEL dockrun.copy-back=[[HOST, INSIDE]]` made a plain
local `dockrun run` write the image's INSIDE into that host folder. The plan now lives in the run's
own folder, and only runs dockrun made remote copy anything back."""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import write_project

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def labelled_image(tmp_path: Path, base_image: str):
    """An image built FROM the local base with a copy-back label aimed at a host folder."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "mine.txt").write_text("the user's own file\n")
    context = tmp_path / "image"
    context.mkdir()
    plan = json.dumps([[str(victim), "/evil"]])
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\n"
        "RUN mkdir /evil && echo pwned > /evil/owned.txt && echo pwned > /evil/mine.txt\n"
        f"LABEL dockrun.copy-back='{plan}'\n")
    tag = f"dockrun-test-label:{uuid.uuid4().hex[:12]}"
    built = subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], capture_output=True, text=True,
                           env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert built.returncode == 0, built.stderr
    yield tag, victim
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_an_image_label_does_not_decide_what_is_written_on_the_host(cli, tmp_path: Path, labelled_image) -> None:
    tag, victim = labelled_image
    name = f"label-{uuid.uuid4().hex[:8]}"
    project = write_project(tmp_path / "proj", {
        "MLproject": f"""
            name: {name}
            docker_env: {{image: {tag}}}
            entry_points:
              main: "echo ran; echo again >> /evil/owned.txt"
        """,
    })
    try:
        r = cli("run", str(project), "-q")
        assert r.code == 0, r.err
        assert "ran" in r.out
        assert sorted(p.name for p in victim.iterdir()) == ["mine.txt"]
        assert (victim / "mine.txt").read_text() == "the user's own file\n"
        assert "copied back" not in r.err and "copying" not in r.err, r.err
    finally:
        images = subprocess.run(["docker", "images", "-q", "--filter", f"label=dockrun.project={name}"],
                                capture_output=True, text=True).stdout.split()
        if images:
            subprocess.run(["docker", "rmi", "-f", *images], capture_output=True)
