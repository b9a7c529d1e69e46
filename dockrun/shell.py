"""``dockrun shell``: a shell, or one command, in the image a run would use, as the run would see
it (user, working directory, variables, mounts): prepared as a local run is, then run attached to
this terminal by the local backend (backends/local/interactive.py)."""
from __future__ import annotations

import shutil
from collections.abc import Sequence

from .backends import get_backend
from .backends.local.interactive import run_attached, shell_image
from .errors import ConfigError
from .images.feedback import build_feedback
from .prepare import fetch_inputs, prepare
from .request import RunRequest


def open_shell(request: RunRequest, command: Sequence[str] = (), quiet: bool = False, verbose: bool = False) -> int:
    """Run ``command`` (or an interactive shell) in the project's container; its exit code."""
    cli = shutil.which("docker")
    if cli is None:
        raise ConfigError("dockrun shell: the docker command is not on PATH (it attaches the terminal)")
    prepared = prepare(request, get_backend("local"), command_needed=False)
    with build_feedback(quiet, verbose=verbose) as log:
        prepared = fetch_inputs(prepared, log)
        image = shell_image(prepared, log)
    # The build's display is over before the terminal is the container's.
    return run_attached(prepared, image, cli, command, lambda: build_feedback(quiet, verbose=verbose))
