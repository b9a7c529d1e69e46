"""A path parameter given as a URL with credentials (`-P data=https://user:token@host/data.csv`)
is downloaded by dockrun and the command gets the local copy; the record kept the URL as given
(for `runs rerun`), so the token was in runs.db and in what `runs show` prints (a record file
that travels). The record keeps it without userinfo and query; a rerun asks for it again. Through
the real CLI against an HTTP server on 127.0.0.1."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import serve_body, write_project

pytestmark = pytest.mark.usefixtures("no_leaks")

TOKEN = "s3ntinel-t0ken-in-a-url"


@pytest.fixture
def data_server() -> Iterator[str]:
    with serve_body(b"a,b\n1,2\n") as (address, _):
        yield address


def files_holding(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle.encode() in p.read_bytes()]


def test_a_downloaded_inputs_credentials_are_not_kept_in_the_record(
        cli, tmp_path: Path, base_image: str, home: Path, data_server: str) -> None:
    root = write_project(tmp_path / "proj", {"MLproject": (
        f"name: inputs\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        "    parameters:\n      data: path\n    command: \"cat {data}\"\n")})
    url = f"http://reader:{TOKEN}@{data_server}/data.csv"
    r = cli("run", "-q", str(root), "-P", f"data={url}")
    assert r.code == 0 and "1,2" in r.out, r.err
    [run_id] = [p.name for p in (home / "runs").iterdir()]
    shown = cli("runs", "show", run_id)
    assert shown.code == 0 and TOKEN not in shown.out, shown.out
    assert f"http://***@{data_server}/data.csv" in shown.out
    assert files_holding(home, TOKEN) == []

    again = cli("runs", "rerun", run_id)
    assert again.code == 2 and "-P data=URL" in again.err and len(again.err.strip().splitlines()) == 1, again.err
    again = cli("runs", "rerun", run_id, "-P", f"data={url}")
    assert again.code == 0 and "1,2" in again.out, again.err
    assert files_holding(home, TOKEN) == []


def test_a_docker_variables_value_is_not_kept_in_the_record(
        cli, tmp_path: Path, base_image: str, home: Path) -> None:
    root = write_project(tmp_path / "proj", {"MLproject": (
        f"name: varied\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        "    command: \"echo length=${{#API_TOKEN}}\"\n")})
    r = cli("run", "-q", str(root), "-A", f"e=API_TOKEN={TOKEN}", "-A", "shm-size=64m")
    assert r.code == 0 and f"length={len(TOKEN)}" in r.out, r.err
    [run_id] = [p.name for p in (home / "runs").iterdir()]
    shown = cli("runs", "show", run_id)
    assert TOKEN not in shown.out and '"e=API_TOKEN"' in shown.out and '"shm-size=64m"' in shown.out, shown.out
    assert files_holding(home, TOKEN) == []

    # A rerun copies it from its environment, as -A e=NAME does.
    unset = cli("runs", "rerun", run_id)
    assert unset.code == 2 and "API_TOKEN is not set" in unset.err, unset.err
    again = cli("runs", "rerun", run_id, env={"API_TOKEN": TOKEN})
    assert again.code == 0 and f"length={len(TOKEN)}" in again.out, again.err
    assert files_holding(home, TOKEN) == []
