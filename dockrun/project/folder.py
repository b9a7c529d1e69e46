"""A local folder as a project source, keyed by the content hash of its tree."""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from ..errors import SourceError
from .git import local_git_info
from .source import Source
from .treehash import tree_hash


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
    # A folder in a Git work tree records its commit and whether it was dirty; its key stays the
    # content hash either way, because ignored and untracked files still enter the build context.
    info = local_git_info(root)
    commit, dirty = info if info else (None, False)
    return Source(uri=str(root), root=root, key=tree_hash(root), commit=commit, dirty=dirty,
                  subdirectory=subdirectory)


def _subdirectory(root: Path, sub: str, uri: str) -> Path:
    if sub.startswith("/") or ".." in PurePosixPath(sub).parts:
        raise SourceError(f"{uri}: subdirectory {sub!r} must be relative to the project and may not contain '..'")
    target = root / sub
    if not target.is_dir():
        raise SourceError(f"{uri}: subdirectory {sub!r} does not exist")
    return target
