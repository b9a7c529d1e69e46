"""Decide a project's environment (EnvSpec) and its canonical key.

An EnvSpec is a frozen value; its key is a SHA-256 over a canonical form (dependencies parsed,
normalised, de-duplicated and sorted; comments, whitespace and quoting ignored), the base image and
the template's own text. Equivalent files give the same key; any real change gives a new one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..config import DEFAULT_CONDA_BASE, DEFAULT_PYTHON, EXAMPLE_MICROMAMBA_IMAGE, Settings
from ..errors import ConfigError, ProjectError
from ..project.source import project_file
from ..project.spec import ProjectSpec, yaml_problem
from .conda_lock import conda_lock_file, read_conda_lock

KEY_SCHEMA = 1  # bump when the meaning of a key changes
ENV_MANAGERS = ("auto", "local", "virtualenv", "conda", "uv", "micromamba", "none")
# MLflow's names mean what they mean under `mlflow run`: local = the image's own Python, nothing
# installed; virtualenv = a Python environment (uv makes it); conda = the conda path (py-rattler,
# or micromamba where DOCKRUN_MICROMAMBA_IMAGE is set).
ENV_MANAGER_ALIASES = {"local": "none", "virtualenv": "uv"}

# conda package names whose PyPI distribution is named differently.
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "tensorflow-base": "tensorflow",
    "pytables": "tables",
    "matplotlib-base": "matplotlib",
    "pyqt": "PyQt5",
    "libopencv": "opencv-python",
    "opencv": "opencv-python",
    "py-opencv": "opencv-python",
    "pillow-simd": "pillow",
    "lightgbm": "lightgbm",
    "msgpack-python": "msgpack",
    "typing_extensions": "typing-extensions",
}
# conda packages that are part of the toolchain or have no PyPI equivalent.
CONDA_SKIP = {"python", "pip", "setuptools", "wheel"}
CONDA_ONLY = {
    "cudatoolkit", "cudnn", "cuda", "cuda-toolkit", "nccl", "mkl", "mkl-service", "blas", "libblas",
    "openblas", "libgcc-ng", "libstdcxx-ng", "gcc", "gxx", "compilers", "r-base", "nodejs", "ffmpeg",
    "libgfortran", "intel-openmp", "tbb", "cudatoolkit-dev", "cupti", "magma", "nomkl",
}


@dataclass(frozen=True)
class EnvSpec:
    """What to install, on what. ``kind``: uv | conda (installed with py-rattler) | micromamba |
    docker | system; the kind names the installer, so it is part of the key."""

    kind: str
    base_image: str
    python: str | None = None  # major.minor, for uv
    requirements: tuple[str, ...] = ()  # canonical PEP 508 lines, for uv
    conda: str | None = None  # canonical environment.yml text, for conda and micromamba
    micromamba_image: str | None = None
    # conda: the image whose python3 runs the installer (the install stage only, never the final).
    installer_image: str | None = None
    # The project's own code to install (`-e .`, `./libs/pkg`): in the project image, after the
    # code, so it is not part of the environment's key (the source key covers those files).
    local_code: tuple[str, ...] = ()
    # uv with a requirements.lock: its canonical lines (``name==version --hash=...``), installed
    # exactly, with hashes required and no resolution; None: no lock, resolve ``requirements``.
    # conda with a conda-lock.txt: its canonical explicit lines (images/conda_lock.py).
    lock: tuple[str, ...] | None = None
    # OS packages from an apt.txt beside the environment file (images/os_packages.py), sorted.
    apt: tuple[str, ...] = ()

    @property
    def needs_build(self) -> bool:
        return self.kind in ("uv", "conda", "micromamba")

    def key(self, template_text: str = "", base_id: str | None = None) -> str:
        """``base_id``: the base image's content identity (registry digest or image ID) where
        images are built, so a base image tag that moves makes a new key."""
        canonical = {
            "schema": KEY_SCHEMA,
            "kind": self.kind,
            "base": self.base_image,
            "python": self.python,
            "requirements": list(self.requirements),
            "conda": self.conda,
            "micromamba": self.micromamba_image,
            "template": hashlib.sha256(template_text.encode()).hexdigest(),
        }
        if self.installer_image is not None:  # only where used: other kinds keep their keys
            canonical["installer_image"] = self.installer_image
        if self.lock is not None:
            canonical["lock"] = list(self.lock)
        if self.apt:  # only where asked for: other environments keep their keys
            canonical["apt"] = list(self.apt)
        if base_id is not None:
            canonical["base_id"] = base_id
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def env_spec(project: ProjectSpec, settings: Settings, env_manager: str = "auto", read_lock: bool = True) -> EnvSpec:
    """The environment ``project`` runs in, given the user's ``--env-manager`` choice. With
    ``read_lock`` (always, except for `dockrun lock`, which must work past a stale or broken lock
    to replace it) a requirements.lock beside a python environment file is what gets installed.
    An apt.txt beside the environment file adds OS packages to a built environment."""
    spec = _env_spec(project, settings, env_manager, read_lock)
    if not spec.needs_build:
        return spec
    from .os_packages import read_apt_file  # here: most projects have none

    return dataclasses.replace(spec, apt=read_apt_file(project.root, project.env_file))


def _env_spec(project: ProjectSpec, settings: Settings, env_manager: str, read_lock: bool) -> EnvSpec:
    if env_manager not in ENV_MANAGERS:
        raise ConfigError(f"--env-manager: expected one of {', '.join(ENV_MANAGERS)}, got {env_manager!r}")
    kind = project.env_kind
    if env_manager == "conda" and kind == "python":  # as mlflow run refuses it
        raise ConfigError("--env-manager conda: a python_env project cannot be installed with conda; "
                          "use --env-manager virtualenv or local")
    asked, env_manager = env_manager, ENV_MANAGER_ALIASES.get(env_manager, env_manager)
    if kind == "docker":
        if env_manager not in ("auto", "none"):
            raise ConfigError(f"--env-manager {asked}: the project declares docker_env; use auto or local")
        assert project.docker_env is not None
        return EnvSpec(kind="docker", base_image=project.docker_env.image)
    if env_manager == "none" or (env_manager == "auto" and kind == "none"):
        return EnvSpec(kind="system", base_image=_python_base(settings, None))
    if env_manager in ("conda", "micromamba") or (env_manager == "auto" and kind == "conda"):
        if kind != "conda":
            raise ConfigError(f"--env-manager {asked}: the project has no conda environment file")
        if env_manager == "micromamba" and not settings.micromamba_image:
            raise ConfigError(f"--env-manager micromamba: DOCKRUN_MICROMAMBA_IMAGE is not set; set it to an "
                              f"image with /bin/micromamba (e.g. {EXAMPLE_MICROMAMBA_IMAGE}), or use "
                              "--env-manager conda (installs with py-rattler from PyPI)")
        rel = project.env_file or "conda.yaml"
        conda, local = canonical_conda(project.root, rel, settings.conda_channel_map)
        base = settings.base_image or DEFAULT_CONDA_BASE
        # conda-lock.txt beside it (conda's explicit list, `dockrun lock`): installed exactly, keyed.
        lock = read_conda_lock(project.root, rel, lambda: canonical_conda(project.root, rel)[0]) if read_lock else None
        if settings.micromamba_image:
            if lock is not None:
                raise ConfigError(f"{conda_lock_file(rel)}: installing a conda lock needs the py-rattler installer; "
                                  "unset DOCKRUN_MICROMAMBA_IMAGE (or delete the lock)")
            return EnvSpec(kind="micromamba", base_image=base, conda=conda,
                           micromamba_image=settings.micromamba_image, local_code=local)
        # The installer needs a python3: the base image's when one is given (it must have it),
        # else the default Python image; the prefix it makes does not depend on that Python.
        return EnvSpec(kind="conda", base_image=base, conda=conda, local_code=local,
                       installer_image=settings.base_image or _python_base(settings, None), lock=lock)
    # uv: python_env.yaml, requirements.txt, or a conda.yaml's PyPI-installable part.
    if kind == "python":
        python, reqs = _python_env(project.root, project.env_file or "python_env.yaml")
    elif kind == "requirements" and _has_hashes(project.root, "requirements.txt"):
        # pip-compile --generate-hashes output is a lock already: install exactly it.
        lock = read_lock_file(project.root, "requirements.txt", "", "requirements.txt")
        return EnvSpec(kind="uv", base_image=_python_base(settings, None), lock=lock)
    elif kind == "requirements":
        python, reqs = None, canonical_requirements(project.root, "requirements.txt")
    elif kind == "conda":
        python, reqs = conda_to_pypi(project.root, project.env_file or "conda.yaml")
    else:  # env_manager == "uv" with nothing declared
        python, reqs = None, ()
    reqs, local = _split_local(reqs)
    lock = None
    lock_rel = lock_file(project)
    if read_lock and lock_rel and (project.root / lock_rel).is_file():
        lock = read_lock_file(project.root, lock_rel, lock_input_digest(python, reqs), project.env_file or "")
    return EnvSpec(kind="uv", base_image=_python_base(settings, python), python=python, requirements=reqs,
                   local_code=local, lock=lock)


# ---- lock files ----------------------------------------------------------------------------

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
    requirement = _canonical_requirement(text, rel)
    from packaging.requirements import Requirement

    specs = list(Requirement(text).specifier)
    if len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
        raise ProjectError(f"{rel}: {text!r} is not pinned to one version (name==version)")
    if not hashes:
        raise ProjectError(f"{rel}: {text!r} has no --hash; write the lock with `dockrun lock`")
    return " ".join([requirement, *hashes])


def _has_hashes(root: Path, rel: str) -> bool:
    try:
        return "--hash" in project_file(root, rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False  # reading it properly reports the problem


def _python_base(settings: Settings, python: str | None) -> str:
    return settings.base_image or f"python:{python or DEFAULT_PYTHON}-slim"


def _python_version(version: Any, where: str) -> str:
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


def _read_yaml(root: Path, rel: str) -> Any:
    import yaml  # here, not at the top: listing runs or images needs no environment parsing

    try:
        return yaml.safe_load(project_file(root, rel).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProjectError(f"{rel}: file not found in the project") from None
    except yaml.YAMLError as e:
        raise ProjectError(f"{rel}: not valid YAML: {yaml_problem(e)}") from None


def _python_env(root: Path, rel: str) -> tuple[str | None, tuple[str, ...]]:
    data = _read_yaml(root, rel) or {}
    if not isinstance(data, dict):
        raise ProjectError(f"{rel}: expected a mapping with python, build_dependencies, dependencies")
    python = _python_version(data["python"], f"{rel}: python") if data.get("python") else None
    lines: list[str] = []
    for field in ("build_dependencies", "dependencies"):
        deps = data.get(field) or []
        if not isinstance(deps, list):
            raise ProjectError(f"{rel}: {field}: expected a list of requirements")
        lines.extend(str(d) for d in deps)
    return python, _canonical_lines(root, lines, rel, seen=set())


def canonical_requirements(root: Path, rel: str) -> tuple[str, ...]:
    return _canonical_lines(root, _read_requirement_lines(root, rel), rel, seen={rel})


def _read_requirement_lines(root: Path, rel: str) -> list[str]:
    try:
        text = project_file(root, rel).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"{rel}: file not found in the project") from None
    # Join backslash continuations before dropping comments.
    return text.replace("\\\n", " ").splitlines()


def _canonical_lines(root: Path, lines: list[str], rel: str, seen: set[str]) -> tuple[str, ...]:
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
                out.update(_canonical_lines(root, _read_requirement_lines(root, inc_rel), inc_rel, seen))
            continue
        if line.startswith(("-e", "--editable", ".", "/")) or line.startswith("file:"):
            out.add(_local_code(root, line, f"{rel}: line {n}"))
            continue
        if line.startswith("-"):
            # Index options belong to the build settings (PIP_INDEX_URL, ...), not the environment.
            raise ProjectError(f"{rel}: line {n}: option {line.split()[0]!r} is not supported in "
                               "environment files; set PIP_INDEX_URL / UV_INDEX_URL instead")
        out.add(_canonical_requirement(line, f"{rel}: line {n}"))
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


def _split_local(reqs: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(r for r in reqs if not is_local_code(r)), tuple(r for r in reqs if is_local_code(r))


def _canonical_requirement(line: str, where: str) -> str:
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


# ---- conda ---------------------------------------------------------------------------------

# A conda match spec, as conda, micromamba and rattler read it:
#     [channel[/subdir]::]name[ version[ build]][key=value, ...]
# the version either in operator form ("=1.26", ">=1.2,<2", "==1.2.3=py_0": `=build` after it) or
# in the space form ("1.26.*", "1.26 py311_0"); the bracket ("[version='>=1', build='py*']") may
# say any part instead. Each part stays in the form it was given (they differ: "=1.2" is 1.2.*,
# but "=1.2=py_0" is exactly 1.2), only spaces, quotes, case and order are made canonical.
_CONDA_NAME = re.compile(r"(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)(?P<rest>.*)", re.S)
_OPERATOR = r"(?:==|>=|<=|!=|~=|=|>|<)"
_BUILD = r"[A-Za-z0-9_.*+-]+"
_VERSION = re.compile(rf"(?:{_OPERATOR}?[0-9A-Za-z*.+!_-]+)(?:[,|]{_OPERATOR}?[0-9A-Za-z*.+!_-]+)*")
_VERSION_BUILD = re.compile(rf"(?P<version>{_OPERATOR}?[^=<>!~,|\s]+)=(?P<build>{_BUILD})")
_BRACKET_KEYS = ("build", "build_number", "channel", "fn", "license", "license_family", "md5", "namespace",
                 "sha256", "subdir", "track_features", "url", "version")
_BRACKET_PAIR = re.compile(r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:'([^']*)'|"([^"]*)"|([^,'"\s]*))\s*(?:,|$)""")


@dataclass(frozen=True)
class CondaDep:
    channel: str | None  # from `channel::` or the bracket's channel=
    name: str  # lower case
    version: str = ""  # as given after the name, spaces dropped: '=1.26', '>=1.2,<2', '1.26.*', or ''
    build: str | None = None  # `name version build` or `name=version=build`
    bracket: tuple[tuple[str, str], ...] = ()  # the bracket's other keys (version, build too), sorted

    def line(self, channel_map: Mapping[str, str]) -> str:
        channel = channel_map.get(self.channel, self.channel) if self.channel else None
        text = (f"{channel}::" if channel else "") + self.name
        if self.build is not None:  # `name=1.2=py_0` (exactly 1.2) or `name 1.2.* py_0`
            one_operator = self.version[:1] in ("=", "<", ">", "!", "~") and not re.search("[,|]", self.version)
            text += f"{self.version}={self.build}" if one_operator else f" {self.version} {self.build}"
        elif self.version:
            text += self.version if self.version[0] in "=<>!~" else " " + self.version
        if self.bracket:
            text += "[" + ",".join(f"{k}={_quoted(v)}" for k, v in self.bracket) + "]"
        return text

    @property
    def any_version(self) -> str:
        """The version spec, from wherever it was given."""
        return self.version or dict(self.bracket).get("version", "")


def _quoted(value: str) -> str:
    return f'"{value}"' if "'" in value else f"'{value}'"


def _conda_file(root: Path, rel: str) -> tuple[list[str], list[CondaDep], list[str]]:
    data = _read_yaml(root, rel) or {}
    if not isinstance(data, dict):
        raise ProjectError(f"{rel}: expected a mapping with channels and dependencies")
    channels = data.get("channels") or []
    if not isinstance(channels, list):
        raise ProjectError(f"{rel}: channels: expected a list")
    deps: list[CondaDep] = []
    pip: list[str] = []
    for item in data.get("dependencies") or []:
        if isinstance(item, dict) and set(item) == {"pip"}:
            pip.extend(str(p) for p in item["pip"] or [])
        elif isinstance(item, (str, int, float)):
            deps.append(_conda_dep(str(item), rel))
        else:
            raise ProjectError(f"{rel}: dependencies: expected strings or a 'pip:' list, got {item!r}")
    return [str(c) for c in channels], deps, pip


def _conda_dep(text: str, rel: str) -> CondaDep:
    """Parse one conda match spec; a ProjectError naming it if it is not one."""
    def bad(why: str) -> ProjectError:
        return ProjectError(f"{rel}: dependencies: {text!r} is not a conda package spec ({why})")

    spec, bracket = text.strip(), {}
    if spec.endswith("]"):
        spec, _, inside = spec[:-1].partition("[")
        if not _ or "[" in inside or "]" in inside:
            raise bad("one [key=value, ...] at the end")
        bracket = _bracket(inside, bad)
    channel = None
    if "::" in spec:
        channel, _, spec = spec.rpartition("::")
        if not channel.strip() or any(c.isspace() for c in channel):
            raise bad("expected channel::name")
        channel = channel.strip()
    m = _CONDA_NAME.fullmatch(spec.strip())
    if not m:
        raise bad("expected a package name first")
    version, build = _version_and_build(m.group("rest"), bad)
    if "channel" in bracket:
        if channel:
            raise bad("the channel is given twice")
        channel = bracket.pop("channel")
    for key, given in (("version", version), ("build", build)):
        if given and key in bracket:
            raise bad(f"the {key} is given twice")
    return CondaDep(channel, m.group("name").lower(), version, build, tuple(sorted(bracket.items())))


def _version_and_build(rest: str, bad: Callable[[str], ProjectError]) -> tuple[str, str | None]:
    """The part after the name: ("", None), (version, None) or (version, build)."""
    rest = re.sub(r"\s*([,|])\s*", r"\1", rest.strip())  # ">=1.2, <2" is ">=1.2,<2"
    rest = re.sub(rf"^({_OPERATOR})\s+", r"\1", rest)  # ">= 1.2" is ">=1.2"
    tokens = rest.split()
    if len(tokens) > 2:
        raise bad("expected name, version and build string at most")
    version, build = (tokens + ["", ""])[:2] if tokens else ("", "")
    joined = _VERSION_BUILD.fullmatch(version)
    if joined and not build:
        version, build = joined.group("version"), joined.group("build")
    if version and not _VERSION.fullmatch(version):
        raise bad(f"{version!r} is not a version spec")
    if build and not re.fullmatch(_BUILD, build):
        raise bad(f"{build!r} is not a build string")
    return version, build or None


def _bracket(inside: str, bad: Callable[[str], ProjectError]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    pos = 0
    inside = inside.strip()
    while pos < len(inside):
        m = _BRACKET_PAIR.match(inside, pos)
        if not m or m.end() == pos:
            raise bad("expected [key=value, ...]")
        key, value = m.group(1), next(v for v in m.group(2, 3, 4) if v is not None).strip()
        if key not in _BRACKET_KEYS:
            raise bad(f"unknown key {key!r} in [...]; expected one of {', '.join(_BRACKET_KEYS)}")
        if key in pairs or not value:
            raise bad(f"{key} is given twice" if key in pairs else f"{key} is empty")
        if "'" in value and '"' in value:
            raise bad(f"{key} has both kinds of quote")
        pairs[key] = value
        pos = m.end()
        if inside[pos - 1:pos] == "," and pos >= len(inside):
            raise bad("a trailing comma in [...]")
    return pairs


def canonical_conda(root: Path, rel: str,
                    channel_map: Mapping[str, str] | None = None) -> tuple[str, tuple[str, ...]]:
    """The conda file as canonical YAML: channel order kept (it is priority), the rest sorted;
    channels renamed by ``channel_map`` (e.g. defaults -> conda-forge). Local code in its pip
    section is returned apart, for the project image."""
    channels, deps, pip = _conda_file(root, rel)
    cmap = channel_map or {}
    channels = [cmap.get(c, c) for c in channels]
    dep_lines = sorted({d.line(cmap) for d in deps})
    body: dict[str, Any] = {"channels": list(dict.fromkeys(channels)), "dependencies": dep_lines}
    index, local = _split_local(_canonical_lines(root, pip, rel, seen={rel}))
    if index:
        body["dependencies"].append({"pip": list(index)})
    import yaml

    return yaml.safe_dump(body, sort_keys=True, default_flow_style=False), local


def conda_to_pypi(root: Path, rel: str) -> tuple[str | None, tuple[str, ...]]:
    """A conda.yaml's PyPI-installable part, for ``--env-manager uv``."""
    _, deps, pip = _conda_file(root, rel)
    python = None
    reqs: list[str] = []
    unavailable = []
    for d in deps:
        if d.name == "python":
            python = _python_version(d.any_version.lstrip("="), f"{rel}: python") if d.any_version else None
            continue
        if d.name in CONDA_SKIP:
            continue
        if d.name in CONDA_ONLY or d.name.startswith(("cuda-", "lib", "r-")):
            unavailable.append(d.name)
            continue
        reqs.append(CONDA_TO_PYPI.get(d.name, d.name) + _pypi_version(d.any_version, d.build is not None))
    if unavailable:
        raise ProjectError(
            f"{rel}: no PyPI equivalent for {', '.join(sorted(set(unavailable)))}; "
            "use --env-manager micromamba or remove them"
        )
    return python, _canonical_lines(root, reqs + pip, rel, seen={rel})


def _pypi_version(v: str, exact: bool = False) -> str:
    """conda version spec -> PEP 440: '=1.2' -> '==1.2.*' (but '=1.2' with a build string, exactly
    1.2, as conda reads it), '1.2' -> '==1.2', '*' -> any."""
    if not v or v == "*":
        return ""
    if v.startswith("=="):
        return v
    if v.startswith("="):  # conda's single '=' means "this version prefix"
        return "==" + v[1:] if exact else "==" + v[1:].rstrip("*").rstrip(".") + ".*"
    if v[0] in "<>!~":
        return v
    return "==" + v
