"""Coming from `mlflow run`, continued: MLproject files as MLflow documents them (docker_env with
environment and volumes, entry points by script path, extra parameters, invalid files) and Git
projects by `#subdir` and `-v`, through the real CLI and engine. Tracking into sqlite and a real
`mlflow server` is in tests/test_tracking_local.py and tests/test_tracking_e2e.py."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import write_project


def test_docker_env_as_mlflow_documents_it(cli, tmp_path: Path, base_image: str, no_leaks) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note.txt").write_text("from a volume")
    project = write_project(tmp_path / "dockerized", {
        "MLproject": f"""
            name: dockerized
            docker_env:
              image: {base_image}
              volumes: ["{shared}:/data"]
              environment: [["NEW_ENV_VAR", "new_var_value"], "PASSED_THROUGH"]
            entry_points:
              main:
                parameters: {{alpha: float}}
                command: "python show.py {{alpha}}"
        """,
        "show.py": """
            import os, sys
            print(sys.argv[1:], os.environ["NEW_ENV_VAR"], os.environ["PASSED_THROUGH"], open("/data/note.txt").read())
        """,
    })
    r = cli("run", str(project), "-q", "-P", "alpha=0.5", "-P", "extra=x y", env={"PASSED_THROUGH": "from host"})
    assert r.code == 0, r.err
    assert r.out.strip() == "['0.5', '--extra', 'x y'] new_var_value from host from a volume"
    missing = cli("run", str(project), "-P", "alpha=1")  # a passthrough variable that is not set
    assert missing.code == 2 and "PASSED_THROUGH" in missing.err and len(missing.err.splitlines()) == 1


def test_entry_points_by_script_path(cli, tmp_path: Path, no_leaks) -> None:
    project = write_project(tmp_path / "scripts", {
        "train.py": "import sys; print('py', sys.argv[1:])\n",
        "tools/prep.sh": "echo sh \"$@\"\n",
    })
    py = cli("run", str(project), "-q", "-e", "train.py", "-P", "epochs=3")
    assert py.code == 0 and py.out.strip() == "py ['--epochs', '3']", py.err
    sh = cli("run", str(project), "-q", "-e", "tools/prep.sh", "-P", "n=2")
    assert sh.code == 0 and sh.out.strip() == "sh --n 2", sh.err
    missing = cli("run", str(project), "-e", "nope.py")
    assert missing.code == 2 and "nope.py" in missing.err


@pytest.mark.parametrize("mlproject, names", [
    ("name: [unclosed\n", "MLproject: not valid YAML"),
    ("- a list\n", "MLproject: expected a mapping"),
    ("entry_points: {main: {parameters: {a: {type: float, default: abc}}, command: 'x {a}'}}\n",
     "parameter 'a'"),
    ("entry_points: {main: {command: 'x {undeclared}'}}\n", "{undeclared}"),
    ("conda_env: missing.yaml\nentry_points: {main: {command: x}}\n", "missing.yaml"),
    ("python_env: p.yaml\nconda_env: c.yaml\nentry_points: {main: {command: x}}\n", "MLproject"),
])
def test_invalid_mlproject_files_are_one_line_exit_2(cli, tmp_path: Path, mlproject: str, names: str) -> None:
    project = write_project(tmp_path / "bad", {"MLproject": mlproject, "p.yaml": "python: '3.11'\n",
                                               "c.yaml": "dependencies: [python=3.11]\n"})
    r = cli("run", str(project))
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and names in r.err, r.err
    assert "Traceback" not in r.err


def test_git_subdirectory_and_version(cli, tmp_path: Path, no_leaks) -> None:
    repo = tmp_path / "repo"
    write_project(repo, {"README.md": "top\n", "sub/MLproject": "name: gitsub\nentry_points:\n  main:\n"
                                                                 "    command: \"cat version.txt\"\n",
                         "sub/version.txt": "one\n"})

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    git("tag", "v1")
    (repo / "sub" / "version.txt").write_text("two\n")
    git("commit", "-q", "-am", "two")
    uri = f"file://{repo}#sub"
    assert cli("run", uri, "-q").out.strip() == "two"  # the default branch
    assert cli("run", uri, "-q", "-v", "v1").out.strip() == "one"  # a tag
    first = git("rev-list", "--max-parents=0", "HEAD")
    assert cli("run", uri, "-q", "-v", first[:10]).out.strip() == "one"  # a short commit
    folder = cli("run", str(repo / "sub"), "-v", "v1")  # -v is for Git URIs, as in MLflow
    assert folder.code == 2 and "--version" in folder.err
