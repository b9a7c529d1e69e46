"""Faults from the outside world: a Git server that errors or drops the connection mid-fetch, a disk
that fills while downloading, unpacking or writing a build context. Each ends in one line naming
what failed, a cache left intact, and a next attempt that works."""
from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import unavailable, write_project
from git_fixtures import GitHttpServer, git_http_server, serve_remote, temp_leftovers  # noqa: F401

PROJECT = {"MLproject": "name: faulty\nentry_points:\n  main:\n    command: \"echo fetched\"\n"}


def test_git_server_errors_and_dropped_transfers(cli, git_http_server: GitHttpServer, home: Path,  # noqa: F811
                                                 tmp_path: Path) -> None:
    serve_remote(git_http_server, tmp_path / "remotes", "flaky", dict(PROJECT))
    env = {"DOCKRUN_GIT_USERNAME": git_http_server.username, "DOCKRUN_GIT_PASSWORD": git_http_server.password,
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    uri = git_http_server.url("flaky.git")
    for fault, reason in (("500", "the server answered with an error (5xx)"),
                          ("drop", "the connection dropped during the transfer")):
        git_http_server.fail_next(fault)
        r = cli("run", uri, "-v", "main", env=env)
        assert r.code == 2 and reason in r.err, (fault, r.err)
        assert len(r.err.strip().splitlines()) == 1 and r.err.startswith(f"dockrun: error: {uri}"), r.err
        assert git_http_server.password not in r.err
        assert temp_leftovers(home) == [], fault  # no half-written mirror or tree
        assert not (home / "git" / "trees").exists() or not any((home / "git" / "trees").iterdir())
    ok = cli("run", uri, "-v", "main", env=env)
    assert ok.code == 0 and "fetched" in ok.out, ok.err


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 256 KB filesystem to hold DOCKRUN_HOME (root only: mount)."""
    target = tmp_path / "small"
    target.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        unavailable("mounting a small tmpfs needs root and mount(8)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(target)], check=True)
    yield target
    subprocess.run(["umount", str(target)], check=True)


def test_a_full_disk_while_downloading_is_one_line_and_releases_the_space(cli, small_disk: Path,
                                                                          tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "big.bin").write_bytes(os.urandom(2_000_000))
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        project = write_project(tmp_path / "p", {
            "MLproject": "name: p\nentry_points:\n  main:\n    parameters: {d: path}\n    command: \"wc -c {d}\"\n"})
        url = f"http://127.0.0.1:{server.server_address[1]}/big.bin"
        r = cli("run", str(project), "-P", f"d={url}", env={"DOCKRUN_HOME": str(small_disk)})
    finally:
        server.shutdown()
    assert r.code != 0 and "Traceback" not in r.err
    assert r.err.strip().splitlines()[-1].startswith(f"dockrun: error: parameter 'd': {url}: ")
    assert "No space left on device" in r.err
    used = sum(f.stat().st_size for f in small_disk.rglob("*") if f.is_file())
    assert used < 4096  # the partial download is gone (a lock file may stay)
    assert not (small_disk / "runs").exists()  # nothing recorded: the run never started


def _used(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_a_full_disk_while_writing_a_build_context_is_one_line_and_releases_the_space(
        cli, small_disk: Path, tmp_path: Path) -> None:
    import re
    import uuid

    from conftest import image_id

    project = write_project(tmp_path / "bigctx", {
        "MLproject": "name: bigctx\nentry_points:\n  main:\n    command: \"wc -c data.bin\"\n",
        "marker.txt": uuid.uuid4().hex})
    (project / "data.bin").write_bytes(os.urandom(2_000_000))
    home, tmp = small_disk / "home", small_disk / "tmp"
    tmp.mkdir()
    r = cli("run", str(project), env={"DOCKRUN_HOME": str(home), "TMPDIR": str(tmp)})
    assert r.code == 1 and "Traceback" not in r.err, r.err
    (line,) = r.err.strip().splitlines()
    m = re.fullmatch(rf"dockrun: error: writing the build context of (dockrun-bigctx:\S+) in {tmp}: "
                     r"No space left on device \(TMPDIR chooses the folder\)", line)
    assert m, line
    assert _used(small_disk) < 4096  # the context's temp file is gone (a lock or a tree hash may stay)
    assert not (home / "runs").exists()  # nothing recorded: the run never started
    assert image_id(m.group(1)) is None  # nothing built under the key
    ok = cli("run", str(project), env={"DOCKRUN_HOME": str(home)})  # with room for the context
    try:
        assert ok.code == 0 and "2000000 data.bin" in ok.out, ok.err
    finally:
        subprocess.run(["docker", "rmi", m.group(1)], capture_output=True)


def test_a_full_disk_while_unpacking_or_downloading_an_archive_is_one_line(
        cli, small_disk: Path, tmp_path: Path) -> None:
    import tarfile

    folder = write_project(tmp_path / "packed", {"MLproject": PROJECT["MLproject"]})
    (folder / "big.bin").write_bytes(os.urandom(2_000_000))
    served = tmp_path / "served"
    served.mkdir()
    archive = served / "packed.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="packed")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/packed.tar.gz"
    store = small_disk / "archives"
    try:
        for uri, expected in (
                (str(archive), f"{archive}: cannot unpack member 'packed/big.bin' into {store}: "),
                (url, f"{url}: cannot save the download in {store}: ")):
            r = cli("run", uri, env={"DOCKRUN_HOME": str(small_disk)})
            assert r.code == 2 and "Traceback" not in r.err, r.err
            assert r.err == f"dockrun: error: {expected}No space left on device\n", r.err
            assert _used(small_disk) < 4096, uri  # no half-unpacked tree, no partial download
            assert [p.name for p in store.iterdir()] == [], uri  # no cache entry, no temp folder
            assert not (small_disk / "runs").exists()
    finally:
        server.shutdown()


def test_registry_down_during_a_push_then_back(cli, tmp_path: Path, base_image: str) -> None:
    import uuid

    from conftest import free_port, start_registry

    port = free_port()
    root = tmp_path / "registry"
    root.mkdir()
    project = write_project(tmp_path / "pushme", {**PROJECT, "token.txt": uuid.uuid4().hex})
    env = {"DOCKRUN_REGISTRY": f"127.0.0.1:{port}/team"}
    down = cli("build", str(project), "--push", env=env)  # nothing listens on the port
    assert down.code == 1 and "Traceback" not in down.err
    assert down.err.strip().splitlines()[-1].startswith("dockrun: error: pushing 127.0.0.1:")
    proc = start_registry(root, port)
    try:
        catalog = __import__("urllib.request").request.urlopen(f"http://127.0.0.1:{port}/v2/_catalog").read()
        assert b"team/" not in catalog  # nothing half-pushed under a tag
        up = cli("build", str(project), "--push", env=env)
        assert up.code == 0 and up.out.strip().startswith(f"127.0.0.1:{port}/team/dockrun-faulty:"), up.err
    finally:
        proc.terminate()
        proc.wait(timeout=10)
