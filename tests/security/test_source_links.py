"""A project from elsewhere cannot read the user's files through a link (issue 20.6): a Git
repository whose requirements.txt is a link to ~/.git-credentials once had the token printed in the
error. Every project file dockrun reads (MLproject, environment files, locks, .dockerignore) is read
only when it stays inside the project; a link out is refused with one line naming the file, never
its target's content. Through the real CLI, against real file:// repositories and the engine."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from conftest import write_project
from git_fixtures import RemoteRepo, git, new_remote

MLPROJECT = "name: linked\nentry_points:\n  main:\n    command: cat note.txt\n"


@pytest.fixture
def secret(tmp_path: Path) -> tuple[Path, str]:
    """The user's own credentials file in a HOME of the test's own; its content is the secret."""
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    token = "SECRET-MARKER-" + secrets.token_hex(8)
    creds = user_home / ".git-credentials"
    creds.write_text(f"https://alice:{token}@git.example.invalid\n")
    return creds, token


def _env(tmp_path: Path, creds: Path) -> dict[str, str]:
    # A plain git setup (nothing of this machine's config) and the HOME that holds the secret.
    return {"HOME": str(creds.parent), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def _repo_with_link(tmp_path: Path, files: dict[str, str], link: str, target: str) -> RemoteRepo:
    remote = new_remote(tmp_path, "proj", files)
    path = remote.work / link
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    remote.push_commit("linked", {})
    return remote


def _files_holding(folder: Path, needle: str) -> list[str]:
    """Regular files under ``folder`` that hold ``needle``; links are not followed (a link in the
    clone cache is no copy of what it points at)."""
    hits = []
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            if needle.encode() in path.read_bytes():
                hits.append(str(path))
    return hits


def _assert_refused(result, link: str, token: str, home: Path | None) -> None:
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("dockrun: error: ") and link in lines[0] and "links outside the project" in lines[0]
    assert token not in result.out + result.err
    if home is not None:
        assert _files_holding(home, token) == []


# (project files, the link, what the link stands for): every file dockrun reads from a project.
CASES = {
    "requirements.txt": ({}, "requirements.txt"),
    "requirements include": ({"requirements.txt": "-r extra.txt\n"}, "extra.txt"),
    "MLproject": ({"note.txt": "x\n"}, "MLproject"),
    "python_env.yaml": ({}, "python_env.yaml"),
    "conda.yaml": ({}, "conda.yaml"),
    "requirements.lock": ({"python_env.yaml": "dependencies: []\n"}, "requirements.lock"),
    "conda-lock.txt": ({"conda.yaml": "channels: [conda-forge]\ndependencies: [python=3.11]\n"}, "conda-lock.txt"),
    ".dockerignore": ({"MLproject": MLPROJECT, "note.txt": "x\n"}, ".dockerignore"),
    "apt.txt": ({"requirements.txt": "six\n"}, "apt.txt"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_git_project_file_linking_outside_is_refused(cli, home: Path, tmp_path: Path, secret, case: str) -> None:
    creds, token = secret
    files, link = CASES[case]
    files = {"note.txt": "x\n", **files}
    remote = _repo_with_link(tmp_path, files, link, str(creds))
    result = cli("build", remote.url, env=_env(tmp_path, creds))
    _assert_refused(result, link, token, home)


def test_relative_link_climbing_out_of_the_clone_cache_is_refused(cli, home: Path, tmp_path: Path, secret) -> None:
    creds, token = secret
    remote = _repo_with_link(tmp_path, {"note.txt": "x\n"}, "requirements.txt", "../" * 40 + str(creds).lstrip("/"))
    result = cli("run", remote.url, env=_env(tmp_path, creds))
    _assert_refused(result, "requirements.txt", token, home)


def test_link_out_of_a_subdirectory_project_is_refused(cli, home: Path, tmp_path: Path, secret) -> None:
    """The project is the subdirectory: a link to the repository's other files (or beyond) leaves it."""
    creds, token = secret
    remote = _repo_with_link(tmp_path, {"sub/note.txt": "x\n", "top.txt": token + "\n"}, "sub/requirements.txt",
                             "../top.txt")
    result = cli("build", remote.url + "#sub", env=_env(tmp_path, creds))
    _assert_refused(result, "requirements.txt", token, None)  # the clone cache holds the commit, top.txt too


def test_local_folder_environment_file_linking_outside_is_refused(cli, home: Path, tmp_path: Path, secret) -> None:
    """A local folder's environment file is baked into the image: the same rule."""
    creds, token = secret
    root = write_project(tmp_path / "folder", {"MLproject": MLPROJECT, "note.txt": "x\n"})
    os.symlink(creds, root / "requirements.txt")
    result = cli("build", str(root), env=_env(tmp_path, creds))
    _assert_refused(result, "requirements.txt", token, home)


def test_local_code_linking_outside_is_refused(cli, home: Path, tmp_path: Path, secret) -> None:
    """`-e ./libs/pkg` where libs links to the user's other code: not the project's to install."""
    creds, token = secret
    other = write_project(creds.parent / "private-pkg", {"pyproject.toml": f"# {token}\n"})
    remote = _repo_with_link(tmp_path, {"note.txt": "x\n", "requirements.txt": "-e ./libs\n"}, "libs", str(other))
    result = cli("build", remote.url, env=_env(tmp_path, creds))
    _assert_refused(result, "libs", token, home)


def test_links_inside_the_project_are_followed(cli, home: Path, tmp_path: Path, secret, no_leaks) -> None:
    """MLproject and .dockerignore as links to files of the same commit: the run works as before."""
    creds, _ = secret
    remote = new_remote(tmp_path, "inside", {"conf/MLproject": MLPROJECT, "conf/ignore": "secret.txt\n",
                                             "note.txt": "from the linked project\n", "secret.txt": "no\n"})
    os.symlink("conf/MLproject", remote.work / "MLproject")
    os.symlink("conf/ignore", remote.work / ".dockerignore")
    remote.push_commit("linked", {})
    result = cli("run", remote.url, env=_env(tmp_path, creds))
    assert result.code == 0, result.err
    assert "from the linked project" in result.out
    assert git("cat-file", "-t", "HEAD:MLproject", cwd=remote.work) == "blob"
