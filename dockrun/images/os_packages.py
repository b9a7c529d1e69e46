"""apt.txt: the OS packages a project's environment needs (as repo2docker reads it).

One Debian package name per line (``name`` or ``name=version``), ``#`` comments and blank lines
ignored; the file sits beside the environment file (the project root when there is none). The
canonical form (sorted, de-duplicated) is part of the environment key, and the packages are
installed in the environment's OS layer (templates/_macros.j2, ``os_packages``).
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from ..errors import ProjectError
from ..project.source import project_file

APT_FILE = "apt.txt"
# Debian policy: a package name is [a-z0-9][a-z0-9+.-]+; an optional =version, in Debian's alphabet.
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?")


def apt_file(env_file: str | None) -> str:
    """Where apt.txt belongs, relative to the project root."""
    return str(PurePosixPath(env_file).parent / APT_FILE) if env_file else APT_FILE


def read_apt_file(root: Path, env_file: str | None) -> tuple[str, ...]:
    """The canonical package list of the project's apt.txt; () when it has none."""
    rel = apt_file(env_file)
    path = root / rel
    if not path.is_file():
        return ()
    try:
        text = project_file(root, rel).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ProjectError(f"{rel}: not a text file (expected one Debian package name per line)") from None
    packages: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not _PACKAGE.fullmatch(line):
            raise ProjectError(f"{rel}: line {n}: {line!r} is not a Debian package name "
                               "(expected one name per line, such as jq or libgomp1=12.2.0-14)")
        packages.add(line)
    return tuple(sorted(packages))
