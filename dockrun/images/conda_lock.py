"""conda lock files: conda's explicit list (``@EXPLICIT``, one ``URL#MD5`` per package, as
`conda list --explicit --md5` prints it), written by `dockrun lock` as ``conda-lock.txt`` beside
conda.yaml and installed exactly by the conda installer (images/conda_install.py)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from typing import Callable

from ..errors import ProjectError
from ..project.source import project_file

CONDA_LOCK_NAME = "conda-lock.txt"
_INPUT = re.compile(r"^#\s*dockrun-lock-input:\s*([0-9a-f]{64})\s*$", re.M)
_PACKAGE = re.compile(r"^(?P<url>[a-z][a-z0-9+.-]*://\S+/[^/\s]+/[^/\s]+\.(?:conda|tar\.bz2))#(?P<md5>[0-9a-f]{32})$")


def conda_lock_file(env_file: str) -> str:
    """Where the lock of ``env_file`` (relative to the project root) belongs: beside it."""
    return str(PurePosixPath(env_file).parent / CONDA_LOCK_NAME)


def conda_lock_digest(canonical_conda: str) -> str:
    """What a lock was resolved from: the canonical conda file (before any channel renaming, so a
    colleague without your DOCKRUN_CONDA_CHANNEL_MAP does not see your lock as stale)."""
    return hashlib.sha256(canonical_conda.encode()).hexdigest()


def conda_lock_header(env_file: str, digest: str) -> str:
    return (f"# Written by `dockrun lock` from {env_file}; builds install exactly these (conda's explicit format).\n"
            f"# Run `dockrun lock` again after changing {env_file}.\n"
            f"# dockrun-lock-input: {digest}\n")


def read_conda_lock(root: Path, env_file: str, canonical: Callable[[], str]) -> tuple[str, ...] | None:
    """The lock beside ``env_file`` as canonical lines (``# platform: ...`` if given, ``@EXPLICIT``,
    then the ``URL#MD5`` lines sorted), or None when there is none. ``canonical`` gives the conda
    file's canonical text, to refuse a lock written for another version of it."""
    rel = conda_lock_file(env_file)
    path = root / rel
    if not path.is_file():
        return None
    path = project_file(root, rel)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ProjectError(f"{rel}: not a text file (expected conda's explicit format)") from None
    recorded = _INPUT.search(text)
    if recorded and recorded.group(1) != conda_lock_digest(canonical()):
        raise ProjectError(f"{rel}: out of date: {env_file} changed since it was written; "
                           "run `dockrun lock` again (or delete it)")
    platform, explicit, packages = None, False, set()
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line.startswith("# platform:"):
            platform = line.split(":", 1)[1].strip()
        elif line == "@EXPLICIT":
            explicit = True
        elif line and not line.startswith("#"):
            m = _PACKAGE.match(line)
            if not m:
                raise ProjectError(f"{rel}: line {n}: expected a package as URL#MD5 (conda's explicit format), "
                                   f"got {line[:80]!r}")
            packages.add(line)
    if not explicit:
        raise ProjectError(f"{rel}: no @EXPLICIT line (expected conda's explicit format; write it with `dockrun lock`)")
    return (*([f"# platform: {platform}"] if platform else []), "@EXPLICIT", *sorted(packages))
