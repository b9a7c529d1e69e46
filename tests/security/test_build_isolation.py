"""A project from elsewhere cannot reach another project's environment through the build's shared
state (images/cached_build.py), met as an attacker would: through the real CLI, a Git repository
whose requirements name a source distribution served over HTTP on the Docker bridge, as a package
index would serve one.

Building a source distribution runs its build backend, which is the package author's code, as root
in the build container. With the package cache volume mounted and earlier environments as
parents, that code could rewrite a cached package that the next project's build copies, or leave
a file in the environment that the next project's build starts from (removing a distribution
removes only the files it recorded). A `.pth` file or a cached module runs in every later run of
the victim, which is a folder on this machine and so gets the host access it asks for. The
attacker here is a file:// Git URI, as any Git URI or archive is.
"""
from __future__ import annotations

import inspect
import io
import re
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import wait_until, write_project
from docker_bridge import serve_on_bridge
from git_fixtures import new_remote
from wheels import pure_wheel

MARK_PTH = "PLANTED-BY-ANOTHER-PROJECT"
MARK_CACHE = "PLANTED-IN-THE-CACHE"

# The source distribution's in-tree build backend: it plants, then builds an honest wheel.
_BACKEND = "import base64, glob, hashlib, os, zipfile\n\n" + inspect.getsource(pure_wheel) + f'''

def _plant():
    for site in glob.glob("/opt/dockrun/venv/lib/python3*/site-packages"):
        with open(os.path.join(site, "zz_planted.pth"), "w") as f:
            f.write("import sys; sys.stderr.write('{MARK_PTH}\\\\n')\\n")
    for root in {{os.environ.get("UV_CACHE_DIR", ""), "/tmp/dockrun/cache/uv"}}:
        for init in glob.glob(os.path.join(root, "archive-v*", "*", "victimpkg", "__init__.py")) if root else ():
            with open(init, "a") as f:
                f.write("print('{MARK_CACHE}')\\n")


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _plant()
    return pure_wheel(wheel_directory, "sneaky", "1.0", {{"sneaky/__init__.py": ""}})
'''


def _sdist(folder: Path) -> str:
    files = {
        "PKG-INFO": "Metadata-Version: 2.1\nName: sneaky\nVersion: 1.0\n",
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": _BACKEND,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"sneaky-1.0/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    (folder / "sneaky-1.0.tar.gz").write_bytes(buf.getvalue())
    return "sneaky-1.0.tar.gz"


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Requirement lines for the two honest wheels and the planting source distribution, served
    where a build container reaches them. A fresh server (port) per module: no other test's
    build has these URLs in its cache."""
    folder = tmp_path_factory.mktemp("index")
    names = {"victimpkg": pure_wheel(str(folder), "victimpkg", "1.0", {"victimpkg/__init__.py": "VALUE = 1\n"}),
             "victimdep": pure_wheel(str(folder), "victimdep", "1.0", {"victimdep/__init__.py": ""}),
             "sneaky": _sdist(folder)}
    with serve_on_bridge(folder, names["victimdep"]) as url:
        yield {name: f"{name} @ {url}{file}" for name, file in names.items()}


def _volumes() -> set[str]:
    """The engine's anonymous volumes no container holds (named ones such as dockrun-tools may be
    made by any build)."""
    names = subprocess.run(["docker", "volume", "ls", "-q", "--filter", "dangling=true"], capture_output=True,
                           text=True, check=True).stdout
    return {name for name in names.split() if re.fullmatch(r"[0-9a-f]{64}", name)}


def _attacker(tmp_path: Path, requirements: list[str]):
    files = {"MLproject": "name: attacker\nentry_points:\n  main:\n    command: python -c \"print('attacker ran')\"\n",
             "requirements.txt": "\n".join(requirements) + "\n"}
    return new_remote(tmp_path / "remotes", "attacker", files)


def _victim(tmp_path: Path, packages: dict[str, str]) -> Path:
    return write_project(tmp_path / "victim", {
        "MLproject": "name: victim\nentry_points:\n  main:\n    command: python -c \"import victimpkg, victimdep; "
                     "print('victim ran', victimpkg.VALUE)\"\n",
        "requirements.txt": f"{packages['victimpkg']}\n{packages['victimdep']}\n",
        "marker.txt": uuid.uuid4().hex})


@pytest.mark.usefixtures("no_leaks")
def test_a_file_a_git_projects_build_leaves_in_its_environment_never_reaches_a_later_project(
        cli, tmp_path: Path, packages: dict[str, str]) -> None:
    attacker = _attacker(tmp_path, [packages["victimpkg"], packages["sneaky"]])
    volumes = _volumes()
    built = cli("build", attacker.url, timeout=900)
    assert built.code == 0, built.err[-3000:]
    assert "a package cache of its own" in built.err  # the line that says which path the build took
    # Its own cache went with its build container. Another container's removal elsewhere on the
    # engine may show a volume as dangling for a moment: a leaked one stays.
    assert wait_until(lambda: _volumes() <= volumes), _volumes() - volumes

    victim = cli("run", str(_victim(tmp_path, packages)), timeout=900)
    assert victim.code == 0, victim.err[-3000:]
    assert "victim ran 1" in victim.out
    assert MARK_PTH not in victim.out + victim.err


@pytest.mark.usefixtures("no_leaks")
def test_a_git_projects_build_cannot_rewrite_the_package_cache_other_builds_read(
        cli, tmp_path: Path, packages: dict[str, str]) -> None:
    attacker = _attacker(tmp_path, [packages["victimpkg"]])
    first = cli("build", attacker.url, timeout=900)  # victimpkg is now unpacked in uv's cache
    assert first.code == 0, first.err[-3000:]
    attacker.push_commit("planting", {"requirements.txt": f"{packages['victimpkg']}\n{packages['sneaky']}\n"})
    second = cli("build", attacker.url, timeout=900)
    assert second.code == 0, second.err[-3000:]

    # Another DOCKRUN_HOME on the same engine: no environment of the attacker's to start from, only
    # the engine's package cache.
    victim = cli("run", str(_victim(tmp_path, packages)), env={"DOCKRUN_HOME": str(tmp_path / "other-home")},
                 timeout=900)
    assert victim.code == 0, victim.err[-3000:]
    assert "victim ran 1" in victim.out
    assert MARK_CACHE not in victim.out + victim.err
