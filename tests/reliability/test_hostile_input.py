"""Hostile input: whatever a project, an environment file or a parameter holds, dockrun answers with
one line and exit 2 (a DockrunError), never a traceback. Pure: no engine needed."""
from __future__ import annotations

import os
import shlex
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import write_project
from dockrun.backends.local.backend import LocalBackend
from dockrun.errors import DockrunError, SourceError
from dockrun.prepare import prepare
from dockrun.project.params import render_command
from dockrun.project.spec import EntryPoint, Parameter
from dockrun.request import RunRequest

ENVIRON = {"DOCKRUN_BASE_IMAGE": "base:1"}
FILES = ("MLproject", "python_env.yaml", "conda.yaml", "requirements.txt")

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(alphabet=string.printable, max_size=20))
yaml_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(alphabet=string.ascii_letters + "_-.", max_size=12),
                                                 inner, max_size=4)), max_leaves=20)
# Shapes close to the real thing reach deeper than random YAML.
entry = st.fixed_dictionaries({}, optional={
    "parameters": st.one_of(yaml_values, st.dictionaries(st.sampled_from(["a", "b", "data", "x y"]), st.one_of(
        yaml_values, st.fixed_dictionaries({}, optional={"type": st.sampled_from(
            ["string", "float", "int", "bool", "path", "uri", "weird", 3]), "default": yaml_values})), max_size=3)),
    "command": st.one_of(yaml_values, st.sampled_from(["python t.py {a}", "x {b} {", "{0}", "echo {{}}", "{a.b}"]))})
mlproject = st.fixed_dictionaries({}, optional={
    "name": yaml_values, "python_env": st.one_of(yaml_values, st.just("python_env.yaml")),
    "conda_env": st.one_of(yaml_values, st.just("conda.yaml"), st.just("../../etc/passwd")),
    "docker_env": st.one_of(yaml_values, st.fixed_dictionaries({"image": yaml_values}, optional={
        "volumes": yaml_values, "environment": yaml_values})),
    "entry_points": st.one_of(yaml_values, st.dictionaries(st.sampled_from(["main", "x"]), entry, max_size=2))})


def _try(root: Path, params: dict[str, str] | None = None) -> None:
    try:
        prepare(RunRequest(uri=str(root), parameters=params or {}), LocalBackend(), ENVIRON)
    except DockrunError as e:
        assert "\n" not in str(e), str(e)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=mlproject, env=yaml_values, reqs=st.text(max_size=80), params=st.dictionaries(
    st.sampled_from(["a", "b", "data"]), st.text(max_size=10), max_size=2))
def test_any_mlproject_and_env_files_give_a_one_line_error_or_a_plan(tmp_path_factory, spec, env, reqs,
                                                                     params) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "MLproject").write_text(yaml.safe_dump(spec))
    (root / "python_env.yaml").write_text(yaml.safe_dump(env))
    (root / "conda.yaml").write_text(yaml.safe_dump(env))
    (root / "requirements.txt").write_text(reqs)
    _try(root, params)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300), name=st.sampled_from(FILES))
def test_arbitrary_bytes_in_any_project_file(tmp_path_factory, text: str, name: str) -> None:
    root = tmp_path_factory.mktemp("raw")
    (root / name).write_text(text)
    if name != "MLproject":
        (root / "MLproject").write_text({"python_env.yaml": "python_env: python_env.yaml\n",
                                         "conda.yaml": "conda_env: conda.yaml\n"}.get(name, "name: x\n"))
    _try(root)


@pytest.mark.parametrize("text", [
    # a billion laughs: aliases expanding to 10^9 nodes
    "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "entry_points: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
    "entry_points: {main: {command: " + "x" * 5_000_000 + "}}\n",  # 5 MB
    "name: [unclosed\n",
    "\x00\x01binary",
])
def test_yaml_bombs_and_tricks(tmp_path: Path, text: str) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "MLproject").write_text(text)
    _try(root)


@pytest.mark.parametrize("name", ["MLproject", "python_env.yaml", "conda.yaml"])
def test_yaml_never_runs_code_it_names(tmp_path: Path, name: str) -> None:
    """A YAML tag that makes an unsafe loader call os.system: the command would leave a file; every
    YAML file dockrun reads is loaded without running it (through the CLI, as a user meets it)."""
    marker = tmp_path / "pwned"
    payload = f"!!python/object/apply:os.system ['touch {marker}']\n"
    yaml.unsafe_load(payload)  # the payload is live: an unsafe loader does run it
    assert marker.exists()
    marker.unlink()
    root = write_project(tmp_path / "p", {"MLproject": {"MLproject": payload,
                                                       "python_env.yaml": "python_env: python_env.yaml\n",
                                                       "conda.yaml": "conda_env: conda.yaml\n"}[name]})
    (root / name).write_text(payload)
    env = {**os.environ, **ENVIRON, "DOCKRUN_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-m", "dockrun.cli", "run", str(root)], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not marker.exists()


def test_a_hostile_project_through_the_cli_is_one_line_exit_2(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"MLproject": "entry_points: {main: {command: 'x {a'}}\n"})
    env = {**os.environ, **ENVIRON, "DOCKRUN_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-m", "dockrun.cli", "run", str(root)], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "home" / "runs").exists()  # nothing recorded for bad input


@settings(max_examples=10_000, deadline=None)
@given(value=st.text(max_size=60).map(lambda s: s.replace("\x00", "")))
def test_any_value_is_exactly_one_argument_at_ten_thousand_examples(value: str) -> None:
    rendered = render_command(EntryPoint("main", "prog {x} end", (Parameter("x"),)), {"x": value})
    assert shlex.split(rendered.command) == ["prog", value, "end"]


@pytest.mark.parametrize("sub", ["../outside", "/etc", "a/../../x", "link-out", "link-out/inner"])
def test_subdirectories_never_leave_the_project(tmp_path: Path, sub: str) -> None:
    outside = write_project(tmp_path / "outside", {"MLproject": "entry_points: {main: {command: 'true'}}\n",
                                                   "inner/MLproject": "entry_points: {main: {command: 'true'}}\n"})
    root = write_project(tmp_path / "proj", {"MLproject": "name: p\n"})
    (root / "link-out").symlink_to(outside)
    with pytest.raises(SourceError, match="subdirectory"):
        prepare(RunRequest(uri=f"{root}#{sub}"), LocalBackend(), ENVIRON)


@pytest.mark.parametrize("entry", ["../x.py", "/etc/x.py", "link.py", "dir-link/x.py"])
def test_script_entry_points_never_leave_the_project(tmp_path: Path, entry: str) -> None:
    outside = write_project(tmp_path / "outside", {"x.py": "print('outside')\n"})
    root = write_project(tmp_path / "proj", {"MLproject": "name: p\n"})
    (root / "link.py").symlink_to(outside / "x.py")
    (root / "dir-link").symlink_to(outside)
    with pytest.raises(DockrunError, match="entry point"):
        prepare(RunRequest(uri=str(root), entry_point=entry), LocalBackend(), ENVIRON)


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=30))
def test_table_cells_never_carry_control_characters(name: str) -> None:
    from dockrun.views import printable

    cell = printable(name)
    assert cell.isprintable() and "\n" not in cell and "\x1b" not in cell
    if name.isprintable():
        assert cell == name


def test_a_project_named_with_escapes_cannot_repaint_the_terminal(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"MLproject": 'name: "\\e[2J\\e[31mfake\\nline"\n'
                                                       "entry_points: {main: {command: 'x {a'}}\n"})
    env = {**os.environ, **ENVIRON, "DOCKRUN_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-m", "dockrun.cli", "run", str(root), "-e", "\x1b[2Jmain"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "\x1b" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
