"""Resolve a project URI (a local folder, an archive or a Git URI, optionally ``#subdirectory``)
to a Source."""
from __future__ import annotations

import os
from pathlib import Path

from .folder import resolve_folder
from .source import Source
from .uri import is_archive_uri


def unquote_uri(uri: str) -> str:
    """The URI without one pair of quotes around it. Some CI systems hand a shell-quoted string
    over verbatim ("'./proj#sub'"); MLflow strips such quotes, so a pipeline moved from ``mlflow
    run`` keeps working. One matching pair only: a name may itself end in a quote."""
    if len(uri) >= 2 and uri[0] == uri[-1] and uri[0] in "'\"":
        return uri[1:-1]
    return uri


def is_git_uri(uri: str) -> bool:
    if is_archive_uri(uri):  # https://host/proj.zip is a download, not a repository
        return False
    base = uri.split("#", 1)[0]
    if base.startswith(("https://", "http://", "ssh://", "git://", "file://", "git+")):
        return True
    # scp-like syntax: user@host:org/repo.git
    return "@" in base and ":" in base and not os.path.exists(base) and "/" not in base.split(":", 1)[0]


def resolve_source(uri: str, version: str | None = None, home: Path | None = None) -> Source:
    uri = unquote_uri(uri)
    if is_archive_uri(uri):
        from .archive import resolve_archive

        return resolve_archive(uri, version, home)
    if is_git_uri(uri):
        from .git import resolve_git  # lazy: the clone cache is only needed for Git URIs

        return resolve_git(uri, version, home)
    return resolve_folder(uri, version, home)
