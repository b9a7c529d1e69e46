"""A registry tag is not trusted for its content: when the tag dockrun pushes to already names
another image (anyone with push rights to the repository can put one there), dockrun says so in
one line and pushes the image it built over it; what it pins is the digest of its own image.
Real engine, real registry (Debian's docker-registry)."""
from __future__ import annotations

import io
import json
import subprocess
import tarfile
import urllib.request
import uuid
from pathlib import Path

from conftest import write_project

MANIFEST_TYPES = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.manifest.v1+json"])


def served_digest(ref: str) -> str:
    """The manifest digest the registry serves for ``ref`` (host:port/repo:tag), asked over HTTP."""
    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", method="HEAD",
                                 headers={"Accept": MANIFEST_TYPES})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.headers["Docker-Content-Digest"]


def local_digests(image: str) -> list[str]:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{json .RepoDigests}}", image],
                         capture_output=True, text=True, check=True).stdout
    return [d.rpartition("@")[2] for d in json.loads(out) or []]


def docker(*args: str) -> str:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def push_other_image_as(ref: str, tmp_path: Path) -> str:
    """What a co-tenant with push rights does: put an image of their own under ``ref`` in the
    registry (the local tag ``ref`` is put back on dockrun's image afterwards). Its digest."""
    ours = docker("image", "inspect", "-f", "{{.Id}}", ref)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        payload = f"not dockrun's image {uuid.uuid4()}\n".encode()
        info = tarfile.TarInfo("planted.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    other = subprocess.run(["docker", "import", "-", f"dockrun-test-planted:{uuid.uuid4().hex[:8]}"],
                           input=data.getvalue(), capture_output=True, check=True).stdout.decode().strip()
    try:
        docker("tag", other, ref)
        docker("push", ref)
    finally:
        docker("tag", ours, ref)
        subprocess.run(["docker", "rmi", "-f", other], capture_output=True)
    planted = served_digest(ref)
    assert planted not in local_digests(ref)
    return planted


def test_build_push_puts_its_own_image_over_a_planted_tag(cli, registry, tmp_path: Path) -> None:
    project = write_project(tmp_path / "tagged", {"MLproject": f"""
        name: tagged
        entry_points:
          main: "echo tagged {uuid.uuid4().hex}"
    """})
    env = {"DOCKRUN_REGISTRY": f"{registry.address}/team"}
    built = cli("build", str(project), env=env)
    assert built.code == 0, built.err
    ref = built.out.strip()
    assert ref.startswith(f"{registry.address}/team/")
    planted = push_other_image_as(ref, tmp_path)

    pushed = cli("build", str(project), "--push", env=env)
    assert pushed.code == 0, pushed.err
    said = [line for line in pushed.err.splitlines() if "another image" in line]
    assert said == [f"the registry has another image under {ref} ({planted}); pushing the one built here over it"]
    assert "nothing to push" not in pushed.err
    now = served_digest(ref)
    assert now != planted and now in local_digests(ref)  # the registry serves dockrun's image

    again = cli("build", str(project), "--push", env=env)  # its own image: nothing to push, nothing said
    assert again.code == 0, again.err
    assert f"{ref} is already in the registry; nothing to push" in again.err and "another image" not in again.err
