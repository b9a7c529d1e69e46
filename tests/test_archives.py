"""Project archives (.zip / .tar.gz / .tgz from a path, file:// or http://), quoted URIs and .R
entry points: the safe unpacker against hostile archives, the content-keyed cache, and runs of a
zipped project through the real CLI and the real engine."""
from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import http.server
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO, Result, _engine_ok, dockrun_containers, free_port, image_id, unavailable, write_project
from dockrun.config import ArchiveLimits
from dockrun.errors import SourceError
from dockrun.project import archive
from dockrun.project.archive import is_archive_uri, resolve_archive, unpack
from dockrun.project.resolve import is_git_uri, resolve_source, unquote_uri
from dockrun.project.spec import load_project

# --- crafting archives ----------------------------------------------------------------------------


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def tinfo(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def tfile(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    return tinfo(name, mode=mode), data


def zip_bytes(*members: tuple[str, bytes, int]) -> bytes:
    """(name, data, unix mode incl. file type; 0 for a plain DOS entry)"""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode:
                info.create_system = 3
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


# Archives of a project are byte-for-byte the same in every session (no mtimes), so their images,
# keyed by those bytes, are reused by the engine's cache from one test session to the next.
def zip_folder(folder: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            name = prefix + path.relative_to(folder).as_posix() + ("/" if path.is_dir() else "")
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.create_system, info.external_attr = 3, (stat.S_IFDIR | 0o755 if path.is_dir() else 0o644) << 16
            zf.writestr(info, b"" if path.is_dir() else path.read_bytes(), zipfile.ZIP_DEFLATED)
    return dest


def tar_folder(folder: Path, dest: Path, arcname: str) -> Path:
    def fixed(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    with gzip.GzipFile(dest, "wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        tf.add(folder, arcname=arcname, filter=fixed)
    return dest


# --- hostile archives -----------------------------------------------------------------------------

HOSTILE_TARS = {
    "absolute": (tar_bytes(tfile("/tmp/dockrun-evil")), "/tmp/dockrun-evil"),
    "dotdot": (tar_bytes(tfile("../evil")), "../evil"),
    "dotdot-inside": (tar_bytes(tfile("a/../../evil")), "a/../../evil"),
    "symlink-absolute": (tar_bytes((tinfo("etc", tarfile.SYMTYPE, "/etc"), None)), "etc"),
    "symlink-up": (tar_bytes((tinfo("a/up", tarfile.SYMTYPE, "../../outside"), None)), "a/up"),
    # Each link alone stays inside; together they lead out (x is the root, x/.. its parent).
    "symlink-chain": (tar_bytes((tinfo("x", tarfile.SYMTYPE, "."), None),
                                (tinfo("y", tarfile.SYMTYPE, "x/../outside"), None)), "y"),
    # A link that stays inside, then a file written through it.
    "write-through-link": (tar_bytes((tinfo("d", tarfile.DIRTYPE, mode=0o755), None),
                                     (tinfo("l", tarfile.SYMTYPE, "d"), None), tfile("l/f")), "l/f"),
    "hardlink-absolute": (tar_bytes((tinfo("h", tarfile.LNKTYPE, "/etc/passwd"), None)), "h"),
    "hardlink-up": (tar_bytes((tinfo("h", tarfile.LNKTYPE, "../x"), None)), "h"),
    "hardlink-missing": (tar_bytes((tinfo("h", tarfile.LNKTYPE, "later"), None), tfile("later")), "h"),
    "chardev": (tar_bytes((tinfo("null", tarfile.CHRTYPE), None)), "null"),
    "blockdev": (tar_bytes((tinfo("sda", tarfile.BLKTYPE), None)), "sda"),
    "fifo": (tar_bytes((tinfo("pipe", tarfile.FIFOTYPE), None)), "pipe"),
    "too-big": (tar_bytes(tfile("big", b"0" * 5000)), "big"),
    "too-big-in-sum": (tar_bytes(*(tfile(f"f{i}", b"0" * 400) for i in range(5))), "f3"),
}

HOSTILE_ZIPS = {
    "absolute": (zip_bytes(("/tmp/dockrun-evil", b"x", 0)), "/tmp/dockrun-evil"),
    "dotdot": (zip_bytes(("../evil", b"x", 0)), "../evil"),
    "dotdot-backslash": (zip_bytes(("..\\evil", b"x", 0)), "../evil"),
    "symlink-up": (zip_bytes(("up", b"../outside", stat.S_IFLNK | 0o777)), "up"),
    "symlink-absolute": (zip_bytes(("etc", b"/etc", stat.S_IFLNK | 0o777)), "etc"),
    "chardev": (zip_bytes(("null", b"", stat.S_IFCHR | 0o666)), "null"),
    "too-big": (zip_bytes(("big", b"0" * 5000, stat.S_IFREG | 0o644)), "big"),
}

LIMIT = 1500


@pytest.mark.parametrize("kind,case", [("tar", c) for c in HOSTILE_TARS] + [("zip", c) for c in HOSTILE_ZIPS])
def test_hostile_member_refused_naming_it(tmp_path: Path, kind: str, case: str) -> None:
    data, member = (HOSTILE_TARS if kind == "tar" else HOSTILE_ZIPS)[case]
    # The target sits deep enough that '../' from it lands in a folder we watch.
    watched = tmp_path / "w"
    dest = watched / "a" / "b" / "dest"
    dest.parent.mkdir(parents=True)
    path = tmp_path / f"evil.{kind}"
    path.write_bytes(data)
    with pytest.raises(SourceError) as e:
        unpack(path, dest, kind, "evil-archive", ArchiveLimits(max_bytes=LIMIT))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("evil-archive: member ") and msg.endswith("refused")
    assert repr(member) in msg
    # Nothing written outside the target, whatever was refused.
    outside = {p for p in watched.rglob("*") if dest not in (p, *p.parents)}
    assert outside == {watched / "a", watched / "a" / "b"}
    assert not Path("/tmp/dockrun-evil").exists()


def test_safe_archive_unpacks_links_modes_and_duplicates(tmp_path: Path) -> None:
    data = tar_bytes(
        (tinfo("./", tarfile.DIRTYPE, mode=0o755), None),
        tfile("./run.sh", b"echo hi\n", mode=0o4755),  # setuid dropped, executable kept
        tfile("sub/data.txt", b"one"),
        (tinfo("sub/link", tarfile.SYMTYPE, "data.txt"), None),
        (tinfo("sub/up", tarfile.SYMTYPE, "../run.sh"), None),
        (tinfo("copy", tarfile.LNKTYPE, "sub/data.txt"), None),
        tfile("sub/data.txt", b"two"),  # a later member of the same name wins, as with tar
    )
    path = tmp_path / "ok.tar.gz"
    path.write_bytes(data)
    dest = tmp_path / "dest"
    unpack(path, dest, "tar", "ok")
    assert (dest / "run.sh").stat().st_mode & 0o7777 == 0o755
    assert (dest / "sub" / "data.txt").read_text() == "two"
    assert os.readlink(dest / "sub" / "link") == "data.txt" and (dest / "sub" / "link").read_text() == "two"
    assert (dest / "sub" / "up").read_text() == "echo hi\n"
    # The hard link is a copy of the file as it was then, sharing no inode.
    assert (dest / "copy").read_text() == "one" and not (dest / "copy").is_symlink()
    assert (dest / "copy").stat().st_nlink == 1


def test_zip_modes_backslashes_and_corrupt_archives(tmp_path: Path) -> None:
    data = zip_bytes(("tool.sh", b"echo\n", stat.S_IFREG | 0o755), ("win\\sub\\a.txt", b"a", 0),
                     ("dir/", b"", stat.S_IFDIR | 0o700))
    path = tmp_path / "ok.zip"
    path.write_bytes(data)
    unpack(path, tmp_path / "dest", "zip", "ok")
    assert (tmp_path / "dest" / "tool.sh").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "dest" / "win" / "sub" / "a.txt").read_text() == "a"
    assert (tmp_path / "dest" / "dir").is_dir()

    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(SourceError, match=r"^bad: not a valid zip archive \("):
        unpack(bad, tmp_path / "d2", "zip", "bad")
    truncated = tmp_path / "t.tar.gz"
    truncated.write_bytes(tar_bytes(tfile("a", os.urandom(100_000)))[:5000])
    with pytest.raises(SourceError, match=r"^t: not a valid tar archive \("):
        unpack(truncated, tmp_path / "d3", "tar", "t")


# --- the cache and the Source ---------------------------------------------------------------------

PROJECT = {
    "MLproject": """
        name: zipped
        entry_points:
          main:
            parameters: {x: int}
            command: "python -c 'import sys; print(\\"zipped says\\", sys.argv[1], open(\\"data.txt\\").read())' {x}"
    """,
    "data.txt": "payload-1",
    "sub/MLproject": """
        name: zipped-sub
        entry_points:
          main: "echo sub-entry; cat notes.txt"
    """,
    "sub/notes.txt": "sub-notes\n",
}


def archives_in(home: Path) -> list[str]:
    d = home / "archives"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_archive_source_keyed_by_content_unpacked_once(tmp_path: Path, home: Path) -> None:
    folder = write_project(tmp_path / "proj", PROJECT)
    one = zip_folder(folder, tmp_path / "proj.zip", prefix="proj-main/")  # GitHub's shape
    sha = hashlib.sha256(one.read_bytes()).hexdigest()

    src = resolve_archive(str(one))
    assert src.root == home / "archives" / sha / "proj" / "proj-main"  # the one folder is the root
    assert load_project(src.root).name == "zipped"
    assert src.uri == str(one) and src.commit is None
    assert src.key == hashlib.sha256(f"archive:{sha}:".encode()).hexdigest()
    inode = src.root.stat().st_ino

    # The same bytes under another name (and through file://): the same tree, key and root.
    other = shutil.copy(one, tmp_path / "renamed.zip")
    again = resolve_source(f"file://{other}")
    assert (again.key, again.root, again.root.stat().st_ino) == (src.key, src.root, inode)
    assert archives_in(home) == [sha]

    sub = resolve_source(f"{one}#sub")
    assert sub.root == src.root / "sub" and sub.subdirectory == "sub" and sub.uri == f"{one}#sub"
    assert sub.key != src.key and load_project(sub.root).name == "zipped-sub"


def test_archive_without_one_top_folder_and_conventions_name(tmp_path: Path, home: Path) -> None:
    folder = write_project(tmp_path / "flat", {"train.py": "print(1)\n", "conf/a.yaml": "a: 1\n"})
    path = zip_folder(folder, tmp_path / "My Project.tgz.zip")
    src = resolve_archive(str(path))
    assert sorted(p.name for p in src.root.iterdir()) == ["conf", "train.py"]
    assert load_project(src.root).name == "My-Project.tgz"  # the archive's name, made safe


@pytest.mark.parametrize("uri,message", [
    ("{a}", "--version applies to Git URIs only"),
    ("{a}#nope", "subdirectory 'nope' does not exist in the archive"),
    ("{a}#../x", "must be a relative path without '..'"),
    ("{d}/missing.zip", "missing.zip: no such archive file"),
    ("file://otherhost/x.zip", "a file:// URI must name a local file"),
])
def test_bad_archive_uris_are_one_line(tmp_path: Path, home: Path, uri: str, message: str) -> None:
    folder = write_project(tmp_path / "p", PROJECT)
    a = tar_folder(folder, tmp_path / "p.tar.gz", "p")
    version = "main" if uri == "{a}" else None
    with pytest.raises(SourceError) as e:
        resolve_source(uri.format(a=a, d=tmp_path), version)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not [n for n in archives_in(home) if n.startswith(".")]  # no temp folder or download left


def test_refused_or_interrupted_unpacking_leaves_nothing(tmp_path: Path, home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    evil = tmp_path / "evil.tar.gz"
    evil.write_bytes(tar_bytes(tfile("ok.txt"), tfile("../evil")))
    with pytest.raises(SourceError, match="member '../evil'"):
        resolve_source(str(evil))
    assert archives_in(home) == []

    # Ctrl-C on the second member: the half-written tree goes, and the next run unpacks afresh.
    good = tar_folder(write_project(tmp_path / "g", PROJECT), tmp_path / "g.tgz", "g")
    real_place, calls = archive._place, []

    def interrupt_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_place(*args)

    monkeypatch.setattr(archive, "_place", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        resolve_source(str(good))
    assert archives_in(home) == []
    monkeypatch.setattr(archive, "_place", real_place)
    assert load_project(resolve_source(str(good)).root).name == "zipped"


def test_uri_kinds_and_quotes(tmp_path: Path) -> None:
    assert is_archive_uri("https://host/org/proj.zip") and not is_git_uri("https://host/org/proj.zip")
    assert is_archive_uri("http://host/p.tar.gz?sig=abc#sub") and is_archive_uri("file:///a/p.TGZ")
    assert is_git_uri("https://github.com/org/repo") and not is_archive_uri("https://github.com/org/repo")
    assert not is_archive_uri("git+https://host/repo.zip") and is_git_uri("git+https://host/repo.zip")
    (tmp_path / "dir.zip").mkdir()
    assert not is_archive_uri(str(tmp_path / "dir.zip"))  # a folder may be named like an archive
    assert unquote_uri("'./proj#sub'") == "./proj#sub"
    assert unquote_uri('"https://h/p.zip"') == "https://h/p.zip"
    assert unquote_uri("'\"x\"'") == '"x"'  # once
    assert unquote_uri("it's") == "it's" and unquote_uri("'") == "'"


def test_quoted_folder_uri_resolves(tmp_path: Path) -> None:
    folder = write_project(tmp_path / "proj", PROJECT)
    src = resolve_source(f"'{folder}#sub'")
    assert src.root == folder / "sub" and src.subdirectory == "sub"


def test_r_entry_point_runs_rscript(tmp_path: Path) -> None:
    folder = write_project(tmp_path / "rproj", {"train.R": "print(1)\n", "models/fit it.R": "1\n"})
    spec = load_project(folder)
    assert spec.entry_point("train.R").command == "Rscript train.R"
    assert spec.entry_point("models/fit it.R").command == "Rscript 'models/fit it.R'"


# --- over HTTP ------------------------------------------------------------------------------------

@dataclass
class FileServer:
    root: Path
    port: int
    auth_headers: list[str | None] = field(default_factory=list)

    def url(self, name: str, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}/{name}"


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[FileServer]:
    """http.server on 127.0.0.1 serving a folder; records each request's Authorization header."""
    root = tmp_path / "served"
    root.mkdir()
    server_state = FileServer(root, 0)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            server_state.auth_headers.append(self.headers.get("Authorization"))
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    server_state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server_state
    httpd.shutdown()
    httpd.server_close()


def test_http_archive_credentials_and_errors(tmp_path: Path, home: Path, file_server: FileServer) -> None:
    folder = write_project(tmp_path / "proj", PROJECT)
    zip_folder(folder, file_server.root / "proj.zip")

    src = resolve_source(file_server.url("proj.zip?token=s3cr3t-q", "alice:s3cr3t-pw@") + "#sub")
    assert load_project(src.root).name == "zipped-sub"
    expected = "Basic " + base64.b64encode(b"alice:s3cr3t-pw").decode()
    assert file_server.auth_headers == [expected]
    assert "s3cr3t" not in src.uri and src.uri == f"http://***@127.0.0.1:{file_server.port}/proj.zip?***#sub"
    assert not [n for n in archives_in(home) if n.startswith(".")]  # the download is gone

    with pytest.raises(SourceError) as e:
        resolve_source(file_server.url("missing.zip", "bob:s3cr3t-pw@"))
    shown = f"http://***@127.0.0.1:{file_server.port}/missing.zip"
    assert str(e.value) == f"{shown}: download failed: HTTP 404 File not found"

    closed = free_port()
    with pytest.raises(SourceError, match=rf"^http://127.0.0.1:{closed}/p.tgz: download failed: cannot reach the host"):
        resolve_source(f"http://127.0.0.1:{closed}/p.tgz")
    assert not [n for n in archives_in(home) if n.startswith(".")]


# --- end to end -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def engine_image() -> str:
    """The base image, with the engine up; in CI a missing one fails the test instead of skipping it."""
    image = os.environ.get("DOCKRUN_BASE_IMAGE") or "dockrun-base:bookworm"
    why = _engine_ok()
    if not why and subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        why = f"base image {image} missing: build it with docker/build-base-image.sh"
    if why:
        unavailable(why)
    return image


@pytest.fixture
def dockrun(home: Path, engine_image: str):
    def run(*args: str) -> Result:
        env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": engine_image}
        p = subprocess.run([sys.executable, "-m", "dockrun.cli", *args], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
        return Result(p.returncode, p.stdout, p.stderr)

    return run


def project_image(uri: str, base_image: str) -> str:
    from dockrun.prepare import prepare_image
    from dockrun.request import RunRequest

    return prepare_image(RunRequest(uri=uri, base_image=base_image)).plan.project_image


def test_zipped_project_runs_from_path_and_http_reusing_tree_and_image(
        tmp_path: Path, home: Path, dockrun, engine_image: str, file_server: FileServer) -> None:
    before = set(dockrun_containers())
    zipped = zip_folder(write_project(tmp_path / "proj", PROJECT), tmp_path / "proj.zip", prefix="proj/")
    sha = hashlib.sha256(zipped.read_bytes()).hexdigest()

    first = dockrun("run", str(zipped), "-P", "x=7")
    assert first.code == 0, first.err
    assert "zipped says 7 payload-1" in first.out
    assert archives_in(home) == [sha]
    tree = home / "archives" / sha
    inode = tree.stat().st_ino
    image = project_image(str(zipped), engine_image)
    built = image_id(image)
    assert built

    # The same bytes over HTTP, quoted as some CI systems pass it: nothing unpacked, nothing built.
    shutil.copy(zipped, file_server.root / "proj.zip")
    second = dockrun("run", f"'{file_server.url('proj.zip')}'", "-P", "x=8")
    assert second.code == 0, second.err
    assert "zipped says 8 payload-1" in second.out
    assert "building" not in second.err and "Step " not in second.err
    assert archives_in(home) == [sha] and tree.stat().st_ino == inode
    assert image_id(image) == built

    # A subdirectory of a .tar.gz over HTTP is a project of its own.
    tar_folder(tmp_path / "proj", file_server.root / "proj.tar.gz", "proj")
    third = dockrun("run", file_server.url("proj.tar.gz") + "#sub")
    assert third.code == 0, third.err
    assert third.out.splitlines() == ["sub-entry", "sub-notes"]

    bad = dockrun("run", file_server.url("nope.zip"))
    assert bad.code == 2 and bad.err.strip().count("\n") == 0
    assert f"127.0.0.1:{file_server.port}/nope.zip: download failed: HTTP 404" in bad.err
    assert set(dockrun_containers()) - before == set()
