"""What Git says of a local folder's work tree (HEAD commit, dirty), and git's environment
without what would point it at another repository. Apart from git.py (Git URIs, the clone cache):
a folder's run needs only this, and outside a repository not even a git process."""
from __future__ import annotations

import os
from pathlib import Path

# Variables that would point git at some other repository than the one named by -C / cwd.
_REPO_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
              "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_COMMON_DIR", "GIT_PREFIX")


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPO_VARS}
    # Never prompt (a prompt would hang a detached run), and English messages for git.py's _diagnose.
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    return env


def local_git_info(path: Path) -> tuple[str, bool] | None:
    """(HEAD commit, dirty) of the Git work tree holding ``path``; None if there is none or it has
    no commit. Only changes inside ``path`` count: the rest of the repository is not part of the
    project. Files Git ignores do not count either.

    The folder's repository may come from anyone (an unpacked archive with a ``.git``), and its
    config can name commands that ``git status`` runs: an fsmonitor hook, a clean filter for files
    whose stats changed, a lazy fetch through a promisor remote (with its own upload-pack), a
    post-index-change hook. All of them are switched off here (_QUIET_GIT, _filters_off);
    submodules are compared by commit only, never entered (their configs would be read)."""
    if not _may_be_in_work_tree(path):  # most runs outside a repository need no git process
        return None
    import subprocess  # here: a folder outside a repository starts none
    env = {**base_env(), "GIT_NO_LAZY_FETCH": "1"}
    filters = _filters_off(path, env)
    if filters is None:
        return None
    try:
        proc = subprocess.run(
            ["git", *_QUIET_GIT, "--no-optional-locks", "status", "--porcelain=v2", "--branch",
             "--untracked-files=normal", "--ignore-submodules=dirty", "--", "."],
            cwd=path, env={**env, **filters}, stdin=subprocess.DEVNULL, capture_output=True)
    except OSError:  # no git binary, or path is not a directory
        return None
    if proc.returncode != 0:
        return None
    lines = proc.stdout.decode("utf-8", "replace").splitlines()
    oid = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
    if oid is None or oid == "(initial)":
        return None
    return oid, any(line and not line.startswith("#") for line in lines)


# Config a repository can set that makes git start a program while it only looks at a work tree.
_QUIET_GIT = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "protocol.allow=never")


def _filters_off(path: Path, env: dict[str, str]) -> dict[str, str] | None:
    """Variables that empty every filter driver git's config defines (a clean filter runs when
    ``git status`` re-reads a file whose stats changed); None when git cannot read the repository.
    Reading config runs nothing: no index, no hooks. Given as GIT_CONFIG_KEY_n/VALUE_n, not ``-c``:
    ``-c`` splits at the first "=", and a driver may be named ``x=y``."""
    import subprocess

    try:
        proc = subprocess.run(["git", "config", "--null", "--name-only", "--get-regexp", r"^filter\."],
                              cwd=path, env=env, stdin=subprocess.DEVNULL, capture_output=True)
    except OSError:
        return None
    if proc.returncode not in (0, 1):  # 1: no filter configured
        return None
    drivers = {name.decode("utf-8", "surrogateescape").rsplit(".", 1)[0]
               for name in proc.stdout.split(b"\0") if name.count(b".") >= 2}
    try:
        count = int(env.get("GIT_CONFIG_COUNT") or 0)  # the user's own, kept
    except ValueError:
        return None
    off: dict[str, str] = {}
    for driver in sorted(drivers):  # "filter.NAME"; an empty command is no filter
        for key, value in (("clean", ""), ("process", ""), ("required", "false")):
            off[f"GIT_CONFIG_KEY_{count}"], off[f"GIT_CONFIG_VALUE_{count}"] = f"{driver}.{key}", value
            count += 1
    return {**off, "GIT_CONFIG_COUNT": str(count)} if off else {}


def _may_be_in_work_tree(path: Path) -> bool:
    """Whether git's own discovery could find a repository for ``path``: a ``.git`` (folder or
    file) in it or a folder above, or one of them a repository's git folder itself (HEAD and
    objects). A few stats, against a git process of several milliseconds. GIT_DIR and the other
    variables that would point git elsewhere are not passed to it (_base_env)."""
    folder = path.resolve()
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate / ".git") or (
                os.path.isfile(candidate / "HEAD") and os.path.isdir(candidate / "objects")):
            return True
    return False
