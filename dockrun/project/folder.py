"""A local folder as a project source, keyed by the content hash of its tree."""
from __future__ import annotations

from pathlib import Path

from ..errors import SourceError
from .source import Source, clean_subdirectory
from .treehash import tree_hash
from .worktree import local_git_info


def resolve_folder(uri: str, version: str | None = None, home: Path | None = None) -> Source:
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
    # Under a dockrun home, an unchanged tree is recognised by its stats instead of re-read.
    key = tree_hash(root, home / "cache" / "treehash" if home else None)
    return Source(uri=str(root), root=root, key=key, commit=commit, dirty=dirty,
                  subdirectory=subdirectory, key_is_tree_hash=True)


def _subdirectory(root: Path, sub: str, uri: str) -> Path:
    target = root / clean_subdirectory(sub, uri)
    if not target.is_dir():
        raise SourceError(f"{uri}: subdirectory {sub!r} does not exist")
    if not target.resolve().is_relative_to(root):  # a symlink out of the project
        raise SourceError(f"{uri}: subdirectory {sub!r} leads outside the project")
    return target
