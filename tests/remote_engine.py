"""A second, private Docker engine for tests: its own data root, exec root, bridge and containerd
namespace, listening on loopback TCP, so the machine's engine and other tests are untouched.

``hide`` makes it a stand-in for an engine on another machine: it is started under ``unshare -m``
with a tmpfs mounted over each of those folders first, so the host's files there (the test's
projects, inputs, DOCKRUN_HOME) do not exist for it, and a bind mount of one fails with "bind
source path does not exist", as it would on a real remote engine."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from conftest import free_port, unavailable


class Engine:
    def __init__(self, root: Path, bridge: str, namespace: str, hide: Sequence[str] = ()):
        self.root, self.port = root, free_port()
        self.host = f"tcp://127.0.0.1:{self.port}"
        self.bridge, self.namespace, self.hide = bridge, namespace, tuple(hide)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        dockerd = ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                   "--pidfile", str(self.root / "pid"), "-H", self.host, "--bridge", self.bridge,
                   "--containerd-namespace", self.namespace, "--containerd-plugins-namespace", self.namespace + "p"]
        if self.hide:
            # Mounts made here stay here (private propagation); dockerd, and the containerd it
            # starts, see empty folders where the test's files are.
            hide = " && ".join(f"mount -t tmpfs tmpfs {shlex.quote(p)}" for p in self.hide)
            dockerd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                       f"{hide} && exec {shlex.join(dockerd)}"]
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - lives as long as the engine
        self.proc = subprocess.Popen(dockerd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(160):
            if self.docker("info").returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.25)
        self.stop()
        raise AssertionError("the second engine did not start: " + (self.root / "dockerd.log").read_text()[-800:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def docker(self, *args: str, **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
        return subprocess.run(["docker", "-H", self.host, *args], capture_output=True, text=True, **kw)

    def load(self, image: str) -> None:
        """Copy ``image`` from the machine's engine (no registry: nothing can be pulled here)."""
        saved = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        loaded = subprocess.run(["docker", "-H", self.host, "load", "-q"], stdin=saved.stdout,
                                capture_output=True, text=True)
        saved.wait()
        assert loaded.returncode == 0, loaded.stderr


@contextmanager
def second_engine(name: str, bridge: str, address: str, base_image: str, hide: Sequence[str] = ()) -> Iterator[Engine]:
    """Start the engine (bridge ``bridge`` with ``address``, containerd namespace ``name``), load
    ``base_image`` into it, and remove everything again afterwards. Unavailable (a skip; a failure
    under CI=true) without root, dockerd, ip or unshare."""
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("dockerd", "ip", "unshare")):
        unavailable("a second engine needs root, dockerd, ip and unshare")
    made_bridge = subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0
    if made_bridge:
        subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", address, "dev", bridge], check=True)
        subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    root = Path("/var/tmp") / f"dockrun-{name}-{os.getpid()}"  # not under /tmp: overlay upper dirs
    root.mkdir(parents=True, exist_ok=True)
    engine = Engine(root, bridge, name, hide)
    try:
        engine.start()
        engine.load(base_image)
        yield engine
    finally:
        engine.stop()
        shutil.rmtree(root, ignore_errors=True)
        if made_bridge:
            subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
