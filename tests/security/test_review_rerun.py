"""`dockrun runs rerun FILE.json`: a record file is someone else's (a colleague's, a bug report's).
It names a project and its parameters, which is what a rerun is for; what it asks of this machine
(host paths as parameters, docker options, the project's host access granted by the record's own
`trust`) needs the user's --trust, as a URI's host access does. Its text reaches the terminal
escaped. Through the real CLI on the real engine, with the record written as an attacker would."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from git_fixtures import new_remote

COMMAND = "echo ran; echo pwned > {out}"


def project(base_image: str, volumes: str = "[]") -> dict[str, str]:
    return {"MLproject": f"name: colleague\ndocker_env:\n  image: {base_image}\n  volumes: {volumes}\n"
                         "entry_points:\n  main:\n    parameters:\n      out: {type: path, default: out.txt}\n"
                         f"    command: \"{COMMAND}\"\n"}


def record_of(cli, home: Path, url: str, tmp_path: Path, *extra: str) -> dict:
    """A real record of a run of ``url``, as `runs show` prints it (what a colleague would send)."""
    (tmp_path / "theirs").mkdir()
    first = cli("run", url, "-q", "-P", f"out={tmp_path / 'theirs' / 'out.txt'}", *extra)
    assert first.code == 0, first.err
    [run_id] = [p.name for p in (home / "runs").iterdir()]
    shown = cli("runs", "show", run_id)
    assert shown.code == 0, shown.err
    return json.loads(shown.out)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """The user who is sent the record: a DOCKRUN_HOME of their own."""
    return tmp_path / "victim-home"


def rerun(cli, victim: Path, record: dict, tmp_path: Path, *args: str):
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))
    return cli("runs", "rerun", str(path), *args, env={"DOCKRUN_HOME": str(victim)})


def test_a_record_file_cannot_write_a_host_path_or_set_docker_options_without_trust(
        cli, tmp_path: Path, base_image: str, home: Path, victim: Path, no_leaks) -> None:
    remote = new_remote(tmp_path / "remotes", "colleague", project(base_image))
    record = record_of(cli, home, remote.url, tmp_path)
    (tmp_path / "mine").mkdir()
    planted = tmp_path / "mine" / "authorized_keys"  # a path on the victim's machine, not there yet
    record["options"]["parameters"]["out"] = str(planted)

    r = rerun(cli, victim, record, tmp_path)
    assert r.code == 2, r.err
    assert "ran" not in r.out and not planted.exists()
    assert r.err.strip().splitlines()[-1].startswith("dockrun: error:"), r.err
    assert f"host path out={planted}" in r.err and "--trust" in r.err and "Traceback" not in r.err
    assert not (victim / "runs").is_dir() or not any((victim / "runs").iterdir())

    record["options"]["parameters"]["out"] = str(tmp_path / "theirs" / "out.txt")
    record["options"]["docker_args"] = {"pid": "host"}
    r = rerun(cli, victim, record, tmp_path)
    assert r.code == 2, r.err
    assert len(r.err.strip().splitlines()) == 1 and "docker option pid=host" in r.err, r.err
    assert "ran" not in r.out

    # The user's own -P for the host path, and --trust for the rest: it runs.
    mine = tmp_path / "mine" / "out.txt"
    r = rerun(cli, victim, record, tmp_path, "-P", f"out={mine}", "--trust")
    assert r.code == 0, r.err
    assert "ran" in r.out and mine.read_text() == "pwned\n"


def test_a_record_file_does_not_grant_its_project_host_access(
        cli, tmp_path: Path, base_image: str, home: Path, victim: Path, no_leaks) -> None:
    remote = new_remote(tmp_path / "remotes", "colleague", project(base_image, '["/etc:/hostetc"]'))
    record = record_of(cli, home, remote.url, tmp_path, "--trust")
    assert record["options"]["trust"] is True  # their own --trust, kept in their record
    record["options"]["parameters"] = {}

    r = rerun(cli, victim, record, tmp_path)
    assert r.code == 2, r.err
    assert "volume /etc:/hostetc" in r.err and "--trust" in r.err, r.err
    assert "ran" not in r.out
    r = rerun(cli, victim, record, tmp_path, "--trust", "-P", f"out={tmp_path / 'mine.txt'}")
    assert r.code == 0 and "ran" in r.out, r.err  # as the line says: the user's --trust grants it


def test_a_record_files_text_reaches_the_terminal_escaped(
        cli, tmp_path: Path, base_image: str, home: Path, victim: Path, no_leaks) -> None:
    remote = new_remote(tmp_path / "remotes", "colleague", project(base_image))
    record = record_of(cli, home, remote.url, tmp_path)
    record["run_id"] = "abc\x1b]0;owned\x07\x1b[2K"
    record["options"]["parameters"] = {}

    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))
    r = cli("runs", "rerun", str(path), "-P", f"out={tmp_path / 'mine.txt'}", env={"DOCKRUN_HOME": str(victim)})
    assert r.code == 0, r.err
    assert "\x1b" not in r.err and "\x07" not in r.err
    assert "rerun of abc\\x1b]0;owned\\x07\\x1b[2K" in r.err


def test_a_record_files_image_id_names_no_file_on_this_machine(
        cli, tmp_path: Path, base_image: str, home: Path, victim: Path, no_leaks) -> None:
    remote = new_remote(tmp_path / "remotes", "colleague", project(base_image))
    record = record_of(cli, home, remote.url, tmp_path)
    target = tmp_path / "planted"
    # The image's installed packages are kept under the image's ID: a "path" there went anywhere.
    record["image_id"] = f"sha256:{target}"
    record["environment"] = {"recorded": True, "packages": {"evil": "1.0"}}
    record["options"]["parameters"] = {}

    r = rerun(cli, victim, record, tmp_path, "-P", f"out={tmp_path / 'mine.txt'}")
    assert r.code == 2, r.err
    assert "image_id" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not Path(f"{target}.json").exists()


def test_a_record_file_naming_a_folder_here_does_not_grant_its_host_access(
        cli, tmp_path: Path, base_image: str, home: Path, victim: Path, no_leaks) -> None:
    # A folder the sender put on this machine (a shared /tmp, or beside the record they sent): the
    # local-folder rule (your own code: its volumes honoured) is not the record file's to invoke.
    folder = tmp_path / "shared" / "proj"
    folder.mkdir(parents=True)
    for name, text in project(base_image, '["/etc:/hostetc"]').items():
        (folder / name).write_text(text)
    record = record_of(cli, home, str(folder), tmp_path)
    record["options"]["parameters"] = {}

    r = rerun(cli, victim, record, tmp_path, "-P", f"out={tmp_path / 'mine.txt'}")
    assert r.code == 2, r.err
    assert "volume /etc:/hostetc" in r.err and "--trust" in r.err and "ran" not in r.out, r.err
    r = rerun(cli, victim, record, tmp_path, "-P", f"out={tmp_path / 'mine.txt'}", "--trust")
    assert r.code == 0 and "ran" in r.out, r.err


@pytest.mark.parametrize("field,value,message", [
    ("options.parameters", ["out=x"], "options.parameters: expected an object of parameter values"),
    ("options.parameters", {"out": {"a": 1}}, "options.parameters: expected an object of parameter values"),
    ("options.docker_args", "gpus=all", "options.docker_args: expected a list of texts or an object"),
    ("options.trust", "yes", "options.trust: expected true or false"),
    ("options.cwd", 7, "options.cwd: expected text"),
    ("options", [], "options: expected an object"),
    ("entry_point", ["main"], "entry_point: expected text"),
    ("image_id", 1, "image_id: expected text or null"),
])
def test_a_record_file_of_the_wrong_shape_is_one_line_naming_the_field(
        cli, tmp_path: Path, base_image: str, home: Path, victim: Path, no_leaks,
        field: str, value: object, message: str) -> None:
    remote = new_remote(tmp_path / "remotes", "colleague", project(base_image))
    record = record_of(cli, home, remote.url, tmp_path)
    where = record
    *parents, last = field.split(".")
    for name in parents:
        where = where[name]
    where[last] = value

    r = rerun(cli, victim, record, tmp_path, "--trust")
    assert r.code == 2, r.err
    assert r.err.strip().splitlines() == [f"dockrun: error: {tmp_path / 'record.json'}: {message}"]
    assert not (victim / "runs").exists() or not any((victim / "runs").iterdir())
