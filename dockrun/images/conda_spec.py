"""conda environment files (conda.yaml, environment.yml): their match specs parsed into canonical
YAML (channel order kept, the rest sorted), and their PyPI-installable part for a uv environment."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ProjectError
from .requirements import canonical_lines, python_version, read_yaml, split_local

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
    data = read_yaml(root, rel) or {}
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
    index, local = split_local(canonical_lines(root, pip, rel, seen={rel}))
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
            python = python_version(d.any_version.lstrip("="), f"{rel}: python") if d.any_version else None
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
            "use --env-manager conda or remove them"
        )
    return python, canonical_lines(root, reqs + pip, rel, seen={rel})


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
