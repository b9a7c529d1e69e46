"""Git's config names commands, and a repository someone else wrote sets its config (issue 20.7).

(a) A local folder project is looked at with `git status` (its commit and dirtiness go into the
record); a `.git` that came with the folder (an unpacked archive, a copied checkout) can set
core.fsmonitor or a clean filter, which git status would run. dockrun's git runs none of them.
(b) A Git project's submodules with file:// URLs would copy the user's other local repositories
into the image; as plain git, dockrun refuses them (the user's own git config can allow them).

Through the real CLI against the real engine and real repositories."""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest

from git_fixtures import add_submodule, commit, git, new_remote

MLPROJECT = "name: cfg\nentry_points:\n  main:\n    command: cat note.txt\n"


def _plain_git(tmp_path: Path) -> dict[str, str]:
    """A user with git's defaults: no system or global config of this machine."""
    return {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def _script(path: Path, marker: Path, body: str = "") -> Path:
    path.write_text(f"#!/bin/sh\ntouch '{marker}'\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "folder"
    git("init", "-q", str(root))
    commit(root, {"MLproject": MLPROJECT, "note.txt": "the folder's own note\n"}, "init")
    return root


@pytest.mark.parametrize("command", ["build", "run"])
def test_local_folder_fsmonitor_is_not_run(cli, folder: Path, tmp_path: Path, command: str, no_leaks) -> None:
    marker = tmp_path / "FSMONITOR-RAN"
    hook = _script(tmp_path / "fsmonitor.sh", marker)
    git("config", "core.fsmonitor", str(hook), cwd=folder)
    result = cli(command, str(folder), env=_plain_git(tmp_path))
    assert result.code == 0, result.err
    assert not marker.exists()


@pytest.mark.parametrize("driver", ["evil", "x=y"])  # git -c would split "filter.x=y.clean=" at its first "="
def test_local_folder_clean_filter_is_not_run(cli, folder: Path, tmp_path: Path, driver: str, no_leaks) -> None:
    """git status re-reads a tracked file whose stats changed through its clean filter."""
    marker = tmp_path / "FILTER-RAN"
    filt = _script(tmp_path / "filter.sh", marker, "cat\n")
    git("config", f"filter.{driver}.clean", str(filt), cwd=folder)
    git("config", f"filter.{driver}.required", "true", cwd=folder)
    (folder / ".git" / "info").mkdir(exist_ok=True)
    (folder / ".git" / "info" / "attributes").write_text(f"* filter={driver}\n")
    os.utime(folder / "note.txt", (1_000_000_000, 1_000_000_000))  # stats differ from the index
    result = cli("run", str(folder), env=_plain_git(tmp_path))
    assert result.code == 0, result.err
    assert "the folder's own note" in result.out
    assert not marker.exists()


def test_local_folder_partial_clone_fetches_nothing(cli, tmp_path: Path, no_leaks) -> None:
    """A partial clone fetches missing objects when git status needs them, through the remote's
    upload-pack, which the repository's config names: a command of the folder's choosing."""
    source = tmp_path / "source"
    git("init", "-q", str(source))
    commit(source, {"d/a.txt": "a\n"}, "init")
    git("config", "uploadpack.allowFilter", "true", cwd=source)
    folder = tmp_path / "partial"
    git("clone", "-q", "--filter=tree:0", "--no-checkout", source.as_uri(), str(folder))
    marker = tmp_path / "UPLOAD-PACK-RAN"
    pack = _script(tmp_path / "upload-pack.sh", marker, 'exec git-upload-pack "$@"\n')
    git("config", "remote.origin.uploadpack", str(pack), cwd=folder)
    (folder / "MLproject").write_text(MLPROJECT)
    (folder / "note.txt").write_text("partial\n")
    result = cli("run", str(folder), env=_plain_git(tmp_path))
    assert result.code == 0, result.err
    assert "partial" in result.out
    assert not marker.exists()


def test_file_submodule_of_a_remote_is_refused(cli, home: Path, tmp_path: Path) -> None:
    """The project's .gitmodules points at another local repository (the user's private one)."""
    token = "PRIVATE-MARKER-" + secrets.token_hex(8)
    private = new_remote(tmp_path, "private", {"secret.txt": token + "\n"})
    proj = new_remote(tmp_path, "proj", {"MLproject": MLPROJECT, "note.txt": "x\n"})
    add_submodule(proj, private.url, "vendor", "with-private")
    result = cli("build", proj.url, env=_plain_git(tmp_path))
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "submodule" in lines[0] and "file://" in lines[0], result.err
    assert token not in result.out + result.err
    found = [str(p) for p in home.rglob("*") if p.is_file() and not p.is_symlink() and token.encode() in p.read_bytes()]
    assert found == []
    trees = home / "git" / "trees"
    assert not trees.is_dir() or [p.name for p in trees.iterdir()] == []  # no checkout kept, none half-made
