"""A project from elsewhere (Git, archive) gets no host access unless the user trusts it; a mount
that hands over the machine is said out loud whatever the source. Driven through the real CLI
against the real engine, as a user who runs a colleague's URI would meet it."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from conftest import write_project
from git_fixtures import new_remote

SECRET = "s3cr3t-value-of-the-host"


def mlproject(base_image: str, volumes: list[str], env: list[str]) -> str:
    vols = "".join(f"\n    - \"{v}\"" for v in volumes)
    envs = "".join(f"\n    - {e}" for e in env)
    return (f"name: hostile\ndocker_env:\n  image: {base_image}\n  volumes:{vols or ' []'}\n"
            f"  environment:{envs or ' []'}\n"
            "entry_points:\n  main:\n    command: "
            "\"ls /host >/dev/null && echo mounted; echo var=$AWS_SECRET_ACCESS_KEY\"\n")


@pytest.fixture
def hostile_git(tmp_path: Path, base_image: str):
    files = {"MLproject": mlproject(base_image, ["/:/host", "/var/run/docker.sock:/var/run/docker.sock"],
                                    ["AWS_SECRET_ACCESS_KEY"])}
    return new_remote(tmp_path / "remotes", "hostile", files)


def test_a_git_project_asking_for_host_access_is_refused_with_what_it_asks(
        cli, hostile_git, home: Path, no_leaks) -> None:
    r = cli("run", hostile_git.url, env={"AWS_SECRET_ACCESS_KEY": SECRET})
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    line = lines[0]
    for asked in ("volume /:/host", "volume /var/run/docker.sock:/var/run/docker.sock",
                  "host variable AWS_SECRET_ACCESS_KEY", "--trust"):
        assert asked in line, line
    assert SECRET not in r.out + r.err
    assert "Traceback" not in r.err
    assert not (home / "runs").is_dir() or not any((home / "runs").iterdir())


def test_the_same_git_project_trusted_runs_with_a_loud_line_for_the_machine(
        cli, hostile_git, no_leaks) -> None:
    r = cli("run", hostile_git.url, "--trust", env={"AWS_SECRET_ACCESS_KEY": SECRET})
    assert r.code == 0, r.err
    assert "mounted" in r.out and f"var={SECRET}" in r.out
    assert "/var/run/docker.sock:/var/run/docker.sock gives the container the Docker engine's socket" in r.err
    assert "/:/host gives the container the whole machine's file system" in r.err


def test_an_archive_project_asking_for_a_host_variable_is_refused(
        cli, tmp_path: Path, base_image: str, no_leaks) -> None:
    data = mlproject(base_image, [], ["AWS_SECRET_ACCESS_KEY"]).encode()
    archive = tmp_path / "proj.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("proj/MLproject")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    r = cli("run", str(archive), env={"AWS_SECRET_ACCESS_KEY": SECRET})
    assert r.code == 2, r.err
    assert "host variable AWS_SECRET_ACCESS_KEY" in r.err and "--trust" in r.err
    assert len(r.err.strip().splitlines()) == 1 and SECRET not in r.out + r.err


def test_a_project_without_host_access_needs_no_trust(cli, tmp_path: Path, base_image: str, no_leaks) -> None:
    files = {"MLproject": mlproject(base_image, [], []).replace("ls /host >/dev/null && echo mounted; ", "")}
    remote = new_remote(tmp_path / "remotes", "plain", files)
    r = cli("run", remote.url)
    assert r.code == 0, r.err
    assert "var=" in r.out


def test_a_local_folder_gets_its_volumes_and_the_engine_socket_is_said_out_loud(
        cli, tmp_path: Path, base_image: str, no_leaks) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("from the host\n")
    project = write_project(tmp_path / "mine", {"MLproject": (
        f"name: mine\ndocker_env:\n  image: {base_image}\n"
        f"  volumes: [\"{shared}:/data:ro\", \"/var/run/docker.sock:/var/run/docker.sock\"]\n"
        "entry_points:\n  main:\n    command: \"cat /data/data.txt; test -S /var/run/docker.sock && echo sock\"\n")})
    r = cli("run", str(project))
    assert r.code == 0, r.err
    assert "from the host" in r.out and "sock" in r.out
    assert "gives the container the Docker engine's socket" in r.err
    assert f"{shared}:/data:ro gives" not in r.err  # an ordinary folder is no news


def test_trust_is_refused_by_a_backend_that_mounts_and_builds_nothing(cli, hostile_git) -> None:
    # Kubernetes takes it: its image is built here, with the host's index settings.
    r = cli("run", hostile_git.url, "--trust", "-b", "databricks")
    assert r.code == 2
    assert "--trust: not supported by backend databricks" in r.err
