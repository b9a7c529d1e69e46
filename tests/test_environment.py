"""Environment selection and canonical keys (no Docker)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import write_project
from dockrun.config import load_settings
from dockrun.errors import ConfigError, ProjectError
from dockrun.images.environment import env_spec
from dockrun.images.requirements import canonical_requirements
from dockrun.project.spec import load_project

SETTINGS = load_settings({"DOCKRUN_BASE_IMAGE": "base:1"})


def spec_of(tmp_path: Path, files: dict[str, str], manager: str = "auto", environ: dict | None = None):
    root = write_project(tmp_path / "p", files)
    environ = {"DOCKRUN_BASE_IMAGE": "base:1"} if environ is None else environ
    return env_spec(load_project(root), load_settings(environ), manager)


def test_kinds_by_what_the_project_declares(tmp_path: Path) -> None:
    assert spec_of(tmp_path / "a", {"requirements.txt": "tabulate\n"}).kind == "uv"
    assert spec_of(tmp_path / "b", {"python_env.yaml": "python: '3.10'\ndependencies: [x]\n"}).python == "3.10"
    assert spec_of(tmp_path / "c", {"conda.yaml": "dependencies: [numpy]\n"}).kind == "conda"
    assert spec_of(tmp_path / "d", {"a.py": ""}).kind == "system"
    d = spec_of(tmp_path / "e", {"MLproject": "docker_env: {image: img:2}\n"})
    assert (d.kind, d.base_image, d.needs_build) == ("docker", "img:2", False)


def test_public_python_base_by_default(tmp_path: Path) -> None:
    s = spec_of(tmp_path, {"python_env.yaml": "python: 3.10.4\n"}, environ={})
    assert (s.base_image, s.python) == ("python:3.10.4-slim", "3.10.4")  # the exact patch, as pinned
    s = spec_of(tmp_path / "b", {"python_env.yaml": "python: '3.10'\n"}, environ={})
    assert (s.base_image, s.python) == ("python:3.10-slim", "3.10")


def test_uv_with_conda_yaml_translates_names(tmp_path: Path) -> None:
    s = spec_of(tmp_path, {"conda.yaml": """
        channels: [conda-forge]
        dependencies:
          - python=3.11
          - numpy=1.26
          - pytorch>=2.0
          - conda-forge::py-xgboost==2.0.3=cpu_0
          - scikit-learn
          - pip
          - pip: [mlflow>=2]
    """}, manager="uv")
    assert s.kind == "uv" and s.python == "3.11"
    assert s.requirements == ("mlflow>=2", "numpy==1.26.*", "scikit-learn", "torch>=2.0", "xgboost==2.0.3")


def test_uv_with_conda_only_packages_lists_them(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="no PyPI equivalent for cudatoolkit, mkl"):
        spec_of(tmp_path, {"conda.yaml": "dependencies: [numpy, cudatoolkit=11.8, mkl]\n"}, manager="uv")


def test_mlflow_env_manager_names(tmp_path: Path) -> None:
    files = {"python_env.yaml": "python: '3.11'\ndependencies: [tabulate]\n"}
    assert spec_of(tmp_path / "a", files, manager="virtualenv").kind == "uv"
    assert spec_of(tmp_path / "b", files, manager="local").kind == "system"
    conda = {"conda.yaml": "dependencies: [python=3.11, numpy]\n"}
    assert spec_of(tmp_path / "c", conda, manager="conda").kind == "conda"
    assert spec_of(tmp_path / "d", conda, manager="virtualenv").kind == "uv"
    assert spec_of(tmp_path / "e", {"MLproject": "docker_env: {image: i}\n"}, manager="local").kind == "docker"
    with pytest.raises(ConfigError, match="python_env project cannot be installed with conda"):
        spec_of(tmp_path / "f", files, manager="conda")
    with pytest.raises(ConfigError, match="--env-manager conda: the project has no conda environment file"):
        spec_of(tmp_path / "g", {"requirements.txt": "x\n"}, manager="conda")


def test_env_manager_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no conda environment file"):
        spec_of(tmp_path / "a", {"requirements.txt": "x\n"}, manager="micromamba")
    with pytest.raises(ConfigError, match="declares docker_env"):
        spec_of(tmp_path / "b", {"MLproject": "docker_env: {image: i}\n"}, manager="uv")


def test_local_code_requirements_are_kept_apart_for_the_project_image(tmp_path: Path) -> None:
    files = {"pyproject.toml": "[project]\nname='p'\n", "libs/a/setup.py": "", "libs/b/pyproject.toml": ""}
    s = spec_of(tmp_path / "a", {**files, "requirements.txt": "x\n-e .\n./libs/a/\n--editable=libs/b\n"})
    assert s.requirements == ("x",) and s.local_code == ("-e .", "-e ./libs/b", "./libs/a")
    key = s.digest()
    # The environment (and its key) does not change with local code: the code is in the source key.
    assert spec_of(tmp_path / "b", {**files, "requirements.txt": "x\n"}).digest() == key
    conda = spec_of(tmp_path / "c", {**files, "conda.yaml": "dependencies: [python=3.11, {pip: [-e ., tabulate]}]\n"})
    assert conda.local_code == ("-e .",) and "-e" not in conda.conda
    for line, msg in [("-e ../shared", "must be inside the project"), ("/abs/pkg", "relative to the project"),
                      ("-e ./libs", "no pyproject.toml or setup.py in 'libs'")]:
        with pytest.raises(ProjectError, match=r"requirements.txt: line 1: .*" + msg):
            spec_of(tmp_path / line.replace("/", "_"), {**files, "requirements.txt": line + "\n"})


REQS = ["numpy>=1.2", "pandas==2.1.0", "scikit-learn", "requests[socks,security]<3", "tabulate==0.9.0"]


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(REQS), spaces=st.lists(st.sampled_from(["", " ", "  "]), min_size=5, max_size=5),
       comments=st.lists(st.booleans(), min_size=5, max_size=5), dup=st.booleans())
def test_key_ignores_order_spacing_comments_and_duplicates(tmp_path_factory, order, spaces, comments, dup) -> None:
    lines = []
    for req, sp, comment in zip(order, spaces, comments):
        text = req.replace("==", sp + "==" + sp).replace(">=", sp + ">=")
        lines.append(sp + text + ("  # pinned for reasons" if comment else ""))
        if comment:
            lines.append("# a comment line")
    if dup:
        lines.append(order[0])
    root = write_project(tmp_path_factory.mktemp("k") / "p", {"requirements.txt": "\n".join(lines) + "\n"})
    base = write_project(tmp_path_factory.mktemp("k") / "p", {"requirements.txt": "\n".join(REQS) + "\n"})
    key = env_spec(load_project(root), SETTINGS).digest("t")
    assert key == env_spec(load_project(base), SETTINGS).digest("t")


def test_real_changes_change_the_key(tmp_path: Path) -> None:
    def key(files: dict[str, str], base: str = "base:1", template: str = "t") -> str:
        root = write_project(tmp_path / str(len(list(tmp_path.iterdir()))), files)
        return env_spec(load_project(root), load_settings({"DOCKRUN_BASE_IMAGE": base})).digest(template)

    k = key({"requirements.txt": "pandas==2.1.0\n"})
    assert k == key({"requirements.txt": "Pandas == 2.1.0  # same\n"})
    assert k != key({"requirements.txt": "pandas==2.1.1\n"})
    assert k != key({"requirements.txt": "pandas==2.1.0\n"}, base="base:2")
    assert k != key({"requirements.txt": "pandas==2.1.0\n"}, template="t2")
    assert k != key({"python_env.yaml": "python: '3.10'\ndependencies: [pandas==2.1.0]\n"})


def test_conda_key_keeps_channel_order(tmp_path: Path) -> None:
    a = spec_of(tmp_path / "a", {"conda.yaml": "channels: [conda-forge, bioconda]\ndependencies: [b, a]\n"})
    b = spec_of(tmp_path / "b", {"conda.yaml": "channels: [conda-forge, bioconda]\ndependencies: [a, b]\n"})
    c = spec_of(tmp_path / "c", {"conda.yaml": "channels: [bioconda, conda-forge]\ndependencies: [a, b]\n"})
    assert a.digest() == b.digest() != c.digest()


def test_requirements_includes(tmp_path: Path) -> None:
    root = write_project(tmp_path, {"requirements.txt": "-r base.txt\nb\n", "base.txt": "a\\\n  >=1\n"})
    assert canonical_requirements(root, "requirements.txt") == ("a>=1", "b")


def test_conda_channel_map(tmp_path: Path) -> None:
    files = {"conda.yaml": "channels: [defaults, bioconda]\ndependencies: [defaults::numpy, samtools]\n"}
    mapped = spec_of(tmp_path / "a", files, environ={"DOCKRUN_CONDA_CHANNEL_MAP": "defaults=conda-forge"})
    assert "conda-forge" in mapped.conda and "defaults" not in mapped.conda
    assert "conda-forge::numpy" in mapped.conda
    plain = spec_of(tmp_path / "b", files, environ={})
    assert plain.digest() != mapped.digest()
    with pytest.raises(ConfigError, match="DOCKRUN_CONDA_CHANNEL_MAP: 'defaults': expected FROM=TO"):
        load_settings({"DOCKRUN_CONDA_CHANNEL_MAP": "defaults"})


CONDA_DEPS = ["numpy=1.26", "pandas>=2", "scikit-learn", "conda-forge::xgboost", "python=3.11"]


@settings(max_examples=40, deadline=None)
@given(order=st.permutations(CONDA_DEPS), quote=st.lists(st.booleans(), min_size=5, max_size=5),
       comment=st.booleans(), pip_order=st.permutations(["mlflow>=2", "tabulate"]), indent=st.sampled_from([2, 4]))
def test_conda_key_ignores_order_quoting_comments(tmp_path_factory, order, quote, comment, pip_order, indent):
    pad = " " * indent
    lines = ["name: whatever" if comment else "name: other", "channels:", f"{pad}- conda-forge", "dependencies:"]
    for dep, q in zip(order, quote):
        lines.append(f"{pad}- {chr(34) + dep + chr(34) if q else dep}" + ("  # why" if comment else ""))
    lines += [f"{pad}- pip:"] + [f"{pad}{pad}- {p}" for p in pip_order]
    root = write_project(tmp_path_factory.mktemp("c") / "p", {"conda.yaml": "\n".join(lines) + "\n"})
    ref = write_project(tmp_path_factory.mktemp("c") / "p", {"conda.yaml": (
        "channels: [conda-forge]\ndependencies: [numpy=1.26, pandas>=2, scikit-learn, conda-forge::xgboost, "
        "python=3.11, {pip: [tabulate, mlflow>=2]}]\n")})
    assert env_spec(load_project(root), SETTINGS).digest() == env_spec(load_project(ref), SETTINGS).digest()
    for manager in ("uv",):
        assert env_spec(load_project(root), SETTINGS, manager).digest() == env_spec(load_project(ref), SETTINGS,
                                                                                manager).digest()


@settings(max_examples=30, deadline=None)
@given(order=st.permutations(["tabulate==0.9.0", "requests>=2", "numpy"]), spaced=st.booleans())
def test_python_env_key_ignores_order_and_spacing(tmp_path_factory, order, spaced) -> None:
    deps = [d.replace("==", " == ") if spaced else d for d in order]
    text = "python: '3.11'\nbuild_dependencies: [pip]\ndependencies:\n" + "".join(f"  - {d}\n" for d in deps)
    root = write_project(tmp_path_factory.mktemp("p") / "p", {"python_env.yaml": text})
    ref = write_project(tmp_path_factory.mktemp("p") / "p", {"python_env.yaml": (
        "python: 3.11\ndependencies: [numpy, requests>=2, tabulate==0.9.0]\nbuild_dependencies: [pip]\n")})
    assert env_spec(load_project(root), SETTINGS).digest() == env_spec(load_project(ref), SETTINGS).digest()


def test_conda_spec_forms_survive_canonicalisation(tmp_path: Path) -> None:
    """`numpy 1.26.*` once became `numpy1.26.*` in the file micromamba installs (another package)."""
    import yaml

    from dockrun.images.conda_spec import canonical_conda, conda_to_pypi

    specs = ["numpy 1.26.*", "python 3.11", "pandas=2.1", "scipy >=1.10, <1.12", "conda-forge::xgboost 2.0 py311_0",
             "tabulate==0.9.0=pyhd8ed1ab_0"]
    root = write_project(tmp_path / "p", {"conda.yaml": "channels: [conda-forge]\ndependencies:\n"
                                          + "".join(f"  - {s}\n" for s in specs)})
    text, _ = canonical_conda(root, "conda.yaml")
    assert sorted(yaml.safe_load(text)["dependencies"]) == sorted([
        "numpy 1.26.*", "python 3.11", "pandas=2.1", "scipy>=1.10,<1.12", "conda-forge::xgboost 2.0 py311_0",
        "tabulate==0.9.0=pyhd8ed1ab_0"])
    python, reqs = conda_to_pypi(root, "conda.yaml")
    assert python == "3.11"
    assert set(reqs) == {"numpy==1.26.*", "pandas==2.1.*", "scipy<1.12,>=1.10", "xgboost==2.0", "tabulate==0.9.0"}
    with pytest.raises(ProjectError, match="is not a conda package spec"):
        canonical_conda(write_project(tmp_path / "q", {"conda.yaml": "dependencies: ['numpy 1 2 3']\n"}), "conda.yaml")


# ---- conda match specs: dockrun's parser against py-rattler's MatchSpec (the oracle) ------------
# py-rattler is a test dependency only: dockrun parses conda specs itself (environment._conda_dep).

def _meaning(spec: str) -> str:
    """What the conda ecosystem reads in ``spec``: py-rattler's own canonical form of it."""
    from rattler import MatchSpec

    return str(MatchSpec(spec))


def _canonical_line(spec: str, tmp: Path) -> str:
    import yaml

    from dockrun.images.conda_spec import canonical_conda

    root = write_project(tmp, {"conda.yaml": "dependencies:\n  - " + json.dumps(spec) + "\n"})  # JSON is YAML
    text, _ = canonical_conda(root, "conda.yaml")
    (line,) = yaml.safe_load(text)["dependencies"]
    return line


_c_name = st.from_regex(r"[a-z_][a-z0-9]{0,5}([-_.][a-z0-9]{1,3})?", fullmatch=True)
_c_ver = st.lists(st.integers(0, 30).map(str), min_size=1, max_size=3).map(".".join)
_c_op = st.sampled_from(["=", "==", ">=", "<=", ">", "<", "!=", "~="])
_c_sp = st.sampled_from(["", " "])
_c_build = st.from_regex(r"(py[0-9]{2,3}_[0-9]|[a-z]{1,4}_[0-9]{1,2}|h[0-9a-f]{6}_[0-9]|py\*|\*_[0-9])", fullmatch=True)


@st.composite
def _c_version(draw) -> str:  # noqa: ANN001
    form = draw(st.sampled_from(["op", "glob", "exact", "range", "or", "star"]))
    v = draw(_c_ver)
    if form == "op":
        return draw(_c_op) + v
    if form == "glob":
        return draw(st.sampled_from(["", "="])) + v + ".*"
    if form == "exact":
        return v
    if form == "range":
        return ">=" + v + "," + draw(_c_sp) + "<" + draw(_c_ver)
    if form == "or":
        return v + "|" + draw(_c_ver)
    return "*"


@st.composite
def match_specs(draw) -> str:  # noqa: ANN001
    channel = draw(st.sampled_from(["", "conda-forge::", "bioconda::", "my.chan::", "conda-forge/noarch::",
                                    "http://172.17.0.1:8000/demo::"]))
    name = draw(st.sampled_from(["", "", "", "N"])).replace("N", "") + draw(_c_name)
    name = name.upper() if draw(st.booleans()) and draw(st.booleans()) else name
    form = draw(st.sampled_from(["bare", "space", "space-build", "op", "op-build", "bracket", "mixed"]))
    version = draw(_c_version())
    rest = ""
    if form == "space" and version[0] not in "=<>!~":
        rest = " " + version
    elif form == "space":
        rest = draw(_c_sp) + version
    elif form == "space-build" and "|" not in version and "," not in version:
        rest = (" " if version[0] not in "=<>!~" else draw(_c_sp)) + version + " " + draw(_c_build)
    elif form == "op":
        rest = draw(_c_sp) + draw(_c_op) + draw(_c_ver)
    elif form == "op-build":
        rest = draw(_c_op) + draw(_c_ver) + "=" + draw(_c_build)
    bracket = {}
    if form == "mixed":
        rest = draw(st.sampled_from(["", " 1.2", "=1.2", ">=1.1,<2"]))
    if form in ("bracket", "mixed"):
        if not rest:
            bracket["version"] = version
        if draw(st.booleans()):
            bracket["build"] = draw(_c_build)
        if draw(st.booleans()):
            bracket["build_number"] = draw(st.sampled_from(["3", ">=2", "0"]))
        if draw(st.booleans()) and not channel:
            bracket["channel"] = "conda-forge"
    text = channel + name + rest
    if bracket:
        quote = draw(st.sampled_from(["'", '"', ""]))
        items = [f"{k}{draw(_c_sp)}={draw(_c_sp)}{quote if quote or ',' not in v and '|' not in v else chr(39)}{v}"
                 f"{quote if quote or ',' not in v and '|' not in v else chr(39)}" for k, v in bracket.items()]
        text += draw(_c_sp) + "[" + ("," + draw(_c_sp)).join(items) + "]"
    return text


FORMS = ["pkg 1.2.*", "pkg=1.2", "pkg>=1.1,<1.3", "pkg >=1.1, <1.3", "channel::pkg", "conda-forge::pkg=1.2",
         "pkg[version='>=1']", "pkg[version='>=1,<2', build='py*']", "pkg =1.2 py_0", "pkg=1.2=py_0",
         "pkg==1.2.3=py311_0", "pkg 1.2 py311_0", "pkg>=1.2=py_0", "pkg=1.2[build=py_0]", "pkg[build_number=3]",
         "pkg[channel=conda-forge]", "Pkg * py_0", "pkg >= 1.2", "conda-forge/noarch::pkg 1.*", "pkg 1.2|1.3",
         "pkg=1.2|1.3", "pkg[version=\"1.2|1.3\"]", "http://172.17.0.1:8000/demo::pkg>=1", "python 3.11",
         "pkg[md5=d41d8cd98f00b204e9800998ecf8427e]", "pkg 1.2 [build=py_0]"]


@pytest.mark.parametrize("spec", FORMS)
def test_every_conda_spec_form_keeps_its_meaning(spec: str, tmp_path: Path) -> None:
    line = _canonical_line(spec, tmp_path / "a")
    assert _meaning(line) == _meaning(spec), (spec, line)
    assert _canonical_line(line, tmp_path / "b") == line  # canonical is a fixed point


@settings(max_examples=400, deadline=None)
@given(match_specs())
def test_generated_conda_specs_keep_their_meaning(spec: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        line = _canonical_line(spec, Path(d) / "p")
    assert _meaning(line) == _meaning(spec), (spec, line)


@pytest.mark.parametrize("spec, why", [
    ("pkg[foo=1]", "unknown key 'foo'"), ("pkg[version='>=1'][build=x]", "one [key=value, ...] at the end"),
    ("pkg 1 2 3", "at most"), ("conda-forge::pkg[channel=bioconda]", "channel is given twice"),
    ("pkg>=1[version='2']", "version is given twice"), ("pkg[version='>=1',]", "trailing comma"),
    ("::pkg", "expected channel::name"), ("-pkg", "package name first"), ("pkg >=1 =py_0", "not a build string")])
def test_malformed_conda_specs_are_one_line_errors(spec: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as e:
        _canonical_line(spec, tmp_path / "p")
    assert str(e.value).startswith(f"conda.yaml: dependencies: {spec!r} is not a conda package spec (")
    assert why in str(e.value) and "\n" not in str(e.value)


def test_bracket_specs_translate_to_pypi_for_uv(tmp_path: Path) -> None:
    s = spec_of(tmp_path, {"conda.yaml": "dependencies:\n  - python[version='>=3.11']\n  - numpy[version='>=1.26']\n"
                                         "  - pandas=2.1=py311_0\n  - scipy * py311_0\n  - tabulate 0.9.0\n"},
                manager="uv")
    assert s.python == "3.11"
    assert s.requirements == ("numpy>=1.26", "pandas==2.1", "scipy", "tabulate==0.9.0")
