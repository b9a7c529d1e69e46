"""Golden tests of the rendered Dockerfiles, and of the tree walk/hash that feeds the code layer.

Regenerate the golden files after a deliberate template change with DOCKRUN_UPDATE_GOLDEN=1.
"""
from __future__ import annotations

import dataclasses
import io
import os
import tarfile
from pathlib import Path

import pytest

from conftest import check_golden, write_project
from dockrun.config import load_settings
from dockrun.images.build import env_context, project_context
from dockrun.images.environment import env_spec
from dockrun.images.plan import env_dockerfile, env_scripts, plan_images, project_dockerfile
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
    check_golden(GOLDEN / name, text)


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
    plan, settings = _plan(tmp_path, {"conda.yaml": CONDA}, {"SSL_CERT_FILE": ca,
                           "DOCKRUN_MICROMAMBA_IMAGE": "mambaorg/micromamba:1.5.10-bookworm-slim"})
    assert plan.env.kind == "micromamba"
    _check("env-micromamba.Dockerfile", env_dockerfile(plan, settings))
    with env_context(plan, settings) as ctx, tarfile.open(fileobj=ctx) as tar:
        _check("environment.yml", tar.extractfile("environment.yml").read().decode())


def test_docker_env_project_template(tmp_path: Path) -> None:
    plan, settings = _plan(tmp_path, {"MLproject": "docker_env: {image: 'ghcr.io/org/img:1.2'}\n"}, {})
    assert not plan.env.needs_build and plan.env_image == "ghcr.io/org/img:1.2"
    _check("project-docker-env.Dockerfile", project_dockerfile(plan, settings))


def test_local_code_is_installed_in_the_project_image_with_host_settings_in_a_stage(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMARKER\n-----END CERTIFICATE-----\n")
    plan, settings = _plan(tmp_path, {"requirements.txt": "tabulate\n-e .\n./libs/helper\n",
                                      "pyproject.toml": "[project]\nname='p'\n",
                                      "libs/helper/setup.py": "", "train.py": ""},
                           {"SSL_CERT_FILE": str(ca), "PIP_INDEX_URL": "https://idx.example/simple"})
    assert plan.env.requirements == ("tabulate",) and plan.env.local_code == ("-e .", "./libs/helper")
    text = project_dockerfile(plan, settings)
    _check("project-local-code.Dockerfile", text)
    final = text.split("\nFROM ")[-1]
    assert "ca.pem" not in final and "PIP_INDEX_URL" not in final  # only the install stage has them
    with project_context(plan, tmp_path / "proj", settings) as ctx, tarfile.open(fileobj=ctx) as tar:
        assert "dockrun-ca.pem" in tar.getnames()


def test_no_secret_in_final_stage(tmp_path: Path, ca: str) -> None:
    plan, settings = _plan(tmp_path, {"requirements.txt": "x\n"},
                           {"SSL_CERT_FILE": ca, "PIP_INDEX_URL": "https://u:tok@mirror/simple"})
    text = env_dockerfile(plan, settings)
    final = text.rsplit("\nFROM ", 1)[1]
    assert "ca.pem" not in final and "ARG" not in final and "tok" not in text


def test_env_context_holds_only_env_files(tmp_path: Path) -> None:
    plan, settings = _plan(tmp_path, {"requirements.txt": "b\na # c\n", "train.py": "x"}, {})
    with env_context(plan, settings) as ctx, tarfile.open(fileobj=ctx) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "env.sh", "requirements.txt", "tools.sh"]
        assert tar.extractfile("requirements.txt").read() == b"a\nb\n"


def test_project_context_honours_dockerignore_never_git(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {
        ".dockerignore": "data/\n*.log\n!keep.log\n# comment\n**/cache\n",
        "train.py": "x", "a.log": "", "keep.log": "", "data/big.bin": "x", "src/cache/x": "", "src/m.py": "",
        ".git/config": "secret",
    })
    rels = [e.relpath for e in walk(root)]
    assert rels == [".dockerignore", "keep.log", "src/m.py", "train.py"]
    plan, settings = _plan(tmp_path / "q", {"requirements.txt": ""}, {})
    plan = dataclasses.replace(plan, source_key=tree_hash(root))  # this tree's plan
    with project_context(plan, root, settings) as ctx, tarfile.open(fileobj=ctx) as tar:
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
    plan, settings = _plan(tmp_path / "q", {"requirements.txt": ""}, {})
    plan = dataclasses.replace(plan, source_key=tree_hash(root))
    blobs = []
    for _ in range(2):
        with project_context(plan, root, settings) as ctx:
            blobs.append(ctx.read())
    assert blobs[0] == blobs[1]
    with tarfile.open(fileobj=io.BytesIO(blobs[0])) as tar:
        names = tar.getnames()
    assert names == ["Dockerfile", "project", "project/a.py", "project/d", "project/d/b.py"]


@pytest.mark.parametrize("name", ["my..proj", "a._b", "x__y", "-lead", "Ünïcode Project!", "a" * 300, "..", "a-_-b"])
def test_any_project_name_gives_a_valid_image_name(name: str) -> None:
    import re

    from dockrun.images.plan import repo_name

    component = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*")  # Docker's reference grammar
    got = repo_name(name)
    assert component.fullmatch(got) and len(f"dockrun-{got}") <= 80, got
    if len(name) > 100:
        assert repo_name(name) != repo_name(name[:-1] + "b")


def test_code_that_changed_since_its_key_was_taken_is_never_packed(tmp_path: Path) -> None:
    """The key is taken in prepare; an edit before the context is written would put other code
    under that key, reused forever after."""
    from dockrun.backends.databricks.submit import project_archive
    from dockrun.errors import SourceError

    plan, settings = _plan(tmp_path, {"requirements.txt": "", "train.py": "print(1)\n"}, {})
    root = tmp_path / "proj"
    with project_context(plan, root, settings):
        pass  # unchanged: fine
    (root / "train.py").write_text("print(2)\n")
    with pytest.raises(SourceError, match="files changed while dockrun was reading them"):
        project_context(plan, root, settings)
    with pytest.raises(SourceError, match="files changed while dockrun was reading them"):
        project_archive(root, plan.source_key)


def test_the_installer_is_pinned_so_a_key_means_one_environment(tmp_path: Path) -> None:
    plan, settings = _plan(tmp_path, {"requirements.txt": "tabulate\n"}, {})
    scripts = env_scripts(plan)  # what both build paths run: the classic Dockerfile and the build container
    assert "pip install --quiet uv==" in scripts["tools.sh"] and "UV_PYTHON_DOWNLOADS=never" in scripts["env.sh"]
    assert "COPY tools.sh" in env_dockerfile(plan, settings)
