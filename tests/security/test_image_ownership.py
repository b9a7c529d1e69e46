"""`dockrun images` owns what dockrun made, and says what images say terminal-safe.

An image a user builds FROM one of dockrun's inherits its labels, so labels cannot say what is
dockrun's: dockrun records what it builds. What an image carries (labels, its installed.json) is
someone else's data: shown escaped, and read within a limit. Real engine, real CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from conftest import REPO, image_id, write_project

RAW = ("\x1b", "\x9b", "\x90", "\x07", "\u202e")  # ESC (CSI, OSC, DCS...), 8-bit CSI and DCS, BEL, a bidi override


def docker_build(context: Path, tag: str, files: dict[str, str | bytes]) -> None:
    """`docker build` as a user runs it (the classic builder: this CLI has no buildx)."""
    context.mkdir(parents=True)
    for name, data in files.items():
        (context / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    r = subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], capture_output=True, text=True,
                       env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=600)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def made():
    """Images this test makes, removed at its end."""
    refs: list[str] = []
    yield refs
    if refs:
        subprocess.run(["docker", "rmi", "-f", *refs], capture_output=True)


def test_prune_never_removes_an_image_built_from_a_dockrun_image(cli, tmp_path: Path, made: list[str]) -> None:
    name = f"owned-{uuid.uuid4().hex[:8]}"
    project = write_project(tmp_path / name, {"MLproject": f"name: {name}\nentry_points: {{main: 'true'}}\n"})
    built = cli("build", str(project))
    assert built.code == 0, built.err
    ours = built.out.strip()
    made.append(ours)
    # The user's own image on top of it: it carries dockrun.project and dockrun.env-hash too.
    users = f"users-own-{uuid.uuid4().hex[:8]}:1"
    docker_build(tmp_path / "users", users, {"Dockerfile": f"FROM {ours}\nLABEL mine=yes\n"})
    made.append(users)
    labels = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", users],
                            capture_output=True, text=True, check=True).stdout
    assert f'"dockrun.project":"{name}"' in labels  # a label is inherited: no proof of anything

    listing = cli("images", "list")
    assert listing.code == 0 and ours in listing.out and users not in listing.out

    for flags in (["--project", name], []):  # this project's images, then everything dockrun owns here
        pruned = cli("images", "prune", "--older-than", "0", *flags)
        assert pruned.code == 0, pruned.err
        assert image_id(users), f"dockrun images prune {' '.join(flags)} removed the user's image: {pruned.out}"
        assert users not in pruned.out
    assert f"removed {ours}" in pruned.out or image_id(ours) is None
    assert image_id(ours) is None  # dockrun's name for its own image is gone
    assert cli("images", "list").out.count("\n") == 1  # the header only: nothing of dockrun's is left here


HOSTILE_NAME = "evil\x1b[2J\x1b]8;;http://x.invalid/\x07click\x1b]8;;\x07\x9b31m\x90dcs\x9c\u202eman"


def _docker_env_project(root: Path, image: str, name: str) -> Path:
    """A project whose image is ``image`` (docker_env): dockrun builds the project image FROM it."""
    return write_project(root, {
        "MLproject": f"name: {json.dumps(name)}\ndocker_env: {{image: {image}}}\nentry_points: {{main: 'true'}}\n",
        "marker.txt": str(uuid.uuid4()),
    })


def test_images_list_shows_labels_and_packages_escaped(cli, base_image: str, tmp_path: Path,
                                                        made: list[str]) -> None:
    """A project name (dockrun's label) and an image's installed.json (its package names) with
    terminal sequences: `images list --packages` prints them escaped, never raw."""
    record = {"installer": "uv", "python": "3.11\x1b]0;pwned\x07",
              "packages": [{"name": "pkg\x1b[2J\x9b1;1H\u202e", "version": "1.0\x1bP+q\x1b\\"}]}
    env_image = f"hostile-env-{uuid.uuid4().hex[:8]}:1"
    docker_build(tmp_path / "env", env_image, {
        "Dockerfile": f"FROM {base_image}\nCOPY installed.json /opt/dockrun/installed.json\n",
        "installed.json": json.dumps(record),
    })
    made.append(env_image)
    project = _docker_env_project(tmp_path / "hostile", env_image, HOSTILE_NAME)
    built = cli("build", str(project))
    assert built.code == 0, built.err
    made.append(built.out.strip())

    listing = cli("images", "list", "--packages")
    assert listing.code == 0, listing.err
    for raw in RAW:
        assert raw not in listing.out and raw not in listing.err, repr(listing.out)
    assert "evil\\x1b[2J\\x1b]8;;http://x.invalid/\\x07click" in listing.out  # shown, as text
    assert "pkg\\x1b[2J\\x9b1;1H\\u202e==1.0\\x1bP+q\\x1b\\" in listing.out
    assert "python 3.11\\x1b]0;pwned\\x07" in listing.out


# A file whose size the engine states before sending it; a folder in its place, whose archive
# holds a large file that only the archive's own header tells about.
@pytest.mark.parametrize("where", ["/opt/dockrun/installed.json", "/opt/dockrun/installed.json/x"],
                         ids=["file", "folder"])
def test_a_huge_installed_json_is_refused_without_reading_it_into_memory(cli, base_image: str, home: Path,
                                                                        tmp_path: Path, made: list[str],
                                                                        where: str) -> None:
    size = 200 << 20
    env_image = f"huge-env-{uuid.uuid4().hex[:8]}:1"
    docker_build(tmp_path / "env", env_image, {
        "Dockerfile": f"FROM {base_image}\nRUN mkdir -p {os.path.dirname(where)} && head -c {size} /dev/zero > "
                      f"{where}\n"})
    made.append(env_image)
    project = _docker_env_project(tmp_path / "huge", env_image, f"huge-{uuid.uuid4().hex[:8]}")
    built = cli("build", str(project))
    assert built.code == 0, built.err
    made.append(built.out.strip())

    # The CLI in a child of a small measuring process: its peak resident memory, in KB.
    measure = textwrap.dedent("""
        import resource, subprocess, sys
        r = subprocess.run([sys.executable, "-m", "dockrun", "images", "list", "--packages"],
                           capture_output=True, text=True)
        sys.stderr.write(r.stderr)
        print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        print(r.stdout)
    """)
    env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}
    r = subprocess.run([sys.executable, "-c", measure], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    code, peak_kb = map(int, r.stdout.splitlines()[0].split())
    assert code == 0, r.stderr
    assert peak_kb < 150 << 10, f"the CLI peaked at {peak_kb >> 10} MB reading a {size >> 20} MB file"
    assert "not readable: /opt/dockrun/installed.json in " in r.stdout and "larger than 16 MB" in r.stdout


def test_a_run_store_from_before_gets_the_image_record(cli, home: Path, tmp_path: Path, made: list[str]) -> None:
    """A store an older dockrun made (its runs table, its schema stamp) is upgraded on first use:
    builds are recorded and listed, and its runs are kept."""
    import sqlite3

    home.mkdir(mode=0o700)
    schema = """CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, created REAL NOT NULL,
        started REAL, ended REAL, uri TEXT NOT NULL, commit_sha TEXT, source_key TEXT NOT NULL,
        subdirectory TEXT NOT NULL DEFAULT '', project TEXT NOT NULL, entry_point TEXT NOT NULL,
        parameters TEXT NOT NULL, command TEXT NOT NULL, image TEXT NOT NULL, env_key TEXT NOT NULL,
        container_id TEXT, outputs TEXT NOT NULL, exit_code INTEGER, reason TEXT, supervisor_pid INTEGER,
        supervisor_start TEXT, driver_pid INTEGER, driver_start TEXT);
        CREATE INDEX runs_created ON runs(created);"""  # as the first release made it
    db = sqlite3.connect(home / "runs.db")
    db.executescript(schema)
    db.execute("INSERT INTO runs (run_id, status, created, uri, source_key, project, entry_point, parameters, "
               "command, image, env_key, outputs) VALUES ('0123456789abcdef', 'FINISHED', 1, '/p', 'k', 'old', "
               "'main', '{}', 'true', 'img', 'e', '/o')")
    db.execute("PRAGMA user_version = 1234")
    db.commit()
    db.close()
    name = f"upgraded-{uuid.uuid4().hex[:8]}"
    project = write_project(tmp_path / name, {"MLproject": f"name: {name}\nentry_points: {{main: 'true'}}\n"})
    built = cli("build", str(project))
    assert built.code == 0, built.err
    made.append(built.out.strip())
    assert built.out.strip() in cli("images", "list").out
    assert "0123456789abcdef" in cli("runs", "list").out
