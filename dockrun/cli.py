"""Command line: parse arguments, call one library function, turn errors into exit codes."""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback
from typing import Any, NoReturn

import click

from .errors import DockrunError, ExecutionError, Interrupted, printable

# Kept here, not imported from images.environment: `dockrun --help` must stay fast.
ENV_MANAGERS = ["auto", "local", "virtualenv", "conda", "uv", "micromamba", "none"]
ENV_MANAGER_HELP = ("As in mlflow run: local = the image's own Python, nothing installed; virtualenv = a Python "
                    "environment (made with uv); conda = a conda prefix (py-rattler from PyPI; micromamba "
                    "when DOCKRUN_MICROMAMBA_IMAGE is set); micromamba = always micromamba. auto: conda.yaml -> conda, "
                    "python_env.yaml / requirements.txt -> virtualenv, docker_env -> its image. none = local.")


TRUST_HELP = ("Give a project from a Git URI or an archive the host access its MLproject asks for (docker_env "
              "volumes and host variables); without it such a project is refused. A local folder's is always given.")
VERBOSE_HELP = "The engine's whole build log (without it: one line per image built; a failing step's output)."
DEV_HELP = ("Mount the project folder at the project root instead of baking it into an image: edits are "
            "live on the next run, nothing is built for the code (local folders only).")


class _OneLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        for line in record.getMessage().splitlines() or [""]:
            sys.stderr.write(f"dockrun: {record.levelname.lower()}: {printable(line, tabs=True)}\n")


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        if key in out:  # as mlflow run: which of the two was meant is not ours to guess
            raise click.UsageError(f"{flag} {key}: given more than once")
        out[key] = value
    return out


def _backend_config(value: str | None) -> Any:
    if not value:
        return None
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            text, where = f.read(), value
    elif value.lstrip()[:1] in ("{", "["):
        text, where = value, "--backend-config"
    else:  # neither a file nor JSON text: most likely a file name with a typo
        raise click.UsageError(f"--backend-config {value}: no such file (expected a JSON file or a JSON object)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise click.UsageError(f"{where}: not valid JSON ({e.msg} at line {e.lineno})") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dockrun", message="dockrun %(version)s")
def cli() -> None:
    """Run MLflow Projects in Docker containers."""


@cli.command()
@click.argument("uri")
@click.option("-e", "--entry-point", default="main", show_default=True, help="Entry point name or .py/.sh path.")
@click.option("-v", "--version", "version", help="Git commit, branch or tag (Git URIs only).")
@click.option("-P", "--param-list", "params", multiple=True, metavar="KEY=VALUE", help="A parameter (repeatable).")
@click.option("-A", "--docker-args", "docker_args", multiple=True, metavar="KEY[=VALUE]",
              help="A docker run option, e.g. gpus=all, network=host, shm-size=1g (repeatable).")
@click.option("-b", "--backend", default="local", show_default=True, help="local, databricks or kubernetes.")
@click.option("-c", "--backend-config", help="databricks: a cluster spec; kubernetes: MLflow's kubernetes_config.json "
              "(a JSON file or string).")
@click.option("--env-manager", default="auto", show_default=True, type=click.Choice(ENV_MANAGERS),
              help=ENV_MANAGER_HELP)
@click.option("--base-image", help="Base image for built environments (also DOCKRUN_BASE_IMAGE).")
@click.option("--rebuild", is_flag=True, help="Ignore cached images.")
@click.option("--storage-dir", help="Where s3:// and dbfs:// path parameters are downloaded.")
@click.option("--experiment-name")
@click.option("--experiment-id")
@click.option("--run-name")
@click.option("--tracking-uri")
@click.option("--run-id", "mlflow_run_id", help="Log into this existing MLflow run (as mlflow run --run-id).")
@click.option("--build-image", is_flag=True, hidden=False,
              help="Accepted for mlflow run compatibility: dockrun always builds the code into the image.")
@click.option("--detach", is_flag=True, help="Print the run ID and return at once.")
@click.option("--dev", is_flag=True, help=DEV_HELP)
@click.option("--trust", is_flag=True, help=TRUST_HELP)
@click.option("-q", "--quiet", is_flag=True, help="No build output.")
@click.option("--verbose", is_flag=True, help=VERBOSE_HELP)
def run(uri: str, entry_point: str, version: str | None, params: tuple[str, ...], docker_args: tuple[str, ...],
        backend: str, backend_config: str | None, env_manager: str, base_image: str | None, rebuild: bool,
        storage_dir: str | None, experiment_name: str | None, experiment_id: str | None,
        run_name: str | None, tracking_uri: str | None, mlflow_run_id: str | None, build_image: bool,
        detach: bool, dev: bool, trust: bool, quiet: bool, verbose: bool) -> None:
    """Run the project at URI (a folder or a Git URI, optionally #subdirectory)."""
    from pathlib import Path

    from .api import submit
    from .request import RunRequest

    request = RunRequest(
        uri=uri, entry_point=entry_point, version=version, parameters=_pairs(params, "-P"),
        docker_args=docker_args, backend=backend, backend_config=_backend_config(backend_config),
        env_manager=env_manager, synchronous=not detach, experiment_name=experiment_name,
        experiment_id=experiment_id, run_name=run_name, tracking_uri=tracking_uri, mlflow_run_id=mlflow_run_id,
        storage_dir=Path(storage_dir).expanduser().resolve() if storage_dir else None, base_image=base_image,
        rebuild=rebuild, cwd=Path.cwd(), dev=dev, trust=trust,
    )
    submitted = submit(request, quiet=quiet, verbose=verbose)
    if detach:
        click.echo(submitted.run_id)


@cli.command("sweep")
@click.argument("uri", required=False)
@click.option("-e", "--entry-point", default="main", show_default=True, help="Entry point name or .py/.sh path.")
@click.option("-v", "--version", "version", help="Git commit, branch or tag (Git URIs only).")
@click.option("-P", "--param-list", "params", multiple=True, metavar="KEY=V1,V2,...",
              help="A parameter's values (repeatable): every combination runs.")
@click.option("--grid", "grid_file", metavar="FILE", help="The points from a file instead: JSON (a list of objects) "
              "or CSV (a header of parameter names, a row per run).")
@click.option("-A", "--docker-args", "docker_args", multiple=True, metavar="KEY[=VALUE]",
              help="A docker run option, as for run (repeatable).")
@click.option("-b", "--backend", default="local", show_default=True, help="local, databricks or kubernetes.")
@click.option("-c", "--backend-config", help="As for run.")
@click.option("--env-manager", default="auto", show_default=True, type=click.Choice(ENV_MANAGERS),
              help=ENV_MANAGER_HELP)
@click.option("--base-image", help="Base image for built environments (also DOCKRUN_BASE_IMAGE).")
@click.option("--experiment-name")
@click.option("--parallel", default=4, show_default=True, help="At most this many runs at once.")
@click.option("--resume", metavar="SWEEP", help="Run what did not finish in this sweep (its points and options).")
@click.option("--sort", metavar="METRIC", help="Sort the table by a metric the runs wrote (-METRIC: descending).")
@click.option("-q", "--quiet", is_flag=True, help="No build output.")
@click.option("--verbose", is_flag=True, help=VERBOSE_HELP)
def sweep_cmd(uri: str | None, entry_point: str, version: str | None, params: tuple[str, ...],
              grid_file: str | None, docker_args: tuple[str, ...], backend: str, backend_config: str | None,
              env_manager: str, base_image: str | None, experiment_name: str | None, parallel: int,
              resume: str | None, sort: str | None, quiet: bool, verbose: bool) -> None:
    """Run the project at URI for every combination of parameter values, at most --parallel at once,
    on any backend; print a table of each run's parameters, status and metrics (what it wrote to
    metrics.json or metrics.csv in $DOCKRUN_OUTPUT_DIR). Exit 1 if a run did not finish."""
    from pathlib import Path

    from .request import RunRequest
    from .sweep import grid_points, parse_axes, read_points, sweep, table

    if not uri and not resume:
        raise click.UsageError("missing URI (or --resume SWEEP)")
    points = read_points(grid_file) if grid_file else grid_points(parse_axes(params))
    template = RunRequest(uri=uri or "", entry_point=entry_point, version=version, docker_args=docker_args,
                          backend=backend, backend_config=_backend_config(backend_config), env_manager=env_manager,
                          base_image=base_image, experiment_name=experiment_name, cwd=Path.cwd())
    from .images.feedback import build_feedback

    with build_feedback(quiet, verbose=verbose) as log:
        result = sweep(template, points, parallel, resume, log=log)
    click.echo(f"sweep {result.sweep_id}")
    click.echo(table(result, sort))
    if not result.ok:
        raise SystemExit(1)


@cli.command("build")
@click.argument("uri")
@click.option("-v", "--version", "version", help="Git commit, branch or tag (Git URIs only).")
@click.option("--tag", help="Also tag the project image as REF.")
@click.option("--push", is_flag=True, help="Push the image (skipped when the registry has that tag).")
@click.option("--rebuild", is_flag=True, help="Ignore cached images.")
@click.option("--env-manager", default="auto", show_default=True, type=click.Choice(ENV_MANAGERS),
              help=ENV_MANAGER_HELP)
@click.option("--base-image", help="Base image for built environments (also DOCKRUN_BASE_IMAGE).")
@click.option("-q", "--quiet", is_flag=True, help="No build output.")
@click.option("--verbose", is_flag=True, help=VERBOSE_HELP)
def build_cmd(uri: str, version: str | None, tag: str | None, push: bool, rebuild: bool, env_manager: str,
              base_image: str | None, quiet: bool, verbose: bool) -> None:
    """Build the project's image (environment + code) and print its reference."""
    from .building import build_project
    from .request import RunRequest

    request = RunRequest(uri=uri, version=version, env_manager=env_manager, base_image=base_image, rebuild=rebuild)
    ref = build_project(request, tag=tag, push=push, quiet=quiet, verbose=verbose)
    click.echo(ref)


@cli.command("lock")
@click.argument("uri")
@click.option("--env-manager", default="auto", show_default=True, type=click.Choice(ENV_MANAGERS),
              help=ENV_MANAGER_HELP)
@click.option("--base-image", help="Base image to resolve in, as builds install (also DOCKRUN_BASE_IMAGE).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def lock_cmd(uri: str, env_manager: str, base_image: str | None, quiet: bool) -> None:
    """Write requirements.lock (pinned, with hashes) beside the project's python_env.yaml or
    requirements.txt; builds then install exactly it. Local folders only."""
    from .locking import lock_project
    from .request import RunRequest

    request = RunRequest(uri=uri, env_manager=env_manager, base_image=base_image)
    path = lock_project(request, log=(lambda line: None) if quiet else (lambda line: click.echo(line, err=True)))
    click.echo(path)


@cli.command("shell")
@click.argument("uri")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD ...]")
@click.option("-v", "--version", "version", help="Git commit, branch or tag (Git URIs only).")
@click.option("-e", "--entry-point", default="main", show_default=True,
              help="Entry point whose path parameters are mounted; its command is in $DOCKRUN_COMMAND.")
@click.option("-P", "--param-list", "params", multiple=True, metavar="KEY=VALUE", help="A parameter (repeatable).")
@click.option("-A", "--docker-args", "docker_args", multiple=True, metavar="KEY[=VALUE]",
              help="A docker run option, as for run (repeatable).")
@click.option("--env-manager", default="auto", show_default=True, type=click.Choice(ENV_MANAGERS),
              help=ENV_MANAGER_HELP)
@click.option("--base-image", help="Base image for built environments (also DOCKRUN_BASE_IMAGE).")
@click.option("--dev", is_flag=True, help=DEV_HELP)
@click.option("--trust", is_flag=True, help=TRUST_HELP)
@click.option("-q", "--quiet", is_flag=True, help="No build output.")
@click.option("--verbose", is_flag=True, help=VERBOSE_HELP)
def shell_cmd(uri: str, command: tuple[str, ...], version: str | None, entry_point: str, params: tuple[str, ...],
              docker_args: tuple[str, ...], env_manager: str, base_image: str | None, dev: bool, trust: bool,
              quiet: bool, verbose: bool) -> None:
    """A shell (bash if the image has it, else sh), or CMD, in the project's image, as a run of the
    entry point would see it: same user, working directory, variables and mounts. Exits with CMD's
    exit code; the container is removed."""
    from pathlib import Path

    from .request import RunRequest
    from .shell import open_shell

    request = RunRequest(uri=uri, entry_point=entry_point, version=version, parameters=_pairs(params, "-P"),
                         docker_args=docker_args, env_manager=env_manager, base_image=base_image, cwd=Path.cwd(),
                         dev=dev, trust=trust)
    sys.exit(open_shell(request, command, quiet=quiet, verbose=verbose))


@cli.group()
def runs() -> None:
    """Inspect, follow, wait for and cancel runs."""


@runs.command("list")
@click.option("-n", "--limit", default=20, show_default=True, help="How many of the latest runs.")
@click.option("--all", "every", is_flag=True, help="Every run.")
def runs_list(limit: int, every: bool) -> None:
    """The latest runs, newest first."""
    from .views import list_table

    click.echo(list_table(0 if every else limit))


@runs.command("show")
@click.argument("run_id")
def runs_show(run_id: str) -> None:
    """The run's full record (JSON), with what its image installed ("environment": Python and every
    package with its version; for conda also the explicit list)."""
    from .views import show_json

    click.echo(show_json(run_id))


@runs.command("rerun")
@click.argument("run")
@click.option("-P", "--param-list", "params", multiple=True, metavar="KEY=VALUE",
              help="Change one parameter's value (repeatable); the rest are the run's.")
@click.option("--detach", is_flag=True, help="Print the new run's ID and return at once.")
@click.option("-q", "--quiet", is_flag=True, help="No build output.")
def runs_rerun(run: str, params: tuple[str, ...], detach: bool, quiet: bool) -> None:
    """Run RUN again exactly: the same source (commit or content hash), entry point, parameters,
    options and image (by content ID; rebuilt from the same source and lock if gone, saying whether
    it installed the same). RUN is a run ID or a file `dockrun runs show` wrote (another machine's
    run: its image comes from DOCKRUN_REGISTRY)."""
    from .rerun import rerun

    handle = rerun(run, _pairs(params, "-P"), synchronous=not detach, log=(lambda line: None) if quiet else None)
    if detach:
        click.echo(handle.run_id)


@runs.command("logs")
@click.argument("run_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the run is over.")
def runs_logs(run_id: str, follow: bool) -> None:
    """The run's output (stdout to stdout, stderr to stderr)."""
    from .api import get_run

    run = get_run(run_id)
    try:
        run.follow(sys.stdout.buffer, sys.stderr.buffer, follow=follow)
    except KeyboardInterrupt:  # stops following; the run goes on
        sys.exit(130)


@runs.command("wait")
@click.argument("run_id")
def runs_wait(run_id: str) -> None:
    """Wait until the run is over; exit 0 if it FINISHED, else 1."""
    from .api import get_run
    from .backends.handle import ended_error

    run = get_run(run_id)
    if not run.wait():
        raise ended_error(run.record())
    click.echo(f"{run.run_id} FINISHED")


@runs.command("cancel")
@click.argument("run_id")
def runs_cancel(run_id: str) -> None:
    """Stop the run's container, remove it, record KILLED."""
    from .api import get_run

    run = get_run(run_id)
    run.cancel()
    click.echo(f"{run.run_id} {run.get_status()}")


@cli.group()
def images() -> None:
    """dockrun's images (those it built with this DOCKRUN_HOME): list them, prune unused ones."""


@images.command("list")
@click.option("--packages", is_flag=True, help="Under each environment image, what it installed: Python and "
              "every package with its version.")
def images_list(packages: bool) -> None:
    """Project and environment images, most recently used first."""
    from .images.housekeeping import list_table

    table, note = list_table(packages)
    click.echo(table)
    if note:
        click.echo(f"dockrun: {note}", err=True)


@images.command("prune")
@click.option("--older-than", "days", type=float, default=30.0, show_default=True, metavar="DAYS",
              help="Remove images not used (run or built) for this many days.")
@click.option("--project", help="Only this project's images.")
def images_prune(days: float, project: str | None) -> None:
    """Remove dockrun images not used for --older-than days: the names dockrun gave them (an image
    someone built FROM one of them, or tagged, stays)."""
    from .images.housekeeping import prune

    removed = prune(days, project)
    for ref in removed:
        click.echo(f"removed {ref}")
    if not removed:
        click.echo(f"nothing to remove: no dockrun image{' of ' + project if project else ''} unused for "
                   f"{days:g} days (--older-than DAYS)")


def _raise_interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    logging.getLogger("dockrun").addHandler(_OneLine())
    logging.getLogger("dockrun").propagate = False
    # SIGTERM is handled like Ctrl-C: stop and remove the container, then exit.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    debug = os.environ.get("DOCKRUN_DEBUG") == "1"
    try:
        cli.main(args=argv, prog_name="dockrun", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        sys.stderr.write("dockrun: error: interrupted\n")
        sys.exit(130)
    except click.ClickException as e:
        sys.stderr.write(f"dockrun: error: {e.format_message()}\n")
        sys.exit(2)
    except (Interrupted, KeyboardInterrupt) as e:
        msg = str(e) if isinstance(e, Interrupted) else "interrupted"
        sys.stderr.write(f"dockrun: error: {msg}\n")
        sys.exit(130)
    except DockrunError as e:
        if debug:
            traceback.print_exc()
        lines = str(e).splitlines() or [type(e).__name__]
        # The first line is the error; lines after it (if any) are printed before it.
        for extra in lines[1:]:
            sys.stderr.write(printable(extra, tabs=True) + "\n")
        sys.stderr.write(f"dockrun: error: {printable(lines[0], tabs=True)}\n")
        sys.exit(e.exit_code if not isinstance(e, ExecutionError) else 1)


if __name__ == "__main__":
    main()
