"""What an environment image installed: recorded at build time inside the image
(/opt/dockrun/installed.json), shown by `dockrun runs show` and `dockrun images list --packages`,
read from the image once; and a locked environment rebuilt from nothing installs the same versions,
compared package by package. Real engine, real PyPI (through the host's CA), a real conda channel."""
from __future__ import annotations

import json
import re
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from conda_channel import Channel, conda_channel_fixture  # noqa: F401 - the session fixture
from conftest import write_project

RATTLER = {"DOCKRUN_MICROMAMBA_IMAGE": ""}
PRINT_VERSIONS = ("python -c 'import platform, tabulate; print(platform.python_version(), tabulate.__version__)'")


@pytest.fixture
def own_base(base_image: str):
    """The base image under a tag of this test's own: the base is part of the environment key, so
    the images this test builds (and removes) are its own, never another test's."""
    tag = f"dockrun-base:installed-{uuid.uuid4().hex[:12]}"
    subprocess.run(["docker", "tag", base_image, tag], check=True)
    made: list[str] = []
    yield tag, made
    subprocess.run(["docker", "rmi", *made, tag], capture_output=True)


def _run(cli, root: Path, *args: str, env: dict | None = None) -> str:
    """Run the project detached, wait for it; its run ID."""
    r = cli("run", "-q", "--detach", *args, str(root), env=env, timeout=900)
    assert r.code == 0, r.err[-2000:]
    run_id = r.out.strip()
    w = cli("runs", "wait", run_id, env=env)
    assert w.code == 0, w.err
    return run_id


def _environment(cli, run_id: str, env: dict | None = None) -> dict:
    r = cli("runs", "show", run_id, env=env)
    assert r.code == 0, r.err
    return json.loads(r.out)["environment"]


def _env_image(project_image: str) -> str:
    """The environment image a project image was built on (its name is in the project image's label)."""
    key = subprocess.run(["docker", "image", "inspect", "-f", '{{index .Config.Labels "dockrun.env-hash"}}',
                          project_image], capture_output=True, text=True, check=True).stdout.strip()
    return f"dockrun-env:{key[:32]}"


def _readers() -> list[str]:
    return subprocess.run(["docker", "ps", "-aq", "--filter", "label=dockrun.reader"], capture_output=True,
                          text=True, check=True).stdout.split()


@pytest.mark.usefixtures("no_leaks")
def test_a_uv_environment_records_python_and_every_package(cli, tmp_path: Path, home: Path, own_base) -> None:
    base, made = own_base
    root = write_project(tmp_path / "recorded", {
        "requirements.txt": "tabulate==0.9.0\n",
        "MLproject": f'name: recorded\nentry_points:\n  main:\n    command: "{PRINT_VERSIONS}"\n',
    })
    env = {"DOCKRUN_BASE_IMAGE": base}
    run_id = _run(cli, root, env=env)
    out = (home / "runs" / run_id / "stdout.log").read_text().split()
    python, tabulate = out
    assert tabulate == "0.9.0"
    record = json.loads(cli("runs", "show", run_id, env=env).out)
    made += [record["image"], _env_image(record["image"])]
    shown = record["environment"]
    assert shown["python"] == python and shown["installer"] == "uv"
    assert "tabulate==0.9.0" in shown["packages"]
    assert all(re.fullmatch(r"[a-z0-9-]+==\S+", p) for p in shown["packages"]), shown["packages"]
    assert shown["packages"] == sorted(shown["packages"])
    assert _readers() == []  # the reading container is gone

    # A second look asks the engine nothing: it works with no engine at all.
    assert _environment(cli, run_id, env={**env, "DOCKER_HOST": "unix:///nonexistent.sock"}) == shown
    assert (home / "cache" / "installed" / (shown["image_id"].split(":")[1] + ".json")).is_file()
    # ... while a first look with no engine says so, and the rest of the record is still shown.
    fresh = {**env, "DOCKRUN_HOME": str(home), "DOCKER_HOST": "unix:///nonexistent.sock"}
    (home / "cache" / "installed" / "runs" / f"{run_id}.json").unlink()
    unknown = _environment(cli, run_id, env=fresh)
    assert unknown["recorded"] is False and unknown["why"].startswith("unknown: cannot reach the Docker engine")

    r = cli("images", "list", "--packages", env=env)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    env_row = next((i for i, line in enumerate(lines) if line.startswith(made[1])), None)
    assert env_row is not None, (made, r.out)
    assert lines[env_row + 1:env_row + 2] == [f"    python {python}"]
    assert "    tabulate==0.9.0" in lines[env_row + 2:env_row + 2 + len(shown["packages"])]
    project_row = next(i for i, line in enumerate(lines) if line.startswith(made[0]))
    assert lines[project_row + 1] == f"    packages: as its environment image {made[1]}"
    assert not [line for line in cli("images", "list", env=env).out.splitlines() if line.startswith("    ")]


@pytest.mark.usefixtures("no_leaks")
def test_a_docker_env_image_is_honestly_not_recorded(cli, tmp_path: Path, base_image: str) -> None:
    root = write_project(tmp_path / "given", {
        "MLproject": f"name: given\ndocker_env: {{image: '{base_image}'}}\n"
                     "entry_points:\n  main:\n    command: 'true'\n",
        "marker.txt": uuid.uuid4().hex,
    })
    run_id = _run(cli, root)
    shown = _environment(cli, run_id)
    assert shown["recorded"] is False
    assert shown["why"].startswith("not recorded: dockrun records what its environment templates install")
    assert _readers() == []


@pytest.mark.usefixtures("no_leaks")
def test_a_conda_environment_records_its_explicit_list(cli, conda_channel: Channel, tmp_path: Path) -> None:
    root = write_project(tmp_path / "conda-demo", {
        "MLproject": "name: conda-demo\nconda_env: conda.yaml\nentry_points:\n  main: dockrun-demo\n",
        "conda.yaml": "channels: [conda-forge]\ndependencies: [dockrun-demo=1.2]\n", "marker.txt": uuid.uuid4().hex})
    env = {**conda_channel.env, **RATTLER}
    shown = _environment(cli, _run(cli, root, env=env), env=env)
    (package,) = shown["packages"]
    assert re.fullmatch(r"dockrun-demo=1\.2\.0=\S+", package) and shown["python"] is None
    with urllib.request.urlopen(conda_channel.url + "noarch/repodata.json", timeout=10) as f:
        repodata = json.load(f)
    name, record = next((n, r) for n, r in repodata["packages.conda"].items() if r["version"] == "1.2.0")
    assert shown["explicit"].splitlines() == ["# platform: linux-64", "@EXPLICIT",
                                              f"{conda_channel.url}noarch/{name}#{record['md5']}"]


# ---- the "done when": lock, then a rebuild from nothing installs the same versions ----------

PROJECTS = {
    "uv": {"requirements.txt": "tabulate>=0.8\n",
           "MLproject": f'name: relock\nentry_points:\n  main:\n    command: "{PRINT_VERSIONS}"\n'},
    "conda": {"conda.yaml": "channels: [conda-forge]\ndependencies: ['dockrun-demo>=1.1']\n",
              "MLproject": "name: relock\nconda_env: conda.yaml\nentry_points:\n  main: dockrun-demo\n"},
}


@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("kind", ["uv", "conda"])
def test_lock_then_a_rebuild_from_nothing_installs_the_same_versions(cli, tmp_path: Path, own_base, kind: str,
                                                                     request: pytest.FixtureRequest) -> None:
    base, made = own_base
    env = {"DOCKRUN_BASE_IMAGE": base}
    if kind == "conda":
        env.update(request.getfixturevalue("conda_channel").env, **RATTLER)
    root = write_project(tmp_path / "relock", PROJECTS[kind])
    r = cli("lock", "-q", str(root), env=env, timeout=900)
    assert r.code == 0, r.err[-2000:]
    assert Path(r.out.strip()).name == {"uv": "requirements.lock", "conda": "conda-lock.txt"}[kind]

    first_id = _run(cli, root, env=env)
    record = json.loads(cli("runs", "show", first_id, env=env).out)
    first = record["environment"]
    assert first["packages"], first
    made += [record["image"], _env_image(record["image"])]
    subprocess.run(["docker", "rmi", *made], check=True, capture_output=True)  # this test's images only

    # From nothing: another DOCKRUN_HOME, --rebuild, and a build setting that no cached layer was
    # made with (an index setting is a build arg of the install stage, not part of the key), so
    # every install step runs again and downloads again.
    fresh = {**env, "DOCKRUN_HOME": str(tmp_path / "fresh-home"), "PIP_TRUSTED_HOST": f"fresh-{uuid.uuid4().hex}"}
    r = cli("run", "--rebuild", "--verbose", "--detach", str(root), env=fresh, timeout=900)
    assert r.code == 0, r.err[-2000:]
    lines = r.err.splitlines()
    if any("in a build container with the package cache" in line for line in lines):
        # dockrun's build container has no layer cache: the install ran (from the package cache)
        assert {"uv": "Installed ", "conda": "installed "}[kind] in r.err, r.err
    else:
        step = next(i for i, line in enumerate(lines)
                    if line.startswith("Step ") and " : RUN " in line
                    and "/tmp/dockrun/in/env.sh" in line)  # the environment's install script
        assert "Running in" in lines[step + 1], r.err  # installed again, not taken from the layer cache
    second_id = r.out.strip()
    assert cli("runs", "wait", second_id, env=fresh).code == 0
    second = _environment(cli, second_id, env=fresh)  # read from the new image, into the new home
    assert second["python"] == first["python"]
    assert dict(p.split("=", 1) for p in second["packages"]) == dict(p.split("=", 1) for p in first["packages"])
    assert second.get("explicit") == first.get("explicit")
