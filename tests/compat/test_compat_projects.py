"""Coming from `mlflow run`: MLflow's own habits work unchanged under `dockrun run` (real engine).

Each test reproduces a behaviour MLflow documents or tests (parameters passed as typed, its
--env-manager names, exact Python pins, `-e .` requirements, path/uri semantics) and asserts what a
user sees. Where dockrun differs on purpose the README's "Coming from mlflow run" table says so.
"""
from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest

from conftest import write_project

ECHO = "import sys; print(repr(sys.argv[1:]))\n"


def argv(out: str) -> list[str]:
    return ast.literal_eval(out.strip().splitlines()[-1])


@pytest.fixture
def typed(tmp_path: Path) -> Path:
    return write_project(tmp_path / "typed", {
        "MLproject": """
            name: typed
            entry_points:
              main:
                parameters:
                  flag: bool
                  n: {type: int, default: 7}
                  x: {type: float, default: 0.5}
                  u: {type: uri, default: "s3://bucket/key"}
                command: "python echo.py {flag} {n} {x} {u}"
        """,
        "echo.py": ECHO,
    })


def test_parameters_reach_the_command_as_typed(cli, typed: Path, no_leaks) -> None:
    for flag in ("0", "1", "True", "no"):
        r = cli("run", str(typed), "-q", "-P", f"flag={flag}", "-P", "n=007", "-P", "x=1e-3", "-P", "extra=a b")
        assert r.code == 0, r.err
        assert argv(r.out) == [flag, "007", "1e-3", "s3://bucket/key", "--extra", "a b"]


@pytest.mark.parametrize("args, message", [
    (["-P", "flag=1", "-P", "flag=0"], "dockrun: error: -P flag: given more than once\n"),
    (["-P", "flag=maybe"], "dockrun: error: parameter 'flag' of entry point 'main': expected true or false "
                           "(or 1/0, yes/no), got 'maybe'\n"),
    (["-P", "flag=1", "-P", "u=data.csv"], "dockrun: error: parameter 'u' of entry point 'main': expected a URI "
                                          "(such as s3://..., https://... or file:///...), got 'data.csv'; "
                                          "declare the parameter as path for local files\n"),
])
def test_bad_parameters_are_one_line_exit_2(cli, typed: Path, args: list[str], message: str) -> None:
    r = cli("run", str(typed), *args)
    assert (r.code, r.err) == (2, message)


def test_path_and_file_uri_params_mount_only_what_they_name(cli, tmp_path: Path, no_leaks) -> None:
    project = write_project(tmp_path / "io", {
        "MLproject": """
            name: io
            entry_points:
              main:
                parameters: {data: path, features: uri, out: path}
                command: "python io_check.py {data} {features} {out}"
        """,
        "io_check.py": """
            import os, sys
            data, features, out = sys.argv[1:]
            print(open(data).read().strip(), features)
            print(open(features[len("file://"):]).read().strip())
            try:
                open(data, "a").write("x")
                print("input writable")
            except OSError:
                print("input read-only")
            print("sibling visible" if os.path.exists(os.path.join(os.path.dirname(data), "secret.txt"))
                  else "sibling hidden")
            open(out, "w").write("result")
        """,
    })
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "train.csv").write_text("a,b")
    (inputs / "secret.txt").write_text("do not mount me")
    (tmp_path / "f.json").write_text("{}")
    (tmp_path / "results").mkdir()
    r = cli("run", str(project), "-q", "-P", f"data={inputs / 'train.csv'}", "-P",
            f"features=file://{tmp_path / 'f.json'}", "-P", "out=results/model.txt", cwd=tmp_path)
    assert r.code == 0, r.err
    assert r.out.splitlines() == [f"a,b file://{tmp_path / 'f.json'}", "{}", "input read-only", "sibling hidden"]
    assert (tmp_path / "results" / "model.txt").read_text() == "result"
    assert (inputs / "train.csv").read_text() == "a,b"
    missing = cli("run", str(project), "-P", "data=nowhere/x.csv", "-P", f"features=file://{tmp_path}/f.json",
                  "-P", "out=o.txt", cwd=tmp_path)
    assert missing.code == 2 and missing.err.startswith("dockrun: error: parameter 'data' of entry point 'main': "
                                                        "no such file or directory")


@pytest.fixture
def tabulated(tmp_path: Path) -> Path:
    return write_project(tmp_path / "tab", {
        "MLproject": """
            name: tab
            python_env: python_env.yaml
            entry_points:
              main:
                command: "python -c 'import tabulate; print(\\"tabulate\\", tabulate.__version__)'"
        """,
        "python_env.yaml": "python: '3.11'\ndependencies: [tabulate==0.9.0]\n",
    })


def test_mlflow_env_manager_names(cli, tabulated: Path, no_leaks) -> None:
    virtualenv = cli("run", str(tabulated), "-q", "--env-manager", "virtualenv")
    assert virtualenv.code == 0 and virtualenv.out.strip() == "tabulate 0.9.0", virtualenv.err
    # local: the image's own Python, nothing installed (the base image has no tabulate)
    local = cli("run", str(tabulated), "-q", "--env-manager", "local")
    assert local.code == 1 and "No module named 'tabulate'" in local.err
    conda = cli("run", str(tabulated), "--env-manager", "conda")
    assert (conda.code, conda.err) == (2, "dockrun: error: --env-manager conda: a python_env project cannot be "
                                          "installed with conda; use --env-manager virtualenv or local\n")


def test_an_exact_python_pin_is_honoured_or_the_build_says_why(cli, tmp_path: Path, base_image: str) -> None:
    import subprocess

    have = subprocess.run(["docker", "run", "--rm", base_image, "python3", "-c",
                           "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    files = {"MLproject": "name: pinned\npython_env: python_env.yaml\nentry_points:\n  main:\n"
                          "    command: python -c 'import platform; print(platform.python_version())'\n"}
    exact = write_project(tmp_path / "exact", {**files, "python_env.yaml": f"python: '{have}'\n"})
    r = cli("run", str(exact), "-q")
    assert r.code == 0 and r.out.strip() == have, r.err
    other = have.rsplit(".", 1)[0] + "." + str(int(have.rsplit(".", 1)[1]) + 1)
    wrong = write_project(tmp_path / "wrong", {**files, "python_env.yaml": f"python: '{other}'\n"})
    r = cli("run", str(wrong), "-q")
    assert r.code == 1
    assert r.err.splitlines()[-1] == (f"dockrun: error: building dockrun-env:{r.err.split('dockrun-env:')[1][:32]}: "
                                      f"the base image {base_image} has Python {have}, the project pins Python "
                                      f"{other}; use a base image with it (--base-image)")


def test_requirements_that_install_the_project_itself(cli, tmp_path: Path, no_leaks) -> None:
    project = write_project(tmp_path / "pkgproj", {
        "MLproject": "name: pkgproj\nentry_points:\n  main:\n    command: python -m mypkg.cli\n",
        "requirements.txt": "tabulate==0.9.0\n-e .\n./libs/helper\n",
        "pyproject.toml": """
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "mypkg"
            version = "0.1"
            [tool.setuptools.packages.find]
            where = ["src"]
        """,
        "src/mypkg/__init__.py": "",
        "src/mypkg/cli.py": """
            import helper, mypkg, tabulate
            print("mypkg from", mypkg.__file__, "helper", helper.VALUE)
        """,
        "libs/helper/setup.py": "from setuptools import setup\n"
                                "setup(name='helper', version='1', py_modules=['helper'])\n",
        "libs/helper/helper.py": "VALUE = 42\n",
    })
    r = cli("run", str(project), "-q")
    assert r.code == 0, r.err
    assert r.out.strip() == "mypkg from /project/src/mypkg/__init__.py helper 42"
    # A code change keeps the environment image: only the project image is built again.
    # (a fresh token: the engine keeps images of earlier sessions, keyed by content)
    changed = f"import mypkg\nprint('changed', mypkg.__file__)  # {uuid.uuid4()}\n"
    (project / "src" / "mypkg" / "cli.py").write_text(changed)
    again = cli("run", str(project))
    assert again.code == 0 and "changed /project/src/mypkg/__init__.py" in again.out, again.err
    assert "building environment image" not in again.err and "building project image" in again.err
