"""Environment selection and canonical keys (no Docker)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import write_project
from dockrun.config import load_settings
from dockrun.errors import ConfigError, ProjectError
from dockrun.images.environment import canonical_requirements, env_spec
from dockrun.project.spec import load_project

SETTINGS = load_settings({"DOCKRUN_BASE_IMAGE": "base:1"})


def spec_of(tmp_path: Path, files: dict[str, str], manager: str = "auto", environ: dict | None = None):
    root = write_project(tmp_path / "p", files)
    environ = {"DOCKRUN_BASE_IMAGE": "base:1"} if environ is None else environ
    return env_spec(load_project(root), load_settings(environ), manager)


def test_kinds_by_what_the_project_declares(tmp_path: Path) -> None:
    assert spec_of(tmp_path / "a", {"requirements.txt": "tabulate\n"}).kind == "uv"
    assert spec_of(tmp_path / "b", {"python_env.yaml": "python: '3.10'\ndependencies: [x]\n"}).python == "3.10"
    assert spec_of(tmp_path / "c", {"conda.yaml": "dependencies: [numpy]\n"}).kind == "micromamba"
    assert spec_of(tmp_path / "d", {"a.py": ""}).kind == "system"
    d = spec_of(tmp_path / "e", {"MLproject": "docker_env: {image: img:2}\n"})
    assert (d.kind, d.base_image, d.needs_build) == ("docker", "img:2", False)


def test_public_python_base_by_default(tmp_path: Path) -> None:
    s = spec_of(tmp_path, {"python_env.yaml": "python: 3.10.4\n"}, environ={})
    assert s.base_image == "python:3.10-slim"


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


def test_env_manager_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no conda environment file"):
        spec_of(tmp_path / "a", {"requirements.txt": "x\n"}, manager="micromamba")
    with pytest.raises(ConfigError, match="declares docker_env"):
        spec_of(tmp_path / "b", {"MLproject": "docker_env: {image: i}\n"}, manager="uv")


def test_local_code_requirements_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match=r"requirements.txt: line 2: '-e \.'"):
        spec_of(tmp_path, {"requirements.txt": "x\n-e .\n"})


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
    key = env_spec(load_project(root), SETTINGS).key("t")
    assert key == env_spec(load_project(base), SETTINGS).key("t")


def test_real_changes_change_the_key(tmp_path: Path) -> None:
    def key(files: dict[str, str], base: str = "base:1", template: str = "t") -> str:
        root = write_project(tmp_path / str(len(list(tmp_path.iterdir()))), files)
        return env_spec(load_project(root), load_settings({"DOCKRUN_BASE_IMAGE": base})).key(template)

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
    assert a.key() == b.key() != c.key()


def test_requirements_includes(tmp_path: Path) -> None:
    root = write_project(tmp_path, {"requirements.txt": "-r base.txt\nb\n", "base.txt": "a\\\n  >=1\n"})
    assert canonical_requirements(root, "requirements.txt") == ("a>=1", "b")


def test_conda_channel_map(tmp_path: Path) -> None:
    files = {"conda.yaml": "channels: [defaults, bioconda]\ndependencies: [defaults::numpy, samtools]\n"}
    mapped = spec_of(tmp_path / "a", files, environ={"DOCKRUN_CONDA_CHANNEL_MAP": "defaults=conda-forge"})
    assert "conda-forge" in mapped.conda and "defaults" not in mapped.conda
    assert "conda-forge::numpy" in mapped.conda
    plain = spec_of(tmp_path / "b", files, environ={})
    assert plain.key() != mapped.key()
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
    assert env_spec(load_project(root), SETTINGS).key() == env_spec(load_project(ref), SETTINGS).key()
    for manager in ("uv",):
        assert env_spec(load_project(root), SETTINGS, manager).key() == env_spec(load_project(ref), SETTINGS,
                                                                                manager).key()


@settings(max_examples=30, deadline=None)
@given(order=st.permutations(["tabulate==0.9.0", "requests>=2", "numpy"]), spaced=st.booleans())
def test_python_env_key_ignores_order_and_spacing(tmp_path_factory, order, spaced) -> None:
    deps = [d.replace("==", " == ") if spaced else d for d in order]
    text = "python: '3.11'\nbuild_dependencies: [pip]\ndependencies:\n" + "".join(f"  - {d}\n" for d in deps)
    root = write_project(tmp_path_factory.mktemp("p") / "p", {"python_env.yaml": text})
    ref = write_project(tmp_path_factory.mktemp("p") / "p", {"python_env.yaml": (
        "python: 3.11\ndependencies: [numpy, requests>=2, tabulate==0.9.0]\nbuild_dependencies: [pip]\n")})
    assert env_spec(load_project(root), SETTINGS).key() == env_spec(load_project(ref), SETTINGS).key()
