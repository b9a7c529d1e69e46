"""A real conda channel for the conda path's end-to-end tests, built once per session.

py-rattler-build makes a `noarch: generic` package `dockrun-demo` in three versions, each with a
`dockrun-demo` script that prints its version; `python3 -m http.server` serves the folder on the
docker0 gateway, the one host address a `docker build` step reaches. Tests point conda-forge at it
with DOCKRUN_CONDA_CHANNEL_MAP, so no public channel is ever asked.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import unavailable

VERSIONS = ("1.1.0", "1.2.0", "1.3.0")
RECIPE = """
package:
  name: dockrun-demo
  version: "{version}"
build:
  noarch: generic
  script:
    - mkdir -p $PREFIX/bin
    - printf '#!/bin/sh\\necho "dockrun-demo {version}"\\n' > $PREFIX/bin/dockrun-demo
    - chmod +x $PREFIX/bin/dockrun-demo
"""


@dataclass(frozen=True)
class Channel:
    url: str  # http://<gateway>:<port>/, as a build step sees it

    @property
    def env(self) -> dict[str, str]:
        """What a dockrun run needs so that `conda-forge` means this channel."""
        return {"DOCKRUN_CONDA_CHANNEL_MAP": f"conda-forge={self.url}"}


def docker_gateway() -> str:
    """The default bridge's gateway address: Docker's own record, else the bridge's address."""
    r = subprocess.run(["docker", "network", "inspect", "bridge"], capture_output=True, text=True, timeout=30)
    if r.returncode:
        unavailable(f"docker network inspect bridge failed: {r.stderr.strip()}")
    net = json.loads(r.stdout)[0]
    for config in (net.get("IPAM") or {}).get("Config") or []:
        if config.get("Gateway"):
            return config["Gateway"]
    # Engines that leave Gateway out of IPAM (seen on 20.10): the bridge interface's own address.
    bridge = (net.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
    r = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True)
    words = r.stdout.split()
    if r.returncode or "inet" not in words:
        unavailable(f"no IPv4 address on the Docker bridge {bridge}")
    return words[words.index("inet") + 1].split("/")[0]


def build_channel(folder: Path) -> Path:
    try:
        from rattler_build import Stage0Recipe
    except ImportError:
        unavailable("py-rattler-build is not installed (pip install -e '.[test]')")
    out = folder / "channel"
    for version in VERSIONS:
        recipe = folder / version / "recipe.yaml"
        recipe.parent.mkdir(parents=True)
        recipe.write_text(RECIPE.format(version=version))
        Stage0Recipe.from_file(str(recipe)).run_build(output_dir=str(out), channels=[], no_include_recipe=True)
    assert sorted(p.name.split("-")[2] for p in (out / "noarch").glob("*.conda")) == list(VERSIONS)
    return out


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def serve_on_bridge(folder: Path, probe: str) -> Iterator[str]:
    """``folder`` served over HTTP on the docker bridge's gateway (where a build container reaches
    the host), on a free port; its URL (ending in /) once ``probe`` (a path under it) answers."""
    host = docker_gateway()
    port = _free_port(host)
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", host, "--directory", str(folder),
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{host}:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + probe, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"the server on {url} did not answer")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session", name="conda_channel")
def conda_channel_fixture(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[Channel]:
    folder = build_channel(tmp_path_factory.mktemp("conda-channel"))
    with serve_on_bridge(folder, "noarch/repodata.json") as url:
        yield Channel(url)
