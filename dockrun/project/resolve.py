"""Resolve a project URI (a local folder or a Git URI, optionally ``#subdirectory``) to a Source."""
from __future__ import annotations

import os
from pathlib import Path

from .folder import resolve_folder
from .source import Source


def is_git_uri(uri: str) -> bool:
    base = uri.split("#", 1)[0]
    if base.startswith(("https://", "http://", "ssh://", "git://", "file://", "git+")):
        return True
    # scp-like syntax: user@host:org/repo.git
    return "@" in base and ":" in base and not os.path.exists(base) and "/" not in base.split(":", 1)[0]


def resolve_source(uri: str, version: str | None = None, home: Path | None = None) -> Source:
    if is_git_uri(uri):
        from .git import resolve_git  # lazy: the clone cache is only needed for Git URIs

        return resolve_git(uri, version, home)
    return resolve_folder(uri, version)
