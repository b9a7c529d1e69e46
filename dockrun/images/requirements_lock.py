"""requirements.lock: a python environment resolved once (``dockrun lock``: pinned, with hashes,
beside python_env.yaml or requirements.txt) and installed exactly, with hashes required."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath

from ..errors import ProjectError
from ..project.source import project_file
from ..project.spec import ProjectSpec
from .requirements import canonical_requirement

LOCK_NAME = "requirements.lock"
# `dockrun lock` records what it resolved, so a lock left behind by an edited environment file is
# refused instead of silently installing the old set. A hand-written lock without it is trusted.
_LOCK_INPUT = re.compile(r"^#\s*dockrun-lock-input:\s*([0-9a-f]{64})\s*$", re.M)


def lock_file(project: ProjectSpec) -> str | None:
    """Where a lock file belongs (relative to the root): beside python_env.yaml or
    requirements.txt; None for projects whose environment is not a python one."""
    if project.env_kind not in ("python", "requirements") or not project.env_file:
        return None
    return str(PurePosixPath(project.env_file).parent / LOCK_NAME)


def lock_input_digest(python: str | None, requirements: tuple[str, ...]) -> str:
    """What a lock was resolved from: the canonical requirements and the Python version."""
    text = json.dumps({"python": python, "requirements": list(requirements)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def lock_header(env_file: str, digest: str) -> str:
    return (f"# Written by `dockrun lock` from {env_file}; builds install exactly these, hashes required.\n"
            f"# Run `dockrun lock` again after changing {env_file}.\n"
            f"# dockrun-lock-input: {digest}\n")


def read_lock_file(root: Path, rel: str, digest: str, env_file: str) -> tuple[str, ...]:
    """The lock's canonical lines: one ``name==version --hash=... --hash=...`` per package (names
    normalised, hashes sorted, lines sorted); comments, continuations and spacing do not count."""
    try:
        text = project_file(root, rel).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ProjectError(f"{rel}: not a text file (expected pip's requirements format)") from None
    recorded = _LOCK_INPUT.search(text)
    if recorded and recorded.group(1) != digest:
        raise ProjectError(f"{rel}: out of date: {env_file} changed since it was written; "
                           "run `dockrun lock` again (or delete it)")
    out: set[str] = set()
    for line in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            out.add(_lock_line(re.sub(r"--hash\s+", "--hash=", line), rel))
    return tuple(sorted(out))


def _lock_line(line: str, rel: str) -> str:
    tokens = line.split()
    hashes = sorted(t for t in tokens if t.startswith("--hash="))
    options = [t for t in tokens if t.startswith("-") and not t.startswith("--hash=")]
    text = " ".join(t for t in tokens if not t.startswith("-"))
    if options:
        raise ProjectError(f"{rel}: option {options[0]!r} is not supported in a lock file "
                           "(index settings go in PIP_INDEX_URL / UV_INDEX_URL)")
    requirement = canonical_requirement(text, rel)
    from packaging.requirements import Requirement

    specs = list(Requirement(text).specifier)
    if len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
        raise ProjectError(f"{rel}: {text!r} is not pinned to one version (name==version)")
    if not hashes:
        raise ProjectError(f"{rel}: {text!r} has no --hash; write the lock with `dockrun lock`")
    return " ".join([requirement, *hashes])


def has_hashes(root: Path, rel: str) -> bool:
    """Whether a requirements file carries hashes: pip-compile --generate-hashes output is a lock
    already, installed exactly."""
    try:
        return "--hash" in project_file(root, rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False  # reading it properly reports the problem
