"""What a resolved project source is. Kept on its own so that every resolver (folder, Git) can
return it without importing the others."""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from ..errors import ProjectError, SourceError


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
    # The key is the tree hash of ``root`` (a local folder, which may change under us): whatever
    # packs the tree later checks what it packed against the key.
    key_is_tree_hash: bool = False


def clean_subdirectory(sub: str, shown: str) -> str:
    """A ``#subdir`` as every resolver takes it: relative, no ``..``, normalised ("" for the root)."""
    if not sub:
        return ""
    if sub.startswith("/") or "\\" in sub or ".." in sub.split("/"):
        raise SourceError(f"{shown}: subdirectory {sub!r} must be a relative path without '..'")
    sub = posixpath.normpath(sub)
    return "" if sub == "." else sub


def project_file(root: Path, rel: str) -> Path:
    """``root / rel``, for reading one of the project's own files (MLproject, environment files,
    locks, .dockerignore). A link that leads outside ``root`` is refused, naming ``rel`` and never
    what it points at: a project from elsewhere must not read the user's files (a token in
    ~/.git-credentials) into an error, a cache key or an image. Links within the project are fine."""
    path = root / rel
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13)
        raise ProjectError(f"{rel}: a link loop in the project") from None
    if not inside:
        raise ProjectError(f"{rel}: links outside the project; dockrun reads only the project's own files")
    return path
