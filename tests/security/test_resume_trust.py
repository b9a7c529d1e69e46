"""`dockrun sweep --resume ID --trust`: the refusal of a Git project's build with the host's index
credential says "rerun with --trust"; a resumed sweep takes that word, as `runs rerun` does, and
refuses in one line any other option given with --resume instead of running without it. Through
the real CLI, a Git repository and a wheel served on the Docker bridge."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from conda_channel import serve_on_bridge

from git_fixtures import new_remote
from wheels import pure_wheel


@pytest.mark.usefixtures("no_leaks")
def test_a_sweep_refused_for_want_of_trust_resumes_with_trust(cli, tmp_path: Path) -> None:
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

        first = cli("sweep", project.url, "-P", "a=1,2", env=env, timeout=900)
        assert first.code == 1, first.err[-3000:]
        assert "PIP_EXTRA_INDEX_URL" in first.err and "rerun with --trust" in first.err
        sweep_id = first.out.split()[1]

        # An option --resume would not use is one line naming it, before anything runs.
        other = cli("sweep", "--resume", sweep_id, "-b", "kubernetes", env=env)
        assert (other.code, other.out) == (2, "")
        assert other.err.startswith(f"dockrun: error: --resume {sweep_id}: --backend: not the sweep's own")
        assert len(other.err.splitlines()) == 1

        # The same line again is the sweep's own; --trust is the user's word.
        trusted = cli("sweep", project.url, "-P", "a=1,2", "--resume", sweep_id, "--trust", env=env, timeout=900)
        assert trusted.code == 0, trusted.err[-3000:]
        assert trusted.out.count("FINISHED") == 2
        assert secret not in trusted.out + trusted.err
