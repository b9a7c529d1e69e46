"""Golden tests of the rendered Dockerfiles, and of the tree walk/hash that feeds the code layer.

Regenerate the golden files after a deliberate template change with DOCKRUN_UPDATE_GOLDEN=1.
"""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from conftest import write_project
from dockrun.config import load_settings
from dockrun.images.build import env_context, project_context
from dockrun.images.environment import env_spec
from dockrun.images.plan import env_dockerfile, plan_images, project_dockerfile
from dockrun.project.folder import resolve_folder
from dockrun.project.spec import load_project
from dockrun.project.treehash import tree_hash, walk

GOLDEN = Path(__file__).parent / "golden"
CONDA = """
name: ignored
channels: [defaults, conda-forge]
dependencies: [python=3.11, numpy=1.26, {pip: [mlflow>=2]}]
"""


def _plan(tmp_path: Path, files: dict[str, str], environ: dict[str, str], manager: str = "auto"):
    root = write_project(tmp_path / "proj", files)
    settings = load_settings(environ)
    project = load_project(root)
    return plan_images(project, resolve_folder(str(root)), env_spec(project, settings, manager), settings), settings


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DOCKRUN_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; review and regenerate with DOCKRUN_UPDATE_GOLDEN=1"


@pytest.fixture
def ca(tmp_path: Path) -> str:
    p = tmp_path / "ca.pem"
    p.write_text("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
    return str(p)


def test_uv_template(tmp_path: Path, ca: str) -> None:
    plan, settings = _plan(tmp_path, {"python_env.yaml": "python: '3.11'\ndependencies: [tabulate]\n"},
                           {"DOCKRUN_BASE_IMAGE": "python:3.11-slim", "SSL_CERT_FILE": ca,
                            "PIP_INDEX_URL": "https://mirror.example/simple", "HTTPS_PROXY": "http://proxy:3128"})
    _check("env-uv.Dockerfile", env_dockerfile(plan, settings))


def test_uv_template_without_host_settings(tmp_path: Path) -> None:
    plan, settings = _plan(tmp_path, {"requirements.txt": "tabulate\n"}, {})
    _check("env-uv-plain.Dockerfile", env_dockerfile(plan, settings))


def test_micromamba_template(tmp_path: Path, ca: str) -> None:
    plan, settings = _plan(tmp_path, {"conda.yaml": CONDA}, {"SSL_CERT_FILE": ca})
    _check("env-micromamba.Dockerfile", env_dockerfile(plan, settings))
    with env_context(plan, settings) as ctx, tarfile.open(fileobj=ctx) as tar:
        _check("environment.yml", tar.extractfile("environment.yml").read().decode())


def test_docker_env_project_template(tmp_path: Path) -> None:
    plan, _ = _plan(tmp_path, {"MLproject": "docker_env: {image: 'ghcr.io/org/img:1.2'}\n"}, {})
    assert not plan.env.needs_build and plan.env_image == "ghcr.io/org/img:1.2"
    _check("project-docker-env.Dockerfile", project_dockerfile(plan))


def test_no_secret_in_final_stage(tmp_path: Path, ca: str) -> None:
    plan, settings = _plan(tmp_path, {"requirements.txt": "x\n"},
                           {"SSL_CERT_FILE": ca, "PIP_INDEX_URL": "https://u:tok@mirror/simple"})
    text = env_dockerfile(plan, settings)
    final = text.rsplit("\nFROM ", 1)[1]
    assert "ca.pem" not in final and "ARG" not in final and "tok" not in text


def test_env_context_holds_only_env_files(tmp_path: Path) -> None:
    plan, settings = _plan(tmp_path, {"requirements.txt": "b\na # c\n", "train.py": "x"}, {})
    with env_context(plan, settings) as ctx, tarfile.open(fileobj=ctx) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "requirements.txt"]
        assert tar.extractfile("requirements.txt").read() == b"a\nb\n"


def test_project_context_honours_dockerignore_never_git(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {
        ".dockerignore": "data/\n*.log\n!keep.log\n# comment\n**/cache\n",
        "train.py": "x", "a.log": "", "keep.log": "", "data/big.bin": "x", "src/cache/x": "", "src/m.py": "",
        ".git/config": "secret",
    })
    rels = [e.relpath for e in walk(root)]
    assert rels == [".dockerignore", "keep.log", "src/m.py", "train.py"]
    plan, _ = _plan(tmp_path / "q", {"requirements.txt": ""}, {})
    with project_context(plan, root) as ctx, tarfile.open(fileobj=ctx) as tar:
        names = tar.getnames()
    assert "project/train.py" in names and not any(".git" in n for n in names)


def test_tree_hash_sees_renames_modes_and_content_not_mtimes(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"a.py": "1", "b.py": "2"})
    h = tree_hash(root)
    os.utime(root / "a.py", (1, 1))
    assert tree_hash(root) == h
    (root / "a.py").rename(root / "c.py")
    h2 = tree_hash(root)
    assert h2 != h
    (root / "c.py").chmod(0o755)
    assert tree_hash(root) != h2
    (root / "c.py").chmod(0o644)
    assert tree_hash(root) == h2
    (root / "ignored.tmp").write_text("x")
    (root / ".dockerignore").write_text("*.tmp\n")
    h3 = tree_hash(root)
    (root / "ignored.tmp").write_text("changed")
    assert tree_hash(root) == h3


def test_tar_is_deterministic(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"a.py": "1", "d/b.py": "2"})
    plan, _ = _plan(tmp_path / "q", {"requirements.txt": ""}, {})
    blobs = []
    for _ in range(2):
        with project_context(plan, root) as ctx:
            blobs.append(ctx.read())
    assert blobs[0] == blobs[1]
    with tarfile.open(fileobj=io.BytesIO(blobs[0])) as tar:
        names = tar.getnames()
    assert names == ["Dockerfile", "project", "project/a.py", "project/d", "project/d/b.py"]
