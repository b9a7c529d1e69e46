"""A real single-node Kubernetes for the tests: ../shared/tools/k8s-up.sh (kube-apiserver, etcd,
scheduler, controller-manager and a kubelet with its own containerd, all on 127.0.0.1), whose node
pulls from a plain-http loopback registry (Debian's docker-registry) that the tests push to.

One cluster per test session (about 15 s to a Ready node once the binaries are cached; the first
build of the binaries takes about 7 minutes and is cached under ~/.cache/dockrun-k8s)."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, free_port, start_registry, unavailable


@dataclass(frozen=True)
class Kube:
    kubeconfig: str
    registry: str  # 127.0.0.1:PORT, which the node pulls from over plain http
    registry_log: Path

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:  # noqa: A002
        return subprocess.run([kubectl_binary(), "--kubeconfig", self.kubeconfig, *args],
                              capture_output=True, text=True, timeout=60, input=input)

    def uploads(self) -> int:
        text = self.registry_log.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if "http.request.method=PUT" in line or '"PUT ' in line)

    def left(self, namespace: str, run_id: str) -> list[str]:
        """The Job and pods of a dockrun run still in ``namespace``."""
        r = self.kubectl("-n", namespace, "get", "jobs,pods", "-l", f"dockrun.run-id={run_id}", "-o", "name")
        assert r.returncode == 0, r.stderr
        return r.stdout.split()


def tools_dir() -> Path | None:
    for candidate in (os.environ.get("DOCKRUN_K8S_TOOLS"), REPO.parent / "shared" / "tools", "/work/shared/tools"):
        if candidate and (Path(candidate) / "k8s-up.sh").is_file():
            return Path(candidate)
    return None


def kubectl_binary() -> str:
    cached = Path(os.environ.get("DOCKRUN_K8S_CACHE", Path.home() / ".cache" / "dockrun-k8s")) / "bin" / "kubectl"
    return str(cached) if cached.is_file() else (shutil.which("kubectl") or "kubectl")


@pytest.fixture(scope="session")
def kube(tmp_path_factory, base_image: str):
    tools = tools_dir()
    if tools is None:
        unavailable("no k8s-up.sh (set DOCKRUN_K8S_TOOLS to the folder holding k8s-up.sh)")
    if os.geteuid() != 0:
        unavailable("the test cluster (k8s-up.sh) needs root")
    root = tmp_path_factory.mktemp("kube-registry")
    port = free_port()
    registry = start_registry(root, port)
    env = {**os.environ, "DOCKRUN_K8S_REGISTRIES": f"127.0.0.1:{port}", "KUBELET_KERNEL_TUNABLES_WARN_ONLY": "1"}
    # A cluster left from an earlier session has its containerd configured for another registry port.
    subprocess.run(["bash", str(tools / "k8s-down.sh"), "--purge"], env=env, capture_output=True, timeout=300)
    up = subprocess.run(["bash", str(tools / "k8s-up.sh")], env=env, capture_output=True, text=True, timeout=1800)
    if up.returncode != 0:
        registry.kill()
        unavailable(f"k8s-up.sh failed: {(up.stderr or up.stdout).strip().splitlines()[-1:]}")
    kubeconfig = up.stdout.strip().splitlines()[-1]
    yield Kube(kubeconfig, f"127.0.0.1:{port}", root / "registry.log")
    subprocess.run(["bash", str(tools / "k8s-down.sh"), "--purge"], env=env, capture_output=True, timeout=300)
    registry.terminate()
    registry.wait(timeout=10)


class RefusingProxy:
    """A registry's front door that lets the Docker engine in (pushes work) and answers the node's
    containerd 403 (its pulls fail), told apart by User-Agent: a registry the cluster may not pull
    from. A plain TCP relay after the first request's headers, so pushes stream as usual."""

    def __init__(self, upstream_port: int):
        import socket
        import threading

        self.upstream = upstream_port
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn) -> None:  # noqa: ANN001
        import socket
        import threading

        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                conn.close()
                return
            head += chunk
            if head[:1] == b"\x16":  # a TLS handshake (containerd tries https first): refused at once,
                conn.close()          # as a plain-http registry would, rather than left to time out
                return
        agent = next((line for line in head.split(b"\r\n") if line.lower().startswith(b"user-agent:")), b"")
        if b"containerd" in agent.lower():
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()
            return
        up = socket.create_connection(("127.0.0.1", self.upstream))
        up.sendall(head)

        def pipe(a, b) -> None:  # noqa: ANN001
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()
        pipe(conn, up)

    def close(self) -> None:
        self.server.close()
