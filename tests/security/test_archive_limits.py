"""Archive bombs through the real CLI: a zip whose one "symlink" member holds 400 MB, a .tar.gz
whose GNU long name or pax header announces 400 MB, tens of thousands of empty files, and a
well-compressed member past the expansion ratio. Each is refused in one line naming the limit
(exit 2), with nothing left under DOCKRUN_HOME and the machine's memory untouched: the run's peak
memory is measured (and capped, so that a regression fails here instead of exhausting the host)."""
from __future__ import annotations

import functools
import gzip
import http.server
import io
import os
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO

MB = 1 << 20
MAX_RSS = 300 * MB  # what a refused archive may cost in memory, however big it claims to be
# A safety net only: a regression then fails with MemoryError here instead of taking the host down.
DATA_LIMIT = 1536 * MB
SHIM = (f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_DATA, ({DATA_LIMIT}, {DATA_LIMIT})); "
        "os.execv(sys.executable, [sys.executable, '-m', 'dockrun', *sys.argv[1:]])")
MLPROJECT = b"name: bomb\nentry_points:\n  main:\n    command: echo hi\n"


@dataclass
class Measured:
    code: int
    out: str
    err: str
    max_rss: int  # bytes


def dockrun(home: Path, *args: str, env: dict[str, str] | None = None) -> Measured:
    """`dockrun ARGS` in-process (no warm helper, so the memory measured is the command's own)."""
    full_env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_WARMSTART": "0",
                "DOCKRUN_BASE_IMAGE": os.environ.get("DOCKRUN_BASE_IMAGE", "dockrun-base:bookworm"), **(env or {})}
    out, err = home.parent / "stdout.txt", home.parent / "stderr.txt"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([sys.executable, "-c", SHIM, *args], cwd=REPO, env=full_env, stdout=o, stderr=e)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return Measured(proc.returncode, out.read_text(errors="replace"), err.read_text(errors="replace"),
                    usage.ru_maxrss * 1024)


def assert_refused(r: Measured, home: Path, *names: str) -> None:
    assert r.code == 2, r.err[-2000:]
    assert r.err.count("\n") == 1 and r.err.startswith("dockrun: error: ") and len(r.err) < 500, r.err[:2000]
    assert r.err.rstrip().endswith("refused") and all(n in r.err for n in names), r.err
    assert r.max_rss < MAX_RSS, f"peak memory {r.max_rss // MB} MB"
    # No partial tree, no download, no cache entry: only the lock files every source takes.
    left = [p for p in home.rglob("*") if p.is_file() and p.parent.name != "locks"]
    assert left == [] and list((home / "archives").iterdir()) == []


# --- the archives ---------------------------------------------------------------------------------

def zip_with_link(path: Path, target_mb: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("proj/MLproject", MLPROJECT)
        info = zipfile.ZipInfo("proj/link")
        info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            for _ in range(target_mb):
                f.write(b"a" * MB)
    return path


def zip_with_file(path: Path, size_mb: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("proj/MLproject", MLPROJECT)
        with zf.open("proj/zeros.bin", "w", force_zip64=True) as f:
            for _ in range(size_mb):
                f.write(bytes(MB))
    return path


def header(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def tar_with_header(path: Path, kind: bytes, size_mb: int) -> Path:
    """One extended header announcing ``size_mb`` MB (and holding them), then a member. Gzip members
    may be concatenated: the 1 MB of payload is compressed once."""
    payload = gzip.compress(b"a" * MB, mtime=0)
    with open(path, "wb") as f:
        f.write(gzip.compress(header("././@LongLink", kind, size_mb * MB), mtime=0))
        for _ in range(size_mb):
            f.write(payload)
        f.write(gzip.compress(header("proj/MLproject") + bytes(1024), mtime=0))
    return path


def tar_of_empty_files(path: Path, count: int) -> Path:
    with gzip.GzipFile(path, "wb", mtime=0) as gz:
        gz.write(header("proj/MLproject", size=len(MLPROJECT)) + MLPROJECT.ljust(512, b"\0"))
        for i in range(count):
            gz.write(header(f"proj/f{i}"))
        gz.write(bytes(1024))
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over http on 127.0.0.1: (the folder, its URL)."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


# --- the cases ------------------------------------------------------------------------------------

def test_a_zip_link_of_400_mb_is_refused_before_it_is_read(tmp_path: Path, home: Path) -> None:
    bomb = zip_with_link(tmp_path / "link.zip", 400)
    assert bomb.stat().st_size < 4 * MB
    r = dockrun(home, "run", str(bomb))
    assert_refused(r, home, "member 'proj/link'", "over the limit of 4096")


@pytest.mark.parametrize("kind,what", [(tarfile.GNUTYPE_LONGNAME, "a GNU long name header"),
                                       (tarfile.XHDTYPE, "a pax header"),
                                       (tarfile.XGLTYPE, "pax global headers")])
def test_a_tar_header_of_400_mb_over_http_is_refused_before_it_is_read(
        tmp_path: Path, home: Path, served: tuple[Path, str], kind: bytes, what: str) -> None:
    root, url = served
    bomb = tar_with_header(root / "long.tar.gz", kind, 400)
    assert bomb.stat().st_size < 2 * MB
    r = dockrun(home, "run", f"{url}/long.tar.gz")
    assert_refused(r, home, f"{url}/long.tar.gz: {what} of {400 * MB} bytes, over the limit of")


def test_fifty_thousand_empty_files_are_refused_naming_the_setting(tmp_path: Path, home: Path) -> None:
    bomb = tar_of_empty_files(tmp_path / "empty.tar.gz", 50_001)
    r = dockrun(home, "build", str(bomb))
    assert_refused(r, home, "more than 50000 members", "DOCKRUN_ARCHIVE_MAX_MEMBERS raises it")


def test_the_member_limit_is_a_setting(tmp_path: Path, home: Path) -> None:
    small = tar_of_empty_files(tmp_path / "small.tar.gz", 4)  # and MLproject: 5 members
    r = dockrun(home, "build", str(small), env={"DOCKRUN_ARCHIVE_MAX_MEMBERS": "4"})
    assert_refused(r, home, "more than 4 members")
    r = dockrun(home, "build", str(small), env={"DOCKRUN_ARCHIVE_MAX_MEMBERS": "four"})
    assert r.code == 2
    assert r.err == "dockrun: error: DOCKRUN_ARCHIVE_MAX_MEMBERS: 'four': expected a positive whole number\n"


def test_a_member_past_the_expansion_ratio_is_refused(tmp_path: Path, home: Path) -> None:
    bomb = zip_with_file(tmp_path / "zeros.zip", 300)  # about 300 KB: a thousand times that
    assert bomb.stat().st_size < MB
    r = dockrun(home, "run", str(bomb))
    # Up to 100 MiB is allowed whatever the ratio: a small archive may hold one well-compressed file.
    assert_refused(r, home, "member 'proj/zeros.bin' takes the archive over 104857600 bytes unpacked, "
                            "more than 200 times its own size (the limit; DOCKRUN_ARCHIVE_MAX_RATIO raises it)")


def test_zip_directory_declaring_too_many_members_is_refused_before_zipfile_reads_it(
        tmp_path: Path, home: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("proj/MLproject", MLPROJECT)
    data = bytearray(buf.getvalue())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8:end + 12] = (60_000).to_bytes(2, "little") * 2  # members on this disk, in all
    (tmp_path / "many.zip").write_bytes(bytes(data))
    r = dockrun(home, "build", str(tmp_path / "many.zip"))
    assert_refused(r, home, "it has 60000 members, more than 50000")


def pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return f"{n}{body}".encode()


def test_a_sparse_map_of_400_mb_is_refused_before_it_is_read(tmp_path: Path, home: Path) -> None:
    # GNU sparse format 1.0: the map is read from the data that follows the headers, number by number.
    records = pax_record("GNU.sparse.major", "1") + pax_record("GNU.sparse.minor", "0")
    lines = gzip.compress(b"1\n" * (MB // 2), mtime=0)
    with open(tmp_path / "sparse.tar.gz", "wb") as f:
        f.write(gzip.compress(header("././@PaxHeader", tarfile.XHDTYPE, len(records)) + records.ljust(512, b"\0")
                              + header("proj/data", size=400 * MB) + b"999999999\n", mtime=0))
        for _ in range(400):
            f.write(lines)
    r = dockrun(home, "run", str(tmp_path / "sparse.tar.gz"))
    assert_refused(r, home, "a member's tar headers take more than")
