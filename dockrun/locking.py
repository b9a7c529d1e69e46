"""``dockrun lock``: resolve an environment once into a lock file beside its environment file;
builds then install exactly that (images/requirements_lock.py, images/conda_lock.py read it).

A python environment gets ``requirements.lock`` (pinned, with hashes: ``uv pip compile
--generate-hashes``); a conda.yaml gets ``conda-lock.txt`` (conda's explicit list, ``URL#MD5``,
solved by the py-rattler installer the build uses, images/conda_install.py). The resolution runs
where the environment will be installed, in a container of the image that installs it, so
platform-specific wheels, markers and conda subdirs are those of the build, not of the host.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from .config import Settings
from .engine.client import CHECK_PREFIX
from .engine.lean import connect
from .errors import BuildError, ConfigError
from .images.conda_lock import conda_lock_digest, conda_lock_file, conda_lock_header
from .images.conda_spec import canonical_conda
from .images.kinds import CONDA, CONDA_INSTALLER, MICROMAMBA, UV, kind_of
from .images.requirements_lock import lock_file, lock_header, lock_input_digest
from .locks import write_atomic
from .prepare import prepare_image
from .project.resolve import is_git_uri, unquote_uri
from .project.spec import ProjectSpec
from .project.uri import is_archive_uri
from .request import RunRequest
from .terminal import printable

# The same pin as templates/env-uv.Dockerfile.j2: the lock is resolved by the uv that installs it.
UV_PIN = "uv==0.13.9"
CA_IN_CONTAINER = "/tmp/dockrun/ca.pem"
# The requirements arrive on stdin, so nothing of the host but the CA bundle is mounted.
SCRIPT = f"""set -e
mkdir -p /tmp/dockrun
cat > /tmp/dockrun/requirements.in
python3 -m venv /tmp/dockrun/tools
/tmp/dockrun/tools/bin/pip install --quiet --disable-pip-version-check {UV_PIN} >&2
cd /tmp/dockrun
exec /tmp/dockrun/tools/bin/uv pip compile --quiet --generate-hashes --no-header "$@" requirements.in
"""
# The same pin as templates/env-conda.Dockerfile.j2: the lock is solved by the installer that installs it.
RATTLER_PIN = "py-rattler==0.28.0"
# The installer's text is the first argument, the environment (as the build's environment.json) stdin.
CONDA_SCRIPT = f"""set -e
mkdir -p /tmp/dockrun
printf '%s' "$1" > /tmp/dockrun/conda_install.py
cat > /tmp/dockrun/environment.json
python3 -m venv /tmp/dockrun/tools
/tmp/dockrun/tools/bin/pip install --quiet --disable-pip-version-check --no-cache-dir {RATTLER_PIN} >&2
exec /tmp/dockrun/tools/bin/python /tmp/dockrun/conda_install.py --lock /tmp/dockrun/environment.json
"""


def lock_project(request: RunRequest, log: Callable[[str], None] = lambda line: None) -> Path:
    """Write the project's requirements.lock; returns its path."""
    log = _terminal_safe(log)
    uri = unquote_uri(request.uri)
    if is_archive_uri(uri) or is_git_uri(uri):  # the lock is written into the project: it must be ours
        raise ConfigError("dockrun lock: the project must be a local folder, not a Git URI or an archive")
    # The current lock is left out: a stale or broken one must not stop its own replacement.
    prepared = prepare_image(request, read_lock=False)
    settings, project, env = prepared.settings, prepared.project, prepared.env
    kind = kind_of(env.kind)
    if kind is MICROMAMBA:
        raise ConfigError("dockrun lock: conda projects are locked (and their locks installed) with the py-rattler "
                          "installer; unset DOCKRUN_MICROMAMBA_IMAGE")
    if kind is CONDA:
        return _lock_conda(prepared.project, env.conda or "", env.installer_image or env.base_image, settings, log)
    rel = lock_file(project)
    if kind is not UV or rel is None:
        raise ConfigError("dockrun lock: lock files are for python and conda environments (python_env.yaml, "
                          "requirements.txt, conda.yaml); this project's environment is none of them")
    assert project.env_file is not None
    connect().ensure_pulled(env.base_image, log)  # no engine or no image: one line, before any work
    log(f"resolving {project.env_file} in {env.base_image}")
    args = ["--python", "python3", *(["--python-version", env.python] if env.python else [])]
    body = _run(env.base_image, SCRIPT, args, "".join(r + "\n" for r in env.requirements), settings)
    path = project.root / rel
    _write(path, lock_header(project.env_file, lock_input_digest(env.python, env.requirements)) + body)
    return path


def _terminal_safe(log: Callable[[str], None]) -> Callable[[str], None]:
    """The lines say the project's file names and a registry's words: not dockrun's to print raw."""
    return lambda line: log(printable(line, tabs=True))


def _lock_conda(project: ProjectSpec, conda: str, image: str, settings: Settings, log: Callable[[str], None]) -> Path:
    """Solve the conda file (channels renamed as for a build) into conda's explicit list."""
    import json

    import yaml

    rel = project.env_file or "conda.yaml"
    connect().ensure_pulled(image, log)
    log(f"solving {rel} in {image}")
    body = _run(image, CONDA_SCRIPT, [CONDA_INSTALLER.read_text(encoding="utf-8")],
                json.dumps(yaml.safe_load(conda), sort_keys=True), settings)
    path = project.root / conda_lock_file(rel)
    _write(path, conda_lock_header(rel, conda_lock_digest(canonical_conda(project.root, rel)[0])) + body)
    return path


def _run(image: str, script: str, args: list[str], stdin: str, settings: Settings) -> str:
    """``script`` in a throwaway container of ``image`` with the host's CA and index settings, as a
    build's install stage gets them; its stdout."""
    cli = shutil.which("docker")
    if cli is None:
        raise ConfigError("dockrun lock: the docker command is not on PATH")
    if image.startswith("-"):  # docker would read it as an option (a refusal, not a quoting problem)
        raise ConfigError(f"dockrun lock: image {image!r}: an image reference cannot start with '-'")
    # Values joined to their flags and "--" before the image: nothing given can pass for an option.
    command = [cli, "run", "--rm", "-i", "--env=UV_NO_CACHE=1", "--env=UV_PYTHON_DOWNLOADS=never",
               "--env=UV_PYTHON_PREFERENCE=only-system"]
    if settings.ca_bundle is not None:
        command += [f"--volume={settings.ca_bundle.resolve()}:{CA_IN_CONTAINER}:ro",
                    f"--env=SSL_CERT_FILE={CA_IN_CONTAINER}", f"--env=PIP_CERT={CA_IN_CONTAINER}"]
    # Index and proxy settings, as a build gets them. By name only: docker's CLI takes each value from
    # its own environment, so an index token never sits in an argv every local user can read (ps).
    for name in settings.build_args:
        command += [f"--env={name}"]
    command += ["--", image, "sh", "-c", script, "dockrun-lock", *args]
    proc = subprocess.run(command, input=stdin, capture_output=True, text=True,
                          env={**os.environ, **settings.build_args})
    if proc.returncode != 0:
        said = [line[len(CHECK_PREFIX):] for line in proc.stdout.splitlines() if line.startswith(CHECK_PREFIX)]
        if said:  # the conda installer explains itself in one line
            raise BuildError(f"dockrun lock: {said[-1]}")
        tail = [line for line in proc.stderr.splitlines() if line.strip()][-15:]
        # The first line is the error the CLI prints last; the resolver's own explanation comes before it.
        raise BuildError("\n".join([f"dockrun lock: resolving the requirements in {image} failed "
                                    f"(exit {proc.returncode})", *tail]))
    return proc.stdout


def _write(path: Path, text: str) -> None:
    write_atomic(path, text, mode=0o644)  # a lock is read by every build: never leave half of one
