"""``dockrun lock``: resolve a python environment once, with hashes, into a requirements.lock
beside its environment file; builds then install exactly that (images/environment.py reads it).

The resolution runs where the environment will be installed, in a container of the base image, so
platform-specific wheels and markers are those of the build, not of the host.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

from .engine.client import Docker
from .errors import BuildError, ConfigError
from .images.environment import lock_file, lock_header, lock_input_digest
from .prepare import prepare_image
from .project.archive import is_archive_uri
from .project.resolve import is_git_uri, unquote_uri
from .request import RunRequest

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


def lock_project(request: RunRequest, log: Callable[[str], None] = lambda line: None) -> Path:
    """Write the project's requirements.lock; returns its path."""
    uri = unquote_uri(request.uri)
    if is_archive_uri(uri) or is_git_uri(uri):  # the lock is written into the project: it must be ours
        raise ConfigError("dockrun lock: the project must be a local folder, not a Git URI or an archive")
    # The current lock is left out: a stale or broken one must not stop its own replacement.
    prepared = prepare_image(request, read_lock=False)
    settings, project, env = prepared.settings, prepared.project, prepared.env
    rel = lock_file(project)
    if env.kind != "uv" or rel is None:
        raise ConfigError("dockrun lock: lock files are for python environments (python_env.yaml or "
                          "requirements.txt) for now; this project's environment is not one")
    assert project.env_file is not None
    Docker().ensure_pulled(env.base_image, log)  # no engine or no image: one line, before any work
    log(f"resolving {project.env_file} in {env.base_image}")
    body = _compile(env.base_image, env.requirements, env.python, settings.ca_bundle, settings.build_args)
    path = project.root / rel
    _write(path, lock_header(project.env_file, lock_input_digest(env.python, env.requirements)) + body)
    return path


def _compile(image: str, requirements: tuple[str, ...], python: str | None, ca_bundle: Path | None,
             build_args: Mapping[str, str]) -> str:
    cli = shutil.which("docker")
    if cli is None:
        raise ConfigError("dockrun lock: the docker command is not on PATH")
    args = [cli, "run", "--rm", "-i", "-e", "UV_NO_CACHE=1", "-e", "UV_PYTHON_DOWNLOADS=never",
            "-e", "UV_PYTHON_PREFERENCE=only-system"]
    if ca_bundle is not None:
        args += ["-v", f"{ca_bundle.resolve()}:{CA_IN_CONTAINER}:ro",
                 "-e", f"SSL_CERT_FILE={CA_IN_CONTAINER}", "-e", f"PIP_CERT={CA_IN_CONTAINER}"]
    for name, value in build_args.items():  # index and proxy settings, as a build gets them
        args += ["-e", f"{name}={value}"]
    args += [image, "sh", "-c", SCRIPT, "dockrun-lock", "--python", "python3"]
    if python:
        args += ["--python-version", python]
    proc = subprocess.run(args, input="".join(r + "\n" for r in requirements), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.splitlines() if line.strip()][-15:]
        # The first line is the error the CLI prints last; uv's own explanation comes before it.
        raise BuildError("\n".join([f"dockrun lock: resolving the requirements in {image} failed "
                                    f"(exit {proc.returncode})", *tail]))
    return proc.stdout


def _write(path: Path, text: str) -> None:
    # A lock is read by every build: never leave half of one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".requirements.lock.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
