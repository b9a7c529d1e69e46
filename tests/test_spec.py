"""MLproject parsing and conventions (no Docker)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from conftest import write_project
from dockrun.errors import ProjectError
from dockrun.project.spec import load_project


def test_full_mlproject(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {
        "MLproject": """
            name: demo
            python_env: python_env.yaml
            entry_points:
              main:
                parameters:
                  alpha: float
                  n: {type: int, default: 3}
                  data: {type: path, default: data.csv}
                  flag: {type: bool, default: true}
                command: "python train.py {alpha} {n} {data} {flag}"
              other: "echo hi"
        """,
        "python_env.yaml": "python: '3.11'\n",
    })
    spec = load_project(root)
    assert spec.name == "demo" and spec.env_kind == "python" and spec.env_file == "python_env.yaml"
    main = spec.entry_point("main")
    assert [(p.name, p.type, p.default) for p in main.parameters] == [
        ("alpha", "float", None), ("n", "int", "3"), ("data", "path", "data.csv"), ("flag", "bool", "true")]
    assert spec.entry_point("other").command == "echo hi"


def test_docker_env(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"MLproject": """
        name: d
        docker_env:
          image: python:3.11-slim
          volumes: ["/data:/data:ro"]
          environment: [["A", "1"], "HOME_VAR"]
        entry_points: {main: {command: "true"}}
    """})
    env = load_project(root).docker_env
    assert env is not None and env.image == "python:3.11-slim"
    assert env.volumes == ("/data:/data:ro",)
    assert env.environment == (("A", "1"), ("HOME_VAR", None))


def test_conventions_without_mlproject(tmp_path: Path) -> None:
    root = write_project(tmp_path / "myproj", {"conda.yaml": "dependencies: [python=3.11]\n",
                                                "train.py": "print(1)\n", "run.sh": "echo 1\n"})
    spec = load_project(root)
    assert spec.name == "myproj" and spec.env_kind == "conda" and spec.env_file == "conda.yaml"
    assert spec.entry_point("train.py").command == "python train.py"
    assert spec.entry_point("run.sh").command == "bash run.sh"
    with pytest.raises(ProjectError, match="no entry point 'main'"):
        spec.entry_point("main")


def test_requirements_convention(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"requirements.txt": "tabulate\n", "a.py": ""})
    assert load_project(root).env_kind == "requirements"


@pytest.mark.parametrize("name", ["../x.py", "/etc/x.py", "sub/../../x.py"])
def test_entry_point_outside_project_refused(tmp_path: Path, name: str) -> None:
    root = write_project(tmp_path / "p", {"a.py": ""})
    with pytest.raises(ProjectError, match="inside the project"):
        load_project(root).entry_point(name)


@pytest.mark.parametrize("mlproject, message", [
    ("name: x\nconda_env: conda.yaml\ndocker_env: {image: y}\n", "declares conda_env and docker_env"),
    ("name: x\npython_env: missing.yaml\n", "python_env: file 'missing.yaml' not found"),
    ("name: x\ndocker_env: {volumes: []}\n", "docker_env: expected a mapping with an 'image'"),
    ("name: x\nentry_points: [a, b]\n", "entry_points: expected a mapping"),
    ("name: x\nentry_points: {main: {parameters: {}}}\n", "entry_points.main: expected a mapping with a 'command'"),
    ("name: x\nentry_points: {main: {command: c, parameters: {a: 3}}}\n", "parameters.a: expected a type"),
    ("name: [unclosed\n", "MLproject: not valid YAML at line"),
    ("- a\n- b\n", "MLproject: expected a mapping"),
    ("name: x\nconda_env: ../conda.yaml\n", "must be a path inside the project"),
    ("name: x\ndocker_env: {image: y, environment: [[1, 2, 3]]}\n", "docker_env.environment"),
])
def test_mlproject_errors_name_file_and_field(tmp_path: Path, mlproject: str, message: str) -> None:
    root = write_project(tmp_path / "p", {"MLproject": mlproject, "conda.yaml": ""})
    with pytest.raises(ProjectError) as e:
        load_project(root)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_entry_point_names_declared_ones(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"MLproject": "entry_points: {main: {command: x}, eval: {command: y}}\n"})
    with pytest.raises(ProjectError, match=r"MLproject: entry_points: no entry point 'train' \(declared: eval, main"):
        load_project(root).entry_point("train")


def test_unknown_type_is_string_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mlproject = "entry_points: {main: {command: 'x {a}', parameters: {a: weird}}}\n"
    root = write_project(tmp_path / "p", {"MLproject": mlproject})
    with caplog.at_level(logging.WARNING, logger="dockrun"):
        ep = load_project(root).entry_point("main")
    assert ep.parameters[0].type == "string"
    assert "unknown type 'weird'" in caplog.text
