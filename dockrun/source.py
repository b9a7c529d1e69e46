"""Resolve a project URI (a local folder or a Git URI) to a local tree and a cache key."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import SourceError
from .treehash import tree_hash


@dataclass(frozen=True)
class Source:
    """A resolved project source.

    ``root`` is the project root on the host (the subdirectory already applied). ``key`` identifies
    the code: the commit plus subdirectory for a clean Git checkout, else a content hash of the
    tree. ``uri`` is safe to show and store (credentials redacted).
    """

    uri: str
    root: Path
    key: str
    commit: str | None = None
    dirty: bool = False
    subdirectory: str = ""


def is_git_uri(uri: str) -> bool:
    base = uri.split("#", 1)[0]
    if base.startswith(("https://", "http://", "ssh://", "git://", "file://", "git+")):
        return True
    # scp-like syntax: user@host:org/repo.git
    return "@" in base and ":" in base and not os.path.exists(base) and "/" not in base.split(":", 1)[0]


def resolve_source(uri: str, version: str | None = None, home: Path | None = None) -> Source:
    """Resolve ``uri`` (folder or Git URI, optionally ``#subdirectory``) to a Source."""
    if is_git_uri(uri):
        from .git_source import resolve_git  # lazy: GitPython is slow to import

        return resolve_git(uri, version, home)
    return resolve_folder(uri, version)


def resolve_folder(uri: str, version: str | None = None) -> Source:
    path_part, _, subdirectory = uri.partition("#")
    if version:
        raise SourceError(f"{uri}: --version applies to Git URIs only, not to a local folder")
    root = Path(path_part).expanduser()
    if not root.is_dir():
        raise SourceError(f"{uri}: no such project folder")
    root = root.resolve()
    if subdirectory:
        root = _subdirectory(root, subdirectory, uri)
    from .git_source import local_git_info

    # A folder in a Git work tree records its commit and whether it was dirty; its key stays the
    # content hash either way, because ignored and untracked files still enter the build context.
    info = local_git_info(root)
    commit, dirty = info if info else (None, False)
    return Source(uri=str(root), root=root, key=tree_hash(root), commit=commit, dirty=dirty,
                  subdirectory=subdirectory)


def _subdirectory(root: Path, sub: str, uri: str) -> Path:
    parts = Path(sub).parts
    if sub.startswith("/") or ".." in parts:
        raise SourceError(f"{uri}: subdirectory {sub!r} must be relative to the project and may not contain '..'")
    target = root / sub
    if not target.is_dir():
        raise SourceError(f"{uri}: subdirectory {sub!r} does not exist")
    return target
