"""A project from elsewhere does not choose what this machine downloads for it.

A `path` parameter whose value is a remote URI is downloaded by dockrun, on this machine, with its
network and its credentials (boto3's for s3://, the workspace token for dbfs:/, the tracking
server's for runs:/), and the copy is mounted into the run. When the URI is the default of a
project from a Git URI or an archive, its author picks it: the user's private bucket, or a
service only this machine's loopback serves, which a container cannot reach itself. So such a
download is host access like docker_env's volumes: refused without --trust, in one line naming
the parameter and how to allow it, before anything is fetched. A URI the user gives (-P) is theirs.

Through the real CLI: a Git repository (file://) whose default names a file served on this
machine's 127.0.0.1, which a container on the bridge cannot reach."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import serve_body
from git_fixtures import new_remote

pytestmark = pytest.mark.usefixtures("no_leaks")

SECRET = "host-only-secret-3141"


@pytest.fixture
def loopback_service() -> Iterator[tuple[str, list[str]]]:
    """A service of this machine's loopback (an admin page, a metadata endpoint): its address and
    the paths it was asked for."""
    with serve_body(SECRET.encode() + b"\n") as served:
        yield served


def _project(tmp_path: Path, base_image: str, default: str):
    return new_remote(tmp_path, "fetcher", {"MLproject": (
        f"name: fetcher\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        f"    parameters:\n      data: {{type: path, default: '{default}'}}\n    command: \"cat {{data}}\"\n")})


def _files_holding(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle.encode() in p.read_bytes()]


def test_a_git_projects_remote_default_is_not_fetched_without_trust(
        cli, tmp_path: Path, home: Path, base_image: str, loopback_service) -> None:
    address, asked = loopback_service
    url = f"http://{address}/admin/secret.txt"
    remote = _project(tmp_path, base_image, url)

    refused = cli("run", remote.url)
    assert refused.code == 2, (refused.code, refused.out, refused.err)
    lines = refused.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dockrun: error: "), refused.err
    assert "'data'" in lines[0] and url in lines[0] and "--trust" in lines[0], lines[0]
    assert SECRET not in refused.out + refused.err
    assert asked == [], "the project's default was fetched"
    assert _files_holding(home, SECRET) == []
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())

    # `dockrun shell` and `dockrun sweep` take the same way in.
    shell = cli("shell", remote.url, "--", "cat", "/dev/null")
    assert shell.code == 2 and "--trust" in shell.err, shell.err
    sweep = cli("sweep", remote.url, "-P", "n=1,2")
    assert sweep.code == 2 and "--trust" in sweep.err, sweep.err
    assert asked == []

    # The user's own choice of the same URI is theirs to make, and --trust allows the default.
    given = cli("run", "-q", remote.url, "-P", f"data={url}")
    assert given.code == 0 and SECRET in given.out, given.err
    trusted = cli("run", "-q", "--trust", remote.url)
    assert trusted.code == 0 and SECRET in trusted.out, trusted.err


def test_an_archive_projects_remote_default_is_refused_too(
        cli, tmp_path: Path, home: Path, base_image: str, loopback_service) -> None:
    import tarfile

    address, asked = loopback_service
    url = f"http://{address}/secret.txt"
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "MLproject").write_text(
        f"name: fetcher\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        f"    parameters:\n      data: {{type: path, default: '{url}'}}\n    command: \"cat {{data}}\"\n")
    archive = tmp_path / "proj.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="proj")
    r = cli("run", str(archive))
    assert r.code == 2 and "'data'" in r.err and "--trust" in r.err, r.err
    assert asked == []


def test_a_local_folders_remote_default_is_fetched_as_before(
        cli, tmp_path: Path, base_image: str, loopback_service) -> None:
    """The user's own folder: its defaults are the user's, as under mlflow run."""
    address, asked = loopback_service
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "MLproject").write_text(
        f"name: mine\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        f"    parameters:\n      data: {{type: path, default: 'http://{address}/x.txt'}}\n"
        "    command: \"cat {data}\"\n")
    r = cli("run", "-q", str(folder))
    assert r.code == 0 and SECRET in r.out, r.err
    assert asked == ["/x.txt"]


def test_a_record_files_remote_parameter_is_not_fetched_without_trust(
        cli, tmp_path: Path, home: Path, base_image: str, loopback_service) -> None:
    """`dockrun runs rerun FILE.json`: the record is someone else's, and so are the URIs it names
    (test_review_rerun's rule for host paths)."""
    import json

    address, asked = loopback_service
    remote = new_remote(tmp_path, "colleague", {"MLproject": (
        f"name: colleague\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        "    parameters:\n      data: path\n    command: \"cat {data}\"\n")})
    first = cli("run", "-q", remote.url, "-P", f"data=http://{address}/theirs.csv")
    assert first.code == 0, first.err
    [run_id] = [p.name for p in (home / "runs").iterdir()]
    record = json.loads(cli("runs", "show", run_id).out)
    record["options"]["parameters"]["data"] = f"http://{address}/admin/secret.txt"
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))
    asked.clear()

    victim = {"DOCKRUN_HOME": str(tmp_path / "victim-home")}
    r = cli("runs", "rerun", str(path), env=victim)
    assert r.code == 2, (r.code, r.out, r.err)
    assert len(r.err.strip().splitlines()) == 1 and "--trust" in r.err and "data=" in r.err, r.err
    assert SECRET not in r.out and asked == []

    # The user's own -P for it, or --trust: it runs.
    mine = cli("runs", "rerun", str(path), "-P", f"data=http://{address}/mine.csv", env=victim)
    assert mine.code == 0 and SECRET in mine.out, mine.err
    trusted = cli("runs", "rerun", str(path), "--trust", env=victim)
    assert trusted.code == 0 and SECRET in trusted.out, trusted.err
