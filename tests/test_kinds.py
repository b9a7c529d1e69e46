"""The table of environment kinds (images/kinds.py) is what the rest reads: a row is enough for a
kind to be planned, keyed, given its build inputs and named to MLflow (no Docker)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import write_project
from dockrun.config import load_settings
from dockrun.images import kinds
from dockrun.images.environment import EnvSpec, env_spec, environment_key, image_key
from dockrun.images.inputs import env_inputs
from dockrun.images.plan import LABEL_IMAGE_KEY, env_dockerfile, env_scripts, plan_images, project_dockerfile
from dockrun.images.templates import templates_dir
from dockrun.project.folder import resolve_folder
from dockrun.project.spec import load_project


def test_every_row_is_complete_and_every_name_leads_to_one() -> None:
    for name, kind in kinds.KINDS.items():
        assert kind.name == name and kind.mlflow_env
        for template in kind.templates:
            assert (templates_dir() / template).is_file(), template
        if kind.needs_build:
            assert kind.reads and kind.env_file and kind.prefix
        if kind.installer is not None:
            assert kind.installer.is_file()
    assert set(kinds.MANAGERS.values()) <= set(kinds.KINDS.values())
    assert set(kinds.AUTO) == {"conda", "python", "requirements", "docker", "none"}  # ProjectSpec.env_kind
    assert kinds.ENV_MANAGERS[0] == "auto" and len(set(kinds.ENV_MANAGERS)) == len(kinds.ENV_MANAGERS)
    assert {k.mlflow_env for k in (kinds.CONDA, kinds.MICROMAMBA)} == {"conda"} and kinds.SYSTEM.mlflow_env == "local"


def test_a_new_kind_is_one_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A kind that installs requirements with uv's template under another name: nothing but the row.
    row = dataclasses.replace(kinds.UV, name="uv-again", mlflow_env="virtualenv")
    monkeypatch.setitem(kinds.KINDS, row.name, row)
    root = write_project(tmp_path / "p", {"requirements.txt": "tabulate\n-e .\n", "pyproject.toml": "[project]\n"})
    settings = load_settings({"DOCKRUN_BASE_IMAGE": "base:1"})
    project = load_project(root)
    uv = env_spec(project, settings)
    new = dataclasses.replace(uv, kind=row.name)
    assert new.needs_build and new.mlflow_env == "virtualenv"
    assert environment_key(new) != environment_key(uv)  # the kind is part of the key
    plan = plan_images(project, resolve_folder(str(root)), new, settings, "sha256:" + "2" * 64)
    assert plan.image_key == image_key(new, "sha256:" + "2" * 64) != plan.env_key == environment_key(new)
    assert plan.env_labels == {LABEL_IMAGE_KEY: plan.image_key} and plan.env_image.endswith(plan.image_key[:32])
    assert "FROM base:1" in env_dockerfile(plan, settings) and set(env_scripts(plan)) == {"tools.sh", "env.sh", "os.sh"}
    assert set(env_inputs(plan)) == {"tools.sh", "env.sh", "requirements.txt"}
    assert "pip install" in project_dockerfile(plan, settings) and "/opt/dockrun/venv/bin/python" in \
        project_dockerfile(plan, settings)  # local code goes into the row's prefix


def test_the_image_key_is_the_environment_key_where_no_base_was_looked_up() -> None:
    env = EnvSpec(kind="uv", base_image="base:1", requirements=("tabulate",))
    assert image_key(env, None) == environment_key(env) != image_key(env, "sha256:" + "3" * 64)
