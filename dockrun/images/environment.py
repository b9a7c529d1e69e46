"""An environment as a frozen value (EnvSpec), the choice of its kind, and its two keys.

An EnvSpec's identity is a SHA-256 over its canonical form (dependencies parsed, normalised,
de-duplicated and sorted: images/requirements.py, images/conda_spec.py, the lock modules), the base
image, and the text of the templates and installer that install its kind (images/kinds.py):

- the **environment key** (``environment_key``): the same for every backend; the run record's
  ``env_key``;
- the **image key** (``image_key``): the same plus the base image's content identity, where images
  are built on it; it names the images and is their ``dockrun.env-hash`` label.

Equivalent files give the same keys; any real change gives new ones.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

from ..config import DEFAULT_CONDA_BASE, DEFAULT_PYTHON, EXAMPLE_MICROMAMBA_IMAGE, Settings
from ..errors import ConfigError
from ..project.spec import ProjectSpec
from . import kinds, templates
from .kinds import AUTO, CONDA, DOCKER, ENV_MANAGERS, MANAGERS, MICROMAMBA, SYSTEM, UV

KEY_SCHEMA = 1  # bump when the meaning of a key changes


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What to install, on what. ``kind``: a row of images/kinds.py (uv, conda with py-rattler,
    micromamba, docker, system); the kind names the installer, so it is part of the keys."""

    kind: str
    base_image: str
    python: str | None = None  # major.minor, for uv
    requirements: tuple[str, ...] = ()  # canonical PEP 508 lines, for uv
    conda: str | None = None  # canonical environment.yml text, for conda and micromamba
    micromamba_image: str | None = None
    # conda: the image whose python3 runs the installer (the install stage only, never the final).
    installer_image: str | None = None
    # The project's own code to install (`-e .`, `./libs/pkg`): in the project image, after the
    # code, so it is not part of the environment's key (the source key covers those files).
    local_code: tuple[str, ...] = ()
    # uv with a requirements.lock: its canonical lines (``name==version --hash=...``), installed
    # exactly, with hashes required and no resolution; None: no lock, resolve ``requirements``.
    # conda with a conda-lock.txt: its canonical explicit lines (images/conda_lock.py).
    lock: tuple[str, ...] | None = None
    # OS packages from an apt.txt beside the environment file (images/os_packages.py), sorted.
    apt: tuple[str, ...] = ()

    @property
    def needs_build(self) -> bool:
        return kinds.kind_of(self.kind).needs_build

    @property
    def mlflow_env(self) -> str:
        """MLflow's name for how it was made (the ``mlflow.project.env`` tag)."""
        return kinds.kind_of(self.kind).mlflow_env

    def digest(self, install_text: str = "", base_id: str | None = None) -> str:
        """SHA-256 over the canonical form, the text that installs it and, with ``base_id``, the
        base image's content identity: what both keys are made of (``environment_key``,
        ``image_key``)."""
        canonical = {
            "schema": KEY_SCHEMA,
            "kind": self.kind,
            "base": self.base_image,
            "python": self.python,
            "requirements": list(self.requirements),
            "conda": self.conda,
            "micromamba": self.micromamba_image,
            "template": hashlib.sha256(install_text.encode()).hexdigest(),
        }
        if self.installer_image is not None:  # only where used: other kinds keep their keys
            canonical["installer_image"] = self.installer_image
        if self.lock is not None:
            canonical["lock"] = list(self.lock)
        if self.apt:  # only where asked for: other environments keep their keys
            canonical["apt"] = list(self.apt)
        if base_id is not None:
            canonical["base_id"] = base_id
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def environment_key(env: EnvSpec) -> str:
    """The environment key: the same for every backend (the run record's ``env_key``). The
    canonical environment and the text of what installs its kind, so a template change makes a
    new key for every backend alike."""
    return env.digest(install_text(env))


def image_key(env: EnvSpec, base_id: str | None) -> str:
    """The image key, which names the images and is their ``dockrun.env-hash`` label: the
    environment key's inputs plus the base image's content identity (registry digest or image ID)
    where images are built on it, so a base image tag moved to other content builds anew. Without
    ``base_id`` (not resolved) it is the environment key."""
    return env.digest(install_text(env), base_id)


def install_text(env: EnvSpec) -> str:
    """What installs the environment, as text: its kind's templates and installer, then the
    project template (which installs local code into it)."""
    kind = kinds.kind_of(env.kind)
    text = "".join(templates.template_source(name) for name in kind.templates)
    if kind.installer is not None:
        text += kind.installer.read_text(encoding="utf-8")
    return text + templates.template_source(kinds.PROJECT_TEMPLATE)


def env_spec(project: ProjectSpec, settings: Settings, env_manager: str = "auto", read_lock: bool = True) -> EnvSpec:
    """The environment ``project`` runs in, given the user's ``--env-manager`` choice. With
    ``read_lock`` (always, except for `dockrun lock`, which must work past a stale or broken lock
    to replace it) a requirements.lock beside a python environment file is what gets installed.
    An apt.txt beside the environment file adds OS packages to a built environment."""
    spec = _env_spec(project, settings, env_manager, read_lock)
    if not spec.needs_build:
        return spec
    from .os_packages import read_apt_file  # here: most projects have none

    return dataclasses.replace(spec, apt=read_apt_file(project.root, project.env_file))


def _env_spec(project: ProjectSpec, settings: Settings, env_manager: str, read_lock: bool) -> EnvSpec:
    if env_manager not in ENV_MANAGERS:
        raise ConfigError(f"--env-manager: expected one of {', '.join(ENV_MANAGERS)}, got {env_manager!r}")
    declared = project.env_kind
    if env_manager == "conda" and declared == "python":  # as mlflow run refuses it
        raise ConfigError("--env-manager conda: a python_env project cannot be installed with conda; "
                          "use --env-manager virtualenv or local")
    kind = AUTO[declared] if env_manager == "auto" else MANAGERS[env_manager]
    if declared == "docker":
        if kind not in (DOCKER, SYSTEM):
            raise ConfigError(f"--env-manager {env_manager}: the project declares docker_env; use auto or local")
        assert project.docker_env is not None
        return EnvSpec(kind=DOCKER.name, base_image=project.docker_env.image)
    if kind is SYSTEM:
        return EnvSpec(kind=SYSTEM.name, base_image=_python_base(settings, None))
    if kind.reads == "conda":
        if declared != "conda":
            raise ConfigError(f"--env-manager {env_manager}: the project has no conda environment file")
        if kind is MICROMAMBA and not settings.micromamba_image:
            raise ConfigError(f"--env-manager micromamba: DOCKRUN_MICROMAMBA_IMAGE is not set; set it to an "
                              f"image with /bin/micromamba (e.g. {EXAMPLE_MICROMAMBA_IMAGE}), or use "
                              "--env-manager conda (installs with py-rattler from PyPI)")
        return _conda_spec(project, settings, read_lock)
    return _uv_spec(project, settings, read_lock)


def _conda_spec(project: ProjectSpec, settings: Settings, read_lock: bool) -> EnvSpec:
    """conda.yaml installed as conda does: with py-rattler, or micromamba where
    DOCKRUN_MICROMAMBA_IMAGE is set."""
    # Each kind's readers are imported by its spec: a docker_env run needs none of them.
    from .conda_lock import conda_lock_file, read_conda_lock
    from .conda_spec import canonical_conda

    rel = project.env_file or "conda.yaml"
    conda, local = canonical_conda(project.root, rel, settings.conda_channel_map)
    base = settings.base_image or DEFAULT_CONDA_BASE
    # conda-lock.txt beside it (conda's explicit list, `dockrun lock`): installed exactly, keyed.
    lock = read_conda_lock(project.root, rel, lambda: canonical_conda(project.root, rel)[0]) if read_lock else None
    if settings.micromamba_image:
        if lock is not None:
            raise ConfigError(f"{conda_lock_file(rel)}: installing a conda lock needs the py-rattler installer; "
                              "unset DOCKRUN_MICROMAMBA_IMAGE (or delete the lock)")
        return EnvSpec(kind=MICROMAMBA.name, base_image=base, conda=conda,
                       micromamba_image=settings.micromamba_image, local_code=local)
    # The installer needs a python3: the base image's when one is given (it must have it),
    # else the default Python image; the prefix it makes does not depend on that Python.
    return EnvSpec(kind=CONDA.name, base_image=base, conda=conda, local_code=local,
                   installer_image=settings.base_image or _python_base(settings, None), lock=lock)


def _uv_spec(project: ProjectSpec, settings: Settings, read_lock: bool) -> EnvSpec:
    """python_env.yaml, requirements.txt, or a conda.yaml's PyPI-installable part, installed by uv."""
    from .conda_spec import conda_to_pypi
    from .requirements import canonical_requirements, python_env, split_local
    from .requirements_lock import has_hashes, lock_file, lock_input_digest, read_lock_file

    declared = project.env_kind
    if declared == "python":
        python, reqs = python_env(project.root, project.env_file or "python_env.yaml", settings.yaml_cache)
    elif declared == "requirements" and has_hashes(project.root, "requirements.txt"):
        # pip-compile --generate-hashes output is a lock already: install exactly it.
        lock = read_lock_file(project.root, "requirements.txt", "", "requirements.txt")
        return EnvSpec(kind=UV.name, base_image=_python_base(settings, None), lock=lock)
    elif declared == "requirements":
        python, reqs = None, canonical_requirements(project.root, "requirements.txt")
    elif declared == "conda":
        python, reqs = conda_to_pypi(project.root, project.env_file or "conda.yaml")
    else:  # --env-manager uv with nothing declared
        python, reqs = None, ()
    reqs, local = split_local(reqs)
    lock = None
    lock_rel = lock_file(project)
    if read_lock and lock_rel and (project.root / lock_rel).is_file():
        lock = read_lock_file(project.root, lock_rel, lock_input_digest(python, reqs), project.env_file or "")
    return EnvSpec(kind=UV.name, base_image=_python_base(settings, python), python=python, requirements=reqs,
                   local_code=local, lock=lock)


def _python_base(settings: Settings, python: str | None) -> str:
    return settings.base_image or f"python:{python or DEFAULT_PYTHON}-slim"

