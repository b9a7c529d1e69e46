"""A sweep of a Git project whose build would be given the host's index credential is refused once,
in one line, "rerun with --trust"; with it, the sweep runs. A resumed sweep takes that word, as
`runs rerun` does, and refuses in one line any other option given with --resume instead of running
without it. Through
the real CLI, a Git repository and a wheel served on the Docker bridge."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from docker_bridge import serve_on_bridge
from git_fixtures import new_remote
from wheels import pure_wheel


@pytest.mark.usefixtures("no_leaks")
def test_a_sweep_refused_for_want_of_trust_runs_with_trust(cli, home: Path, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:12]  # a requirement no other build has: its environment is built here
    wheels = tmp_path / "wheels" / tag
    wheels.mkdir(parents=True)
    wheel = pure_wheel(str(wheels), f"resume{tag}", "1.0", {f"resume{tag}/__init__.py": ""})
    secret = f"S3CRET-{uuid.uuid4().hex}"
    # pip's extra index: every build is given it, and uv does not read it, so the build needs no index.
    env = {"PIP_EXTRA_INDEX_URL": f"http://dockrun:{secret}@127.0.0.1:9/simple/"}
    with serve_on_bridge(wheels.parent, f"{tag}/{wheel}") as url:
        project = new_remote(tmp_path / "remotes", "project", {
            "MLproject": "name: project\nentry_points:\n  main:\n    command: echo ran\n",
            "requirements.txt": f"resume{tag} @ {url}{tag}/{wheel}\n"})

        # Every point needs the one image: refused once, before any point starts, and no record of
        # a sweep that never ran.
        first = cli("sweep", project.url, "-P", "a=1,2", env=env, timeout=900)
        assert (first.code, first.out) == (2, ""), first.err[-3000:]
        assert len(first.err.splitlines()) == 1
        assert "PIP_EXTRA_INDEX_URL" in first.err and "rerun with --trust" in first.err
        assert not list((home / "sweeps").glob("*.json"))

        trusted = cli("sweep", project.url, "-P", "a=1,2", "--trust", env=env, timeout=900)
        assert trusted.code == 0, trusted.err[-3000:]
        assert trusted.out.count("FINISHED") == 2
        assert secret not in trusted.out + trusted.err
        sweep_id = trusted.out.split()[1]

        # An option --resume would not use is one line naming it, before anything runs.
        other = cli("sweep", "--resume", sweep_id, "-b", "kubernetes", env=env)
        assert (other.code, other.out) == (2, "")
        assert other.err.startswith(f"dockrun: error: --resume {sweep_id}: --backend: not the sweep's own")
        assert len(other.err.splitlines()) == 1

        # The same line again is the sweep's own, --trust included: nothing left to run.
        again = cli("sweep", project.url, "-P", "a=1,2", "--resume", sweep_id, "--trust", env=env, timeout=900)
        assert again.code == 0, again.err[-3000:]
        assert again.out.count("FINISHED") == 2
