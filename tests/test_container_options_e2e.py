"""A container option (-A) that cannot work fails in prepare, with every other user error: one
line, exit 2, before any build, for `run`, `sweep` and `runs rerun` alike. The project's
environment has never been built (its requirements name a version nobody else asks for), so a
check made after the build would be seen building first."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import in_ci, unavailable, write_project


@pytest.fixture
def cold(tmp_path: Path) -> Path:
    """A project whose environment and image nobody has built."""
    unique = uuid.uuid4().hex[:12]
    return write_project(tmp_path / f"cold-{unique}", {
        "MLproject": f"name: cold-{unique}\nentry_points:\n  main:\n    parameters: {{n: {{type: int, default: 1}}}}\n"
                     "    command: 'python train.py {n}'\n",
        "requirements.txt": f"tabulate!=0.0.{int(unique, 16) % 10**9}\n",  # an environment key of its own
        "train.py": "print('hi')\n"})


def _images() -> set[str]:
    r = subprocess.run(["docker", "images", "-q", "--no-trunc"], capture_output=True, text=True)
    if r.returncode != 0:
        unavailable(f"no Docker engine: {r.stderr.strip()}")
    return set(r.stdout.split())


def _project_images(project: Path) -> str:
    return subprocess.run(["docker", "images", "-q", "--filter", f"label=dockrun.project={project.name}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _nothing_recorded(home: Path) -> None:
    assert not (home / "runs").exists() and not (home / "sweeps").exists()
    if (home / "runs.db").exists():  # opened (a sweep opens the store first): still empty
        with sqlite3.connect(home / "runs.db") as db:
            tables = {name for (name,) in db.execute("select name from sqlite_master where type='table'")}
            for table in tables & {"runs", "images"}:
                assert db.execute(f"select count(*) from {table}").fetchone() == (0,), table


def _refused(cli, home: Path, project: Path, args: tuple[str, ...], expected: str) -> None:  # noqa: ANN001
    before = _images()
    r = cli(*args)
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dockrun: error: ") and expected in lines[0], r.err
    assert "Traceback" not in r.err and "building" not in r.err
    _nothing_recorded(home)
    assert _project_images(project) == ""
    if in_ci():  # nothing else on the engine: any new image is this command's
        assert _images() - before == set()


UNSET = f"DOCKRUN_TEST_UNSET_{uuid.uuid4().hex[:8].upper()}"


@pytest.mark.parametrize("option, expected", [
    ("nosuch-option=1", "--docker-args nosuch-option: unknown Docker option"),
    (f"env={UNSET}", f"--docker-args env={UNSET}: {UNSET} is not set in the host environment"),
    ("v=/srv/only-one-part", "volume '/srv/only-one-part': expected HOST:CONTAINER[:ro|rw]"),
])
def test_a_bad_docker_option_fails_before_any_build(cli, home: Path, cold: Path, tmp_path: Path,
                                                      option: str, expected: str) -> None:
    _refused(cli, home, cold, ("run", str(cold), "-A", option), expected)
    _refused(cli, home, cold, ("sweep", str(cold), "-P", "n=1,2", "-A", option), expected)
    record = tmp_path / "record.json"  # what `dockrun runs show` writes, as if the run had used the option
    record.write_text(json.dumps({"run_id": "0123456789ab", "uri": str(cold), "entry_point": "main",
                                  "image_id": "sha256:" + "a" * 64, "source_key": "b" * 64,
                                  "options": {"parameters": {"n": "1"}, "docker_args": [option]}}))
    _refused(cli, home, cold, ("runs", "rerun", str(record), "--trust"), expected)


def test_gpus_without_a_gpu_runtime_fails_before_any_build(cli, home: Path, cold: Path) -> None:
    runtimes = subprocess.run(["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True)
    if runtimes.returncode != 0:
        unavailable(f"no Docker engine: {runtimes.stderr.strip()}")
    if "nvidia" in runtimes.stdout.lower():
        unavailable("this engine has an NVIDIA runtime: the no-GPU case cannot be seen here")
    expected = "--docker-args gpus=all: this Docker engine has no GPU runtime"
    _refused(cli, home, cold, ("run", str(cold), "-A", "gpus=all"), expected)
    _refused(cli, home, cold, ("sweep", str(cold), "-P", "n=1,2", "-A", "gpus=all"), expected)


def test_a_local_mlflow_store_a_remote_engine_cannot_reach_fails_before_any_build(cli, home: Path, cold: Path,
                                                                                 tmp_path: Path) -> None:
    # DOCKRUN_REMOTE_ENGINE=1: this engine is taken for one that cannot see this machine's files,
    # so the store could not be mounted; that is known from the settings, before the build.
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("mlflow", "sqlalchemy", "alembic")):
        unavailable("a local MLflow store needs MLflow on this machine (dockrun[mlflow])")
    store = tmp_path / "mlflow.db"
    before = _images()
    r = cli("run", str(cold), "--tracking-uri", f"sqlite:///{store}", env={"DOCKRUN_REMOTE_ENGINE": "1"})
    assert r.code == 2, r.err
    assert r.err.splitlines() == [f"dockrun: error: tracking: the local MLflow store sqlite:///{store} cannot be "
                                  "reached from a remote Docker engine; track to a server (MLFLOW_TRACKING_URI="
                                  "http://...), or set DOCKRUN_REMOTE_ENGINE=0 if the engine sees this machine's files"]
    assert not store.exists() and _project_images(cold) == ""
    _nothing_recorded(home)
    if in_ci():
        assert _images() - before == set()
