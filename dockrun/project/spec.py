"""Parse an MLflow project (MLproject file or conventions) into frozen data.

Everything after ``load_project`` is pure computation: see params.py for rendering commands.
"""
from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ProjectError
from .source import project_file

log = logging.getLogger("dockrun")

PARAM_TYPES = ("string", "str", "float", "double", "int", "integer", "long", "bool", "boolean", "path", "uri")
# Aliases seen in real MLproject files; each maps to the type whose validation it gets.
_TYPE_ALIASES = {"str": "string", "double": "float", "integer": "int", "long": "int", "boolean": "bool"}
# Scripts runnable by path without an MLproject entry, as under `mlflow run -e`. MLflow wraps .R in
# its R package's mlflow_source(); the images hold no such package, so plain Rscript runs it.
_SCRIPT_INTERPRETERS = {".py": "python", ".sh": "bash", ".R": "Rscript"}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str = "string"
    default: str | None = None


@dataclass(frozen=True)
class EntryPoint:
    name: str
    command: str
    parameters: tuple[Parameter, ...] = ()


@dataclass(frozen=True)
class DockerEnv:
    image: str
    volumes: tuple[str, ...] = ()
    # (NAME, value) pairs; value None means "copy NAME from the host environment".
    environment: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    root: Path
    # "conda" (conda_env / conda.yaml), "python" (python_env), "requirements" (requirements.txt),
    # "docker" (docker_env) or "none".
    env_kind: str
    env_file: str | None = None  # relative to root
    docker_env: DockerEnv | None = None
    entry_points: Mapping[str, EntryPoint] = field(default_factory=dict)
    mlproject: bool = False

    def entry_point(self, name: str) -> EntryPoint:
        """The declared entry point ``name``, or a script in the project run by its path."""
        if name in self.entry_points:
            return self.entry_points[name]
        path = PurePosixPath(name.replace("\\", "/"))
        if path.suffix in _SCRIPT_INTERPRETERS:
            if path.is_absolute() or ".." in path.parts:
                raise ProjectError(f"entry point {name!r}: a script entry point must be a path inside the project")
            if not (self.root / path).is_file():
                raise ProjectError(f"entry point {name!r}: no such file in the project")
            if not (self.root / path).resolve().is_relative_to(self.root.resolve()):  # a symlink out
                raise ProjectError(f"entry point {name!r}: a script entry point must be a path inside the project")
            interpreter = _SCRIPT_INTERPRETERS[path.suffix]
            # "./-c.py", not "-c.py": the interpreter would read the name as its option.
            script = str(path) if not str(path).startswith("-") else f"./{path}"
            return EntryPoint(name=name, command=f"{interpreter} {shlex.quote(script)}")
        if not self.mlproject:
            scripts = sorted(p.name for p in self.root.iterdir() if p.suffix in _SCRIPT_INTERPRETERS and p.is_file())
            example = f", e.g. -e {scripts[0]}" if scripts else ""
            raise ProjectError(f"{self.name}: this project has no MLproject, so no entry point {name!r}: name a script "
                               f"to run with -e{example}")
        known = ", ".join(sorted(self.entry_points)) or "none declared"
        where = "MLproject"
        raise ProjectError(
            f"{where}: entry_points: no entry point {name!r} (declared: {known}; "
            "or give a .py/.sh/.R path relative to the project root)"
        )


def yaml_problem(e: Exception) -> str:
    """What is wrong with a YAML text, on one line (PyYAML's own messages span several)."""
    problem = getattr(e, "problem", None) or str(e)
    return str(problem).strip().splitlines()[0] if str(problem).strip() else type(e).__name__


def find_mlproject(root: Path) -> Path | None:
    for name in ("MLproject", "mlproject", "MLProject"):
        if (root / name).is_file():
            return project_file(root, name)
    return None


def load_project(root: Path, cache: Path | None = None) -> ProjectSpec:
    """Read ``root``'s MLproject file, or apply MLflow's conventions when there is none. With a
    ``cache`` folder, what YAML made of a text is kept there (named by the text's SHA-256), so a
    rerun of an unchanged file needs no YAML parser; validation always runs on the data."""
    path = find_mlproject(root)
    if path is None:
        return _conventions(root)
    text = path.read_text(encoding="utf-8")
    data = yaml_data(text, path.name, cache)
    if not isinstance(data, dict):
        raise ProjectError(f"{path.name}: expected a mapping with name, an environment and entry_points")
    return _from_mlproject(root, path.name, data)


_CACHE_FORMAT = b"mlproject-yaml-1\0"


def yaml_data(text: str, fname: str, cache: Path | None) -> Any:
    """``yaml.safe_load(text) or {}`` (the MLproject, python_env.yaml), through the cache when one
    is given. Only data that JSON gives back exactly is kept (no dates, no non-string keys), and
    only a text that parsed: an invalid file is reported on every run, by YAML itself."""
    import hashlib
    import json

    entry = None
    if cache is not None:
        entry = cache / (hashlib.sha256(_CACHE_FORMAT + text.encode("utf-8")).hexdigest() + ".json")
        try:
            return json.loads(entry.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # not cached yet (or unreadable): parse
    import yaml  # here: `dockrun runs` and the supervisor import this module and parse nothing

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ProjectError(f"{fname}: not valid YAML{where}: {yaml_problem(e)}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ProjectError(f"{fname}: its YAML is nested too deeply") from None
    _check_size(data, fname)
    if entry is not None:
        _keep(entry, data)
    return data


# YAML's aliases share a value rather than copy it: nine levels of nine aliases are a few hundred
# bytes of text and 387 million values to whatever walks the data (the cache's json.dumps, str() of
# a dependency). No project file comes near this many.
MAX_YAML_VALUES = 100_000


def _check_size(data: Any, fname: str) -> None:
    """Count ``data``'s values as a walk meets them (aliases followed), stopping at the limit."""
    left, stack = MAX_YAML_VALUES, [data]
    while stack:
        item = stack.pop()
        left -= 1
        if left < 0:
            raise ProjectError(f"{fname}: more than {MAX_YAML_VALUES:,} values once its YAML aliases are "
                               "followed; not read")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _keep(entry: Path, data: Any) -> None:
    """Write ``data`` to the cache if JSON round-trips it exactly (atomically; best effort)."""
    import json

    from ..locks import write_atomic

    try:
        encoded = json.dumps(data, allow_nan=False)
        if json.loads(encoded) != data:
            return
        write_atomic(entry, encoded)
    except (TypeError, ValueError, OSError):
        pass  # not JSON data, or nowhere to write: parse again next time


def _conventions(root: Path) -> ProjectSpec:
    env_kind, env_file = _default_env(root)
    return ProjectSpec(name=root.name, root=root, env_kind=env_kind, env_file=env_file)


def _default_env(root: Path) -> tuple[str, str | None]:
    if (root / "conda.yaml").is_file():
        return "conda", "conda.yaml"
    if (root / "python_env.yaml").is_file():
        return "python", "python_env.yaml"
    if (root / "requirements.txt").is_file():
        return "requirements", "requirements.txt"
    return "none", None


def _from_mlproject(root: Path, fname: str, data: dict[str, Any]) -> ProjectSpec:
    envs = [k for k in ("conda_env", "python_env", "docker_env") if data.get(k) is not None]
    if len(envs) > 1:
        raise ProjectError(f"{fname}: declares {' and '.join(envs)}; a project has one environment")
    name = data.get("name", root.name)
    if not isinstance(name, (str, int, float)):
        raise ProjectError(f"{fname}: name: expected a string")
    docker_env = None
    if envs == ["docker_env"]:
        env_kind, env_file = "docker", None
        docker_env = _docker_env(fname, data["docker_env"])
    elif envs:
        key = envs[0]
        env_file = data[key]
        if not isinstance(env_file, str) or not env_file:
            raise ProjectError(f"{fname}: {key}: expected a file name relative to the project")
        rel = PurePosixPath(env_file)
        if rel.is_absolute() or ".." in rel.parts:
            raise ProjectError(f"{fname}: {key}: {env_file!r} must be a path inside the project")
        if not (root / env_file).is_file():
            raise ProjectError(f"{fname}: {key}: file {env_file!r} not found in the project")
        env_kind = "conda" if key == "conda_env" else "python"
    else:
        # As in MLflow: an MLproject that declares no environment still gets conda.yaml if present.
        env_kind, env_file = _default_env(root)
    eps = data.get("entry_points") or {}
    if not isinstance(eps, dict):
        raise ProjectError(f"{fname}: entry_points: expected a mapping of entry point names")
    entry_points = {str(k): _entry_point(fname, str(k), v) for k, v in eps.items()}
    return ProjectSpec(
        name=str(name),
        root=root,
        env_kind=env_kind,
        env_file=env_file,
        docker_env=docker_env,
        entry_points=entry_points,
        mlproject=True,
    )


def _docker_env(fname: str, raw: Any) -> DockerEnv:
    if not isinstance(raw, dict) or not isinstance(raw.get("image"), str) or not raw["image"]:
        raise ProjectError(f"{fname}: docker_env: expected a mapping with an 'image' string")
    volumes = raw.get("volumes") or []
    if not isinstance(volumes, list) or not all(isinstance(v, str) for v in volumes):
        raise ProjectError(f"{fname}: docker_env.volumes: expected a list of 'HOST:CONTAINER[:MODE]' strings")
    env: list[tuple[str, str | None]] = []
    for item in raw.get("environment") or []:
        if isinstance(item, str):
            env.append((item, None))
        elif isinstance(item, list) and len(item) == 2 and isinstance(item[0], str):
            env.append((item[0], str(item[1])))
        else:
            raise ProjectError(
                f"{fname}: docker_env.environment: expected NAME or [NAME, value] entries, got {item!r}"
            )
    return DockerEnv(image=raw["image"], volumes=tuple(volumes), environment=tuple(env))


def _entry_point(fname: str, name: str, raw: Any) -> EntryPoint:
    where = f"{fname}: entry_points.{name}"
    if isinstance(raw, str):
        raw = {"command": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("command"), str):
        raise ProjectError(f"{where}: expected a mapping with a 'command' string")
    params = raw.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProjectError(f"{where}.parameters: expected a mapping of parameter names")
    parsed = tuple(_parameter(f"{where}.parameters.{p}", str(p), v) for p, v in params.items())
    return EntryPoint(name=name, command=raw["command"], parameters=parsed)


def _parameter(where: str, name: str, raw: Any) -> Parameter:
    if isinstance(raw, str):  # short syntax: "alpha: float"
        ptype, default = raw, None
    elif isinstance(raw, dict):
        ptype, default = raw.get("type", "string"), raw.get("default")
    elif raw is None:
        ptype, default = "string", None
    else:
        raise ProjectError(f"{where}: expected a type name or a mapping with type and default")
    ptype = str(ptype).strip().lower()
    if ptype not in PARAM_TYPES:
        log.warning("%s: unknown type %r, treated as string", where, ptype)
        ptype = "string"
    ptype = _TYPE_ALIASES.get(ptype, ptype)
    if isinstance(default, bool):
        default = "true" if default else "false"
    return Parameter(name=name, type=ptype, default=None if default is None else str(default))
