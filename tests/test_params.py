"""Parameter validation and command rendering (no Docker)."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockrun.errors import ParameterError, ProjectError
from dockrun.project.params import Mount, render_command
from dockrun.project.spec import EntryPoint, Parameter


def ep(command: str, *params: Parameter) -> EntryPoint:
    return EntryPoint(name="main", command=command, parameters=params)


@settings(max_examples=300, deadline=None)
@given(value=st.text(min_size=0, max_size=60))
def test_any_value_comes_back_as_exactly_one_argument(value: str) -> None:
    value = value.replace("\x00", "")  # no argv can hold NUL
    rendered = render_command(ep("prog --x {x} end", Parameter("x")), {"x": value})
    assert shlex.split(rendered.command) == ["prog", "--x", value, "end"]


@settings(max_examples=200, deadline=None)
@given(key=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), value=st.text(max_size=40))
def test_undeclared_params_are_appended_quoted(key: str, value: str) -> None:
    value = value.replace("\x00", "")
    rendered = render_command(ep("prog"), {key: value})
    assert shlex.split(rendered.command) == ["prog", f"--{key}", value]


def test_float_int_bool_validation() -> None:
    e = ep("p {a} {n} {b}", Parameter("a", "float"), Parameter("n", "int"), Parameter("b", "bool"))
    # Validated, then passed on exactly as typed (mlflow run does not rewrite bools either).
    for typed in ("true", "False", "1", "0", "Yes", "NO"):
        assert render_command(e, {"a": "0.3", "n": "4", "b": typed}).command == f"p 0.3 4 {typed}"
    assert render_command(e, {"a": "1e-3", "n": "007", "b": "1"}).command == "p 1e-3 007 1"
    for given_, msg in [({"a": "abc", "n": "1", "b": "1"},
                         "parameter 'a' of entry point 'main': expected a float, got 'abc'"),
                        ({"a": "nan", "n": "1", "b": "1"}, "expected a finite float"),
                        ({"a": "1", "n": "1.5", "b": "1"}, "expected an integer, got '1.5'"),
                        ({"a": "1", "n": "1", "b": "maybe"}, "expected true or false")]:
        with pytest.raises(ParameterError) as err:
            render_command(e, given_)
        assert msg in str(err.value)


def test_missing_required_param_is_named() -> None:
    expected = r"parameter 'alpha' of entry point 'main' has no default and was not given \(-P alpha=VALUE\)"
    with pytest.raises(ParameterError, match=expected):
        render_command(ep("p {alpha}", Parameter("alpha", "float")), {})


def test_defaults_apply() -> None:
    assert render_command(ep("p {a}", Parameter("a", "float", "0.5")), {}).command == "p 0.5"


def test_path_param_made_absolute_and_mounted_narrowly(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.csv").write_text("1")
    e = ep("p {data} {out}", Parameter("data", "path"), Parameter("out", "path"))
    r = render_command(e, {"data": "in/x.csv", "out": str(tmp_path / "out.txt")}, cwd=tmp_path)
    assert r.command == f"p {tmp_path}/in/x.csv {tmp_path}/out.txt"
    # an output that does not exist yet: only its path (the backend gives it a folder of its own);
    # the input beside it stays an input
    assert r.mounts == (Mount(str(tmp_path / "in" / "x.csv"), read_only=True),
                        Mount(str(tmp_path / "out.txt"), output=True))
    (tmp_path / "in" / "sub").mkdir()
    nested = render_command(e, {"data": "in", "out": "in/sub/new.txt"}, cwd=tmp_path)
    # an existing input: only it, read-only; an output inside it stays, on top
    assert nested.mounts == (Mount(str(tmp_path / "in"), read_only=True),
                             Mount(str(tmp_path / "in" / "sub" / "new.txt"), output=True))
    # an output straight in an input folder: that folder cannot be both
    with pytest.raises(ParameterError, match=r"parameter 'out': its folder .* is the input of parameter 'data'"):
        render_command(e, {"data": "in", "out": "in/new.txt"}, cwd=tmp_path)
    folder = render_command(ep("p {d}", Parameter("d", "path")), {"d": "in"}, cwd=tmp_path)
    assert folder.mounts == (Mount(str(tmp_path / "in"), read_only=True),)


def test_path_param_never_mounts_more_than_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "x.csv").write_text("1")
    e = ep("p {d}", Parameter("d", "path"))
    assert render_command(e, {"d": "~/x.csv"}).mounts == (Mount(str(tmp_path / "x.csv"), read_only=True),)
    assert render_command(e, {"d": "/etc/hostname"}).mounts == (Mount("/etc/hostname", read_only=True),)
    with pytest.raises(ParameterError, match="would mount the root directory"):
        render_command(e, {"d": "/"})


def test_path_default_is_relative_to_project_in_container(tmp_path: Path) -> None:
    r = render_command(ep("p {d}", Parameter("d", "path", "data/x.csv")), {}, cwd=tmp_path)
    assert r.command == "p /project/data/x.csv" and r.mounts == ()


def test_path_in_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"parameter 'd'.*no such file or directory .* \(nor its folder"):
        render_command(ep("p {d}", Parameter("d", "path")), {"d": str(tmp_path / "no" / "x")})


def test_uri_param_passed_as_given_and_bare_paths_refused(tmp_path: Path) -> None:
    e = ep("p {u}", Parameter("u", "uri"))
    assert render_command(e, {"u": "s3://bucket/key"}).command == "p s3://bucket/key"
    (tmp_path / "f.json").write_text("{}")
    r = render_command(e, {"u": f"file://{tmp_path}/f.json"}, cwd=tmp_path)
    assert r.command == f"p file://{tmp_path}/f.json"  # as given; its target mounted so it works inside
    assert r.mounts == (Mount(str(tmp_path / "f.json"), read_only=True),)
    with pytest.raises(ParameterError, match="parameter 'u'.*expected a URI.*got 'file.txt'"):
        render_command(e, {"u": "file.txt"}, cwd=tmp_path)


@pytest.mark.parametrize("command, message", [
    ("p {nope}", "command uses {nope} but declares no parameter of that name"),
    ("p {a", "command is not a valid format string"),
    ("p {0}", "command is not a valid format string"),
])
def test_malformed_command_is_a_project_error(command: str, message: str) -> None:
    with pytest.raises(ProjectError) as e:
        render_command(ep(command, Parameter("a", "string", "x")), {})
    assert message in str(e.value)


def test_bad_extra_param_name() -> None:
    with pytest.raises(ParameterError, match="parameter name"):
        render_command(ep("p"), {"a b;rm": "x"})


def test_remote_path_is_to_be_downloaded_then_mounted(tmp_path: Path) -> None:
    e = ep("p {data} {u}", Parameter("data", "path"), Parameter("u", "uri"))
    first = render_command(e, {"data": "s3://bucket/train.csv", "u": "s3://bucket/x"}, cwd=tmp_path)
    assert first.downloads == {"data": "s3://bucket/train.csv"}  # a uri is passed as given
    local = tmp_path / "dl" / "train.csv"
    local.parent.mkdir()
    local.write_text("a,b\n")
    again = render_command(e, {"data": "s3://bucket/train.csv", "u": "s3://bucket/x"}, cwd=tmp_path,
                           downloaded={"data": str(local)})
    assert again.downloads == {} and again.command == f"p {local} s3://bucket/x"
    assert again.mounts == (Mount(str(local), read_only=True),)


def test_undownloadable_remote_path_is_an_error() -> None:
    with pytest.raises(ParameterError, match="cannot download ipfs: paths"):
        render_command(ep("p {d}", Parameter("d", "path")), {"d": "ipfs://data/x.csv"})


def test_an_output_is_announced_once_naming_the_parameter(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    e = ep("p {data} {out}", Parameter("data", "path"), Parameter("out", "path"))
    given = {"data": "s3://bucket/in.csv", "out": "model.pkl"}
    with caplog.at_level("WARNING", logger="dockrun"):
        render_command(e, given, cwd=tmp_path)
        (tmp_path / "in.csv").write_text("1")
        # the second rendering, with the downloads, says nothing again
        render_command(e, given, cwd=tmp_path, downloaded={"data": str(tmp_path / "in.csv")})
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"-P out=model.pkl: no such file; taken as an output (written by the run into "
                    f"{tmp_path / 'model.pkl'})"]
