"""The docker bridge's gateway: the one host address a container or a build step reaches, where
test servers for them listen."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import unavailable


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
