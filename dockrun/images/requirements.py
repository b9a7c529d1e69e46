"""Python environment files as canonical requirement lines: requirements.txt (``-r`` includes
inlined), python_env.yaml, and the pip part of a conda file. Parsed, normalised, de-duplicated and
sorted, so comments, whitespace, quoting and order never change an environment's key; the project's
own code (``-e .``) kept apart for the project image."""
from __future__ import annotations

import posixpath
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ProjectError
from ..project.source import project_file
from ..project.spec import yaml_data


def python_version(version: Any, where: str) -> str:
    """An exact pin (3.10.19) is kept exactly: the image gets that interpreter or the build fails
    naming it. Anything looser (3.10, >=3.9, 3.10.*) picks the minor version."""
    text = str(version).strip()
    exact = re.fullmatch(r"=?=?\s*(\d+\.\d+\.\d+)", text)
    if exact:
        return exact.group(1)
    m = re.match(r"^[=~<>!]*\s*(\d+)\.(\d+)", text)
    if not m:
        raise ProjectError(f"{where}: expected a Python version like 3.11, got {version!r}")
    return f"{m.group(1)}.{m.group(2)}"


def read_yaml(root: Path, rel: str, cache: Path | None = None) -> Any:
    """The project's YAML file ``rel``; with a ``cache`` folder, an unchanged file is read without
    the YAML parser (spec.yaml_data)."""
    try:
        text = project_file(root, rel).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"{rel}: file not found in the project") from None
    return yaml_data(text, rel, cache)


def python_env(root: Path, rel: str, cache: Path | None = None) -> tuple[str | None, tuple[str, ...]]:
    data = read_yaml(root, rel, cache) or {}
    if not isinstance(data, dict):
        raise ProjectError(f"{rel}: expected a mapping with python, build_dependencies, dependencies")
    python = python_version(data["python"], f"{rel}: python") if data.get("python") else None
    lines: list[str] = []
    for field in ("build_dependencies", "dependencies"):
        deps = data.get(field) or []
        if not isinstance(deps, list):
            raise ProjectError(f"{rel}: {field}: expected a list of requirements")
        lines.extend(str(d) for d in deps)
    return python, canonical_lines(root, lines, rel, seen=set())


def canonical_requirements(root: Path, rel: str) -> tuple[str, ...]:
    return canonical_lines(root, _read_requirement_lines(root, rel), rel, seen={rel})


def _read_requirement_lines(root: Path, rel: str) -> list[str]:
    try:
        text = project_file(root, rel).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"{rel}: file not found in the project") from None
    # Join backslash continuations before dropping comments.
    return text.replace("\\\n", " ").splitlines()


def canonical_lines(root: Path, lines: list[str], rel: str, seen: set[str]) -> tuple[str, ...]:
    out: set[str] = set()
    for n, line in enumerate(lines, 1):
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ", "-r", "--requirement=")):
            inc = re.sub(r"^(-r|--requirement)[\s=]*", "", line).strip()
            inc_rel = str(PurePosixPath(rel).parent / inc)
            if PurePosixPath(inc).is_absolute() or ".." in PurePosixPath(inc).parts:
                raise ProjectError(f"{rel}: line {n}: included file {inc!r} must be inside the project")
            if inc_rel not in seen:
                seen.add(inc_rel)
                out.update(canonical_lines(root, _read_requirement_lines(root, inc_rel), inc_rel, seen))
            continue
        if line.startswith(("-e", "--editable", ".", "/")) or line.startswith("file:"):
            out.add(_local_code(root, line, f"{rel}: line {n}"))
            continue
        if line.startswith("-"):
            # Index options belong to the build settings (PIP_INDEX_URL, ...), not the environment.
            raise ProjectError(f"{rel}: line {n}: option {line.split()[0]!r} is not supported in "
                               "environment files; set PIP_INDEX_URL / UV_INDEX_URL instead")
        out.add(canonical_requirement(line, f"{rel}: line {n}"))
    return tuple(sorted(out))


def _local_code(root: Path, line: str, where: str) -> str:
    """A requirement that installs the project's own code (``-e .``, ``./libs/pkg``): kept as
    ``-e ./path`` or ``./path`` (relative to the project root, as pip in the project folder reads
    it), installed in the project image after the code, never in the environment image."""
    editable = line.startswith(("-e", "--editable"))
    target = re.sub(r"^(-e|--editable)[\s=]*", "", line).strip() if editable else line
    if target.startswith("file:") or PurePosixPath(target).is_absolute():
        raise ProjectError(f"{where}: {line!r}: local code must be a path relative to the project (such as -e .)")
    norm = posixpath.normpath(target)
    if norm == ".." or norm.startswith("../"):
        raise ProjectError(f"{where}: {line!r}: local code must be inside the project")
    folder = project_file(root, norm)  # a link to the user's other code is no part of this project
    if not any((folder / f).is_file() for f in ("pyproject.toml", "setup.py", "setup.cfg")):
        raise ProjectError(f"{where}: {line!r}: no pyproject.toml or setup.py in {norm!r}")
    path = "." if norm == "." else "./" + norm
    return ("-e " if editable else "") + path


def is_local_code(requirement: str) -> bool:
    return requirement.startswith(("-e ", "."))


def split_local(reqs: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(r for r in reqs if not is_local_code(r)), tuple(r for r in reqs if is_local_code(r))


def canonical_requirement(line: str, where: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        req = Requirement(line)
    except InvalidRequirement as e:
        raise ProjectError(f"{where}: {line!r} is not a valid requirement ({str(e).splitlines()[0]})") from None
    name = canonicalize_name(req.name)
    extras = f"[{','.join(sorted(canonicalize_name(x) for x in req.extras))}]" if req.extras else ""
    spec = ",".join(sorted(str(s) for s in req.specifier))
    url = f" @ {req.url}" if req.url else ""
    marker = f"; {req.marker}" if req.marker else ""
    return f"{name}{extras}{spec}{url}{marker}"

