"""The host's index and proxy credentials never reach the build of a project from elsewhere unless
the user trusts it, met as an attacker would: through the real CLI, a Git repository whose
requirements name a wheel served over HTTP on the Docker bridge, as a package index would serve it.

An environment build installs the project's packages and starts Python in the environment (bytecode,
installed.json): a `.pth` file in any wheel, or a source distribution's build backend, runs there,
with the build's settings in its environment. A credential in an index or proxy URL
(`https://user:token@...`) is the user's, given for their index; the project's own code could read
it and keep it in its image, print it, or send it anywhere the build reaches.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_bridge import serve_on_bridge
from git_fixtures import new_remote
from wheels import pure_wheel

# At every Python start in the build: append any setting holding the marker to a file in the venv,
# which the project's command prints. Quiet where the venv is not writable (the run's own user).
_STEAL = ("import os; [open('/opt/dockrun/venv/stolen.txt', 'a').write(v + chr(10)) for v in os.environ.values() "
          "if 'S3CRET' in v and os.access('/opt/dockrun/venv', os.W_OK)]\n")


@pytest.fixture(scope="module")
def stealer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A requirement line for a wheel whose `.pth` file copies credentials into the image."""
    # Under a folder of its own name: a new environment key each session, never an image built before.
    folder = tmp_path_factory.mktemp("stealer") / uuid.uuid4().hex
    folder.mkdir()
    name = pure_wheel(str(folder), "stealer", "1.0", {"stealer/__init__.py": "", "zz_stealer.pth": _STEAL})
    with serve_on_bridge(folder.parent, f"{folder.name}/{name}") as url:
        yield f"stealer @ {url}{folder.name}/{name}"


def _attacker(tmp_path: Path, stealer: str):
    files = {"MLproject": "name: stealer\nentry_points:\n  main:\n"
                          "    command: cat /opt/dockrun/venv/stolen.txt 2>/dev/null || echo nothing stolen\n",
             "requirements.txt": f"{stealer}\n"}
    return new_remote(tmp_path / "remotes", "stealer", files)


def _refused(result, name: str, secret: str) -> None:  # noqa: ANN001 - conftest's Result
    assert result.code == 2, result.err[-3000:]
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert name in lines[0] and "--trust" in lines[0], lines[0]
    assert secret not in result.out + result.err
    assert "Traceback" not in result.err


@pytest.mark.usefixtures("no_leaks")
def test_an_index_credential_reaches_a_git_projects_build_only_with_trust(
        cli, tmp_path: Path, stealer: str) -> None:
    secret = f"S3CRET-{uuid.uuid4().hex}"
    # pip's extra index: every build is given it, and uv does not read it, so the build needs no index.
    env = {"PIP_EXTRA_INDEX_URL": f"http://dockrun:{secret}@127.0.0.1:9/simple/"}
    attacker = _attacker(tmp_path, stealer)

    refused = cli("run", attacker.url, env=env, timeout=900)
    _refused(refused, "PIP_EXTRA_INDEX_URL", secret)

    # The user's word hands it over, as it would to `pip install` of the same requirements: the
    # attacker's code had it (which is what the refusal above keeps from happening unasked).
    trusted = cli("run", attacker.url, "--trust", env=env, timeout=900)
    assert trusted.code == 0, trusted.err[-3000:]
    assert secret in trusted.out


@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("setting", [
    {"PIP_INDEX_URL": "https://token:{secret}@127.0.0.1:9/simple/"},
    {"HTTPS_PROXY": "http://me:{secret}@127.0.0.1:9"},
    {"UV_INDEX": "private=https://{secret}@127.0.0.1:9/simple/", "DOCKRUN_ENV_BUILD": "classic"},
], ids=["index", "proxy", "uv-index-classic-builder"])
def test_a_git_project_is_refused_before_its_build_is_given_a_credential(
        cli, home: Path, tmp_path: Path, setting: dict[str, str]) -> None:
    secret = f"S3CRET-{uuid.uuid4().hex}"
    env = {name: value.format(secret=secret) for name, value in setting.items()}
    # A requirement no other build has: its environment is not cached, so it would be built now.
    project = new_remote(tmp_path / "remotes", "project", {
        "MLproject": "name: project\nentry_points:\n  main:\n    command: echo ran\n",
        "requirements.txt": f"never-built-{uuid.uuid4().hex[:12]}==1.0\n"})
    name = next(iter(setting))
    _refused(cli("build", project.url, env=env), name, secret)
    _refused(cli("run", project.url, env=env), name, secret)
    # A sweep needs the same image at every point: one refusal for the sweep, not one per point,
    # and no sweep record of runs that never started.
    _refused(cli("sweep", project.url, "-P", "n=1,2,3", "--parallel", "2", env=env), name, secret)
    assert not list((home / "sweeps").glob("*.json"))
