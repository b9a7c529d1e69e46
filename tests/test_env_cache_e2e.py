"""Environment builds with the package cache (images/cached_build.py), through the real CLI on the
real engine: a cached build installs exactly what the classic builder installs, under the same key,
with nothing of the cache or of the host's CA and index settings in the image; the cache has a
bound and `dockrun images prune` knows it."""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import image_files_containing, unavailable, write_project
from docker_bridge import serve_on_bridge
from wheels import pure_wheel

REQUIREMENTS = "tabulate==0.9.0\nsix==1.16.0\n"
MAIN = "import six, tabulate\nprint('versions', tabulate.__version__, six.__version__)\n"
CACHED = "in a build container with the package cache"
CLASSIC = "with the classic builder, no package cache"


def _project(tmp_path: Path, requirements: str = REQUIREMENTS, name: str = "envcache") -> Path:
    # A fresh marker per test: a new source key, so each build makes its own project image.
    return write_project(tmp_path / name, {
        "MLproject": f"name: {name}\nentry_points:\n  main:\n    command: python main.py\n",
        "requirements.txt": requirements, "main.py": MAIN, "marker.txt": uuid.uuid4().hex})


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def _env_image(project_image: str) -> str:
    labels = json.loads(_docker("image", "inspect", "-f", "{{json .Config.Labels}}", project_image))
    return f"dockrun-env:{labels['dockrun.env-hash'][:32]}"


def _installed(image: str) -> dict:
    return json.loads(_docker("run", "--rm", "--entrypoint", "cat", image, "/opt/dockrun/installed.json"))


def _config(image: str) -> dict:
    return json.loads(_docker("image", "inspect", "-f", "{{json .Config}}", image))


@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("derived", [False, True], ids=["from-the-os-layer", "from-a-similar-environment"])
def test_a_cached_build_installs_what_the_classic_build_installs(cli, tmp_path: Path, derived: bool) -> None:
    project = _project(tmp_path)
    if derived:  # an environment built before, here: the next one starts from it
        first = cli("build", str(project), "--rebuild", timeout=900)
        assert first.code == 0, first.err[-3000:]
        (project / "requirements.txt").write_text(REQUIREMENTS + "idna==3.7\n")
    cached = cli("build", str(project), "--rebuild", "--verbose", timeout=900)  # built now, whatever ran before
    assert cached.code == 0, cached.err[-3000:]
    assert CACHED in cached.err  # the one line that says which path the build took
    assert ("only the difference is installed" in cached.err) == derived
    env_image = _env_image(cached.out.strip())
    cached_installed, cached_config = _installed(env_image), _config(env_image)

    classic = cli("build", str(project), "--rebuild", env={"DOCKRUN_ENV_BUILD": "classic"}, timeout=900)
    assert classic.code == 0, classic.err[-3000:]
    assert CLASSIC in classic.err and "DOCKRUN_ENV_BUILD=classic" in classic.err
    assert _env_image(classic.out.strip()) == env_image  # the same key names both
    classic_installed, classic_config = _installed(env_image), _config(env_image)

    assert cached_installed == classic_installed
    assert {"tabulate": "0.9.0", "six": "1.16.0"}.items() <= {
        p["name"]: p["version"] for p in cached_installed["packages"]}.items()
    for key in ("Env", "Labels", "Cmd", "WorkingDir"):
        assert cached_config.get(key) == classic_config.get(key), key
    # Both carry the OpenMP runtime that common ML wheels load.
    assert "libgomp.so.1" in _docker("run", "--rm", "--entrypoint", "sh", env_image, "-c", "ldconfig -p")


@pytest.mark.usefixtures("no_leaks")
def test_nothing_of_the_cache_or_the_hosts_ca_and_index_is_in_the_image(cli, tmp_path: Path) -> None:
    ca = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    if not ca.is_file():
        unavailable("no host CA bundle to test with")
    marker = f"# dockrun-test-marker {uuid.uuid4().hex}"
    secret = f"tok-{uuid.uuid4().hex}"
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(marker + "\n" + ca.read_text())
    project = _project(tmp_path, REQUIREMENTS + "idna==3.7\n")
    r = cli("build", str(project), "--rebuild", env={"SSL_CERT_FILE": str(bundle), "PIP_CERT": str(bundle),
                                        "REQUESTS_CA_BUNDLE": str(bundle),
                                        "PIP_EXTRA_INDEX_URL": f"https://user:{secret}@127.0.0.1:9/simple"},
            timeout=900)
    assert r.code == 0, r.err[-3000:]
    assert CACHED in r.err
    env_image = _env_image(r.out.strip())
    assert image_files_containing([env_image], [marker, secret], tmp_path) == []
    config = _config(env_image)
    names = {e.split("=")[0] for e in config["Env"]}
    assert not names & {"SSL_CERT_FILE", "UV_CACHE_DIR", "PIP_EXTRA_INDEX_URL", "DOCKRUN_APT_CACHE"}
    assert "/tmp/dockrun" not in json.dumps(config.get("Entrypoint")) + json.dumps(config.get("Cmd"))
    # The committed layer holds the environment, not the cache: nothing under the cache's path.
    listing = _docker("run", "--rm", "--entrypoint", "sh", env_image, "-c",
                      "find /tmp/dockrun -mindepth 2 2>/dev/null | head -5; ls /opt/dockrun")
    assert listing.split() == ["installed.json", "venv"]


@pytest.mark.usefixtures("no_leaks")
def test_a_cache_over_its_limit_is_emptied_and_prune_removes_it(cli, tmp_path: Path) -> None:
    project = _project(tmp_path, name="envcache-limit")
    warm = cli("build", str(project), timeout=900)
    assert warm.code == 0, warm.err[-3000:]
    over = cli("build", str(project), "--rebuild", "--verbose", env={"DOCKRUN_CACHE_MAX_GB": "0.0001"}, timeout=900)
    assert over.code == 0, over.err[-3000:]
    assert "over its limit (DOCKRUN_CACHE_MAX_GB); emptying it" in over.err
    bad = cli("build", str(project), "--rebuild", env={"DOCKRUN_CACHE_MAX_GB": "lots"})
    assert bad.code == 2 and bad.err.strip().splitlines()[-1].startswith("dockrun: error: DOCKRUN_CACHE_MAX_GB=")
    # Prune, with no image old enough to go: the cache goes when it is over its limit.
    pruned = cli("images", "prune", "--older-than", "100000", env={"DOCKRUN_CACHE_MAX_GB": "0.0001"})
    assert pruned.code == 0, pruned.err
    if "removed volume dockrun-cache" not in pruned.out:  # another build holds it right now
        assert "dockrun-cache" in _docker("volume", "ls", "-q")
    again = cli("build", str(project), "--rebuild", timeout=900)  # and a build makes it anew
    assert again.code == 0 and CACHED in again.err, again.err[-3000:]


@pytest.mark.usefixtures("no_leaks")
def test_after_a_prune_took_its_os_layers_name_a_changed_environment_still_starts_from_a_similar_one(
        cli, tmp_path: Path) -> None:
    project = _project(tmp_path, name="envcache-os-layer")
    first = cli("build", str(project), "--rebuild", timeout=900)
    assert first.code == 0, first.err[-3000:]
    env_image = _env_image(first.out.strip())
    # What `dockrun images prune` does to an OS layer: its name goes; its image stays while the
    # environments built on it are there.
    os_layer = _docker("image", "inspect", "-f", "{{.Parent}}", env_image).strip()
    names = json.loads(_docker("image", "inspect", "-f", "{{json .RepoTags}}", os_layer))
    assert names and all(n.startswith("dockrun-os:") for n in names)
    for name in names:
        _docker("rmi", name)
    (project / "requirements.txt").write_text(REQUIREMENTS + "idna==3.7\n")
    changed = cli("build", str(project), "--rebuild", "--verbose", timeout=900)
    assert changed.code == 0, changed.err[-3000:]
    assert "named the OS layer" in changed.err and "building OS layer" not in changed.err, changed.err
    assert "only the difference is installed" in changed.err, changed.err
    assert _docker("image", "inspect", "-f", "{{.Id}}", names[0]).strip() == os_layer


@pytest.mark.usefixtures("no_leaks")
def test_a_changed_environment_keeps_whole_what_shared_files_with_a_package_it_dropped(
        cli, tmp_path: Path) -> None:
    """Two distributions may ship the same file (mlflow-skinny and mlflow-tracing both ship
    mlflow/__init__.py). An environment that drops one of them, started from one that had both,
    must still have the other whole, as a fresh install of it would."""
    folder = tmp_path / "wheels" / uuid.uuid4().hex  # a new key each session: nothing built before
    folder.mkdir(parents=True)
    init = {"sharedpkg/__init__.py": "VALUE = 'whole'\n"}
    keep = pure_wheel(str(folder), "sharedpkg_core", "1.0", {**init, "sharedpkg/core.py": ""})
    drop = pure_wheel(str(folder), "sharedpkg_extra", "1.0", {**init, "sharedpkg/extra.py": ""})
    with serve_on_bridge(folder.parent, f"{folder.name}/{keep}") as url:
        lines = {name: f"{name.split('-')[0]} @ {url}{folder.name}/{name}\n" for name in (keep, drop)}
        project = write_project(tmp_path / "shared", {
            "MLproject": "name: shared\nentry_points:\n  main:\n"
                         "    command: python -c \"import sharedpkg.core; print('sharedpkg', sharedpkg.VALUE)\"\n",
            "requirements.txt": lines[keep] + lines[drop]})
        first = cli("build", str(project), timeout=900)
        assert first.code == 0, first.err[-3000:]
        (project / "requirements.txt").write_text(lines[keep])
        r = cli("run", str(project), "--verbose", timeout=900)
    assert "only the difference is installed" in r.err  # started from the environment with both
    assert r.code == 0, r.err[-3000:]
    assert "sharedpkg whole" in r.out
