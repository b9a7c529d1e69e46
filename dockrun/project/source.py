"""What a resolved project source is. Kept on its own so that every resolver (folder, Git) can
return it without importing the others."""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError


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
