"""Links in what a run writes back that lead out through one another: each link alone stays inside
its folder (``a -> .``, then ``b -> a/..``), together ``b`` is the folder's parent. Such a link is
not created, like any link that leads out, in an output folder put in place on the host and in
what a run copies back from the engine; and in $DOCKRUN_OUTPUT_DIR, which on a local engine is
the run's folder mounted, a link leading out (to a file of the user's) does not stay. Through the
real CLI on the real engine."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import write_project

pytestmark = pytest.mark.usefixtures("no_leaks")

CHAIN = "ln -s . a && ln -s a/.. b && ln -s b/b/b/b/b/etc c"


@pytest.mark.parametrize("remote", ["0", "1"])
def test_links_that_lead_out_through_one_another_are_not_created(
        cli, tmp_path: Path, base_image: str, home: Path, remote: str) -> None:
    secret = tmp_path / "users-own.txt"  # a file of the user's, which the container never sees
    secret.write_text("secret\n")
    root = write_project(tmp_path / "proj", {"MLproject": (
        f"name: chained\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        "    parameters:\n      out: path\n"
        f"    command: \"mkdir -p {{out}} && cd {{out}} && echo hi > f && {CHAIN}"
        f" && cd $DOCKRUN_OUTPUT_DIR && {CHAIN} && ln -s {secret} key\"\n")})
    place = tmp_path / "place"
    place.mkdir()
    out = place / "results"
    r = cli("run", str(root), "-q", "-P", f"out={out}", env={"DOCKRUN_REMOTE_ENGINE": remote})
    assert r.code == 0, r.err
    assert (out / "f").read_text() == "hi\n" and os.readlink(out / "a") == "."
    for name in ("b", "c"):
        assert not os.path.lexists(out / name), f"{out / name} -> {os.readlink(out / name)}"
    assert "were not created" in r.err, r.err
    # $DOCKRUN_OUTPUT_DIR: the run's folder mounted (local engine), or copied back: the same rule
    [run_dir] = (home / "runs").iterdir()
    outputs = run_dir / "outputs"
    assert os.readlink(outputs / "a") == "."
    for name in ("b", "c", "key"):
        assert not os.path.lexists(outputs / name), f"{outputs / name} -> {os.readlink(outputs / name)}"
