"""`dockrun run` of a Git project over real protocols, end to end: a smart-HTTP server with basic
auth on 127.0.0.1, credentials from the environment, a subdirectory, a tag; reruns without the
network; no secret in logs, records, the clone cache or the image."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import dockrun_containers
from git_fixtures import GitHttpServer, files_containing, git, git_http_server, serve_remote  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_leaks")

FILES = {
    "README.md": "a repo with a project in a subdirectory\n",
    "sub/MLproject": """name: gitproj
entry_points:
  main:
    parameters: {alpha: float}
    command: "python run.py {alpha}"
""",
    "sub/run.py": "import sys\nprint('version one, alpha', float(sys.argv[1]) * 2)\n",
}


@pytest.fixture
def served(git_http_server: GitHttpServer, tmp_path: Path):  # noqa: F811 - the fixture, imported
    remote = serve_remote(git_http_server, tmp_path / "remotes", "team", dict(FILES))
    git("tag", "v1.2", cwd=remote.work)
    git("push", "-q", "--tags", str(remote.bare), cwd=remote.work)
    remote.push_commit("two", {"sub/run.py": "print('version two')\n"})
    return git_http_server, remote


def test_run_tag_subdirectory_with_credentials_then_offline(cli, served, home: Path, tmp_path: Path) -> None:
    server, remote = served
    uri = server.url("team.git") + "#sub"
    env = {"DOCKRUN_GIT_USERNAME": server.username, "DOCKRUN_GIT_PASSWORD": server.password,
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    r = cli("run", uri, "-v", "v1.2", "-P", "alpha=0.25", env=env)
    assert r.code == 0, r.err
    assert "version one, alpha 0.5" in r.out

    record = json.loads(cli("runs", "show", _latest(cli)).out)
    assert record["commit_sha"] == remote.commits["first"] and record["subdirectory"] == "sub"
    image = record["image"]
    labels = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", image],
                            capture_output=True, text=True, check=True).stdout
    assert remote.commits["first"] in labels

    # The pinned commit again, with the server gone: no network needed.
    server.stop()
    again = cli("run", uri, "-v", remote.commits["first"], "-P", "alpha=1", env=env)
    assert again.code == 0, again.err
    assert "version one, alpha 2.0" in again.out and "building" not in again.err
    # The tag again, with the server gone: the commit it named last time, with a warning saying so.
    tagged = cli("run", uri, "-v", "v1.2", "-P", "alpha=1", env=env)
    assert tagged.code == 0, tagged.err
    assert "version one, alpha 2.0" in tagged.out
    assert (f"dockrun: warning: {server.url('team.git')}: cannot reach the host; using commit "
            f"{remote.commits['first'][:12]}, which v1.2 named when last reached") in tagged.err
    never = cli("run", uri, "-v", "main", env=env)  # never resolved while reachable: an error
    assert never.code == 2 and "cannot reach the host" in never.err

    # The secret is nowhere: not in the state dir (records, logs, clone cache), not in the image.
    assert files_containing(home, server.password) == []
    assert server.password not in r.err + r.out + again.err + tagged.err
    saved = tmp_path / "image.tar"
    subprocess.run(["docker", "save", "-o", str(saved), image], check=True)
    with tarfile.open(saved) as outer:
        for member in outer.getmembers():
            if member.isfile():
                assert server.password.encode() not in outer.extractfile(member).read(), member.name
    assert dockrun_containers() == []


def _latest(cli) -> str:
    return cli("runs", "list").out.splitlines()[1].split()[0]


def test_wrong_password_is_one_line_exit_2(cli, served) -> None:
    server, _ = served
    env = {"DOCKRUN_GIT_USERNAME": server.username, "DOCKRUN_GIT_PASSWORD": "wrong-" + server.password,
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    r = cli("run", server.url("team.git") + "#sub", "-v", "v1.2", "-P", "alpha=1", env=env)
    assert r.code == 2
    assert len(r.err.strip().splitlines()) == 1 and "authentication failed" in r.err
    assert server.password not in r.err


def test_unknown_version_and_missing_subdirectory(cli, served) -> None:
    server, _ = served
    env = {"DOCKRUN_GIT_USERNAME": server.username, "DOCKRUN_GIT_PASSWORD": server.password,
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    r = cli("run", server.url("team.git") + "#sub", "-v", "v9", env=env)
    assert r.code == 2 and "v9" in r.err and len(r.err.strip().splitlines()) == 1
    r = cli("run", server.url("team.git") + "#nope", "-v", "v1.2", env=env)
    assert r.code == 2 and "nope" in r.err and len(r.err.strip().splitlines()) == 1
