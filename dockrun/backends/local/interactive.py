"""A local run's container with a terminal attached instead of an owner process: what ``dockrun
shell`` runs. The container is planned by the same ``container_spec`` as a run's and created through
the same adapter (so every -A option means the same), then docker's own CLI attaches to it: it
already handles raw terminals, window sizes and signal forwarding. No run record is kept: nothing
ran that a record could describe."""
from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable

from ...engine.client import ContainerSpec, Docker
from ...engine.lean import connect
from ...request import PreparedRun
from ...store.records import new_run_id
from ..handle import shielded
from .container import RunContext, container_spec, files_plan
from .files import STAGED, finish_files, make_run_dir, save_plan
from .runs import run_image
from .transfer import copy_in, save_sent

# bash where the image has it (history, line editing), else the sh every image has.
SHELL = ("sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi")


def shell_context(prepared: PreparedRun, image: str, shell_id: str, outputs: Path, remote: bool) -> RunContext:
    request = prepared.request
    return RunContext(
        run_id=shell_id, project=prepared.project.name, image=image, outputs=outputs,
        rendered=prepared.rendered, docker_env=prepared.project.docker_env, docker_args=request.docker_args,
        extra_env={"DOCKRUN_COMMAND": prepared.rendered.command},
        dev_root=prepared.source.root if request.dev else None, remote=remote,
    )


def shell_spec(prepared: PreparedRun, image: str, shell_id: str, outputs: Path, command: Sequence[str],
               tty: bool, remote: bool = False) -> ContainerSpec:
    """The run's container, with ``command`` (or a shell) in place of the entry point's, stdin
    open, and the entry point's command in $DOCKRUN_COMMAND so it can be tried by hand."""
    spec = container_spec(shell_context(prepared, image, shell_id, outputs, remote))
    return dataclasses.replace(spec, command=tuple(command) or SHELL, name=f"dockrun-shell-{shell_id}",
                               options={**spec.options, "stdin_open": True, "tty": tty,
                                        # not detached: the streams are marked for `docker start -ai`
                                        "detach": False})


Feedback = Callable[[], AbstractContextManager[Callable[[str], None]]]


def shell_image(prepared: PreparedRun, log: Callable[[str], None]) -> tuple[Docker, str]:
    """The engine and the ID of the image the prepared run would run in (built if it must be)."""
    docker = connect()
    _, image_id = run_image(prepared, docker, log)
    return docker, image_id


def run_attached(prepared: PreparedRun, image: tuple[Docker, str], cli: str, command: Sequence[str],
                 feedback: Feedback) -> int:
    """Run ``command`` (or an interactive shell) in the prepared run's container on ``image``
    (``shell_image``), attached with docker's CLI ``cli``; its exit code. The container is removed
    whatever happens; the output folder too, unless something was written. ``feedback`` shows a copy
    to a remote engine, as a build is shown, and is over before the terminal is handed over."""
    docker, image_id = image
    shell_id = new_run_id()
    outputs = prepared.settings.home / "shells" / shell_id / "outputs"
    # A terminal only when both ends are one: piped output stays a clean stdout/stderr pair.
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    spec = shell_spec(prepared, image_id, shell_id, outputs, command, tty, docker.remote)
    files = files_plan(shell_context(prepared, image_id, shell_id, outputs, docker.remote))
    make_run_dir(outputs.parent)
    outputs.mkdir()
    save_plan(outputs.parent, files)
    container = None
    try:
        container = docker.create(spec)
        if spec.copies:
            # A remote engine: the files a run would mount go in first and the writable ones come
            # back (docker's CLI attaches to the same engine: it reads the same DOCKER_HOST or context).
            with feedback() as log:
                save_sent(outputs.parent, copy_in(docker, container, spec.copies, log))
        code = _attach(cli, docker, container)
        # Outputs (and a remote engine's writable folders) come back and into place, as a run's do.
        lost = finish_files(docker, container, outputs.parent, code == 0, _say)
        if lost:
            _say(f"the shell's {lost.removeprefix('its ')}")
            return code or 1
        return code
    finally:
        with shielded():
            if container is not None:
                docker.remove(container)
            _tidy(outputs)


def _attach(cli: str, docker: Docker, container: Any) -> int:
    """Start the container attached to this terminal (docker's CLI forwards signals to it); the
    command's exit code."""
    # Ctrl-C belongs to the command in the container (docker forwards it); dockrun waits for the end.
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    proc = None
    try:
        proc = subprocess.Popen([cli, "start", "--attach", "--interactive", "--", container.id],
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        code = proc.wait()
    finally:
        if proc is not None and proc.poll() is None:  # SIGTERM reached dockrun: the container goes
            proc.kill()
            proc.wait()
        signal.signal(signal.SIGINT, old)
    found = docker.get_container(container.id)
    state = (found.attrs if found is not None else {}).get("State", {})
    if state.get("Status") == "exited":  # the command ran: its code, not the attaching CLI's
        return int(state.get("ExitCode", code))
    return code


def _say(line: str) -> None:
    sys.stderr.write(f"dockrun: {line}\n")


def _tidy(outputs: Path) -> None:
    """Keep the output folder only if the shell wrote something there, and say where."""
    if outputs.is_dir() and any(outputs.iterdir()):
        sys.stderr.write(f"dockrun: the shell's files in $DOCKRUN_OUTPUT_DIR are kept in {outputs}\n")
        return
    if (outputs.parent / STAGED).is_dir() and any((outputs.parent / STAGED).iterdir()):
        return  # an output that could not be put in place (said where it is kept)
    shutil.rmtree(outputs.parent, ignore_errors=True)
