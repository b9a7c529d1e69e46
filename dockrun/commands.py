"""The click commands: every command line but the ones argv.py reads (`dockrun run`'s usual lines).
cli.py calls ``click_main`` and turns what it raises into exit codes."""
from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

import click

from . import options
from .argv import OUTPUT_FLAGS, RunLine
from .errors import printable

ENV_MANAGERS = list(options.ENV_MANAGERS)

# Options of the commands' own, not of a run (a run's are declared by options.RunRequest).
QUIET = click.option(*OUTPUT_FLAGS["quiet"][0], "quiet", is_flag=True, help=OUTPUT_FLAGS["quiet"][1])
VERBOSE = click.option(*OUTPUT_FLAGS["verbose"][0], "verbose", is_flag=True, help=OUTPUT_FLAGS["verbose"][1])
F = TypeVar("F", bound=Callable[..., Any])


def request_options(command: str, after: Mapping[str, tuple[Callable[[F], F], ...]] | None = None
                    ) -> Callable[[F], F]:
    """The click options of the RunRequest fields ``command`` takes (options.RunRequest says which),
    in the table's order, each reaching the command as a keyword named like its field; ``after``
    places the command's own options after a field's in its help."""
    def apply(f: F) -> F:
        for name, opt in reversed(options.for_command(command)):
            for own in reversed((after or {}).get(name, ())):
                f = own(f)
            how: dict[str, Any] = {"help": opt.help, "show_default": opt.show_default, "metavar": opt.metavar}
            if opt.is_flag:
                how["is_flag"] = True
            elif opt.multiple:
                how["multiple"] = True
            else:
                how["default"] = opt.default
            if opt.choices:
                how["type"] = click.Choice(opt.choices)
            f = click.option(*opt.flags, name, **how)(f)
        return f
    return apply


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dockrun", message="dockrun %(version)s")
def cli() -> None:
    """Run MLflow Projects in Docker containers."""


@cli.command()
@click.argument("uri")
@request_options("run")
@QUIET
@VERBOSE
def run(uri: str, quiet: bool, verbose: bool, **given: Any) -> RunLine:
    """Run the project at URI (a folder, a Git URI or an archive (.zip, .tar.gz, .tgz), optionally
    #subdirectory)."""
    return RunLine(uri, given, quiet, verbose)  # cli.py runs it, as it runs the lines argv.py reads


@cli.command("sweep")
@click.argument("uri", required=False)
@request_options("sweep", after={"version": (
    click.option("-P", "--param-list", "params", multiple=True, metavar="KEY=V1,V2,...",
                 help="A parameter's values (repeatable): every combination runs."),
    click.option("--grid", "grid_file", metavar="FILE", help="The points from a file instead: JSON (a list of "
                 "objects) or CSV (a header of parameter names, a row per run)."))})
@click.option("--parallel", default=4, show_default=True, help="At most this many runs at once.")
@click.option("--resume", metavar="SWEEP", help="Run what did not finish in this sweep (its points and options).")
@click.option("--sort", metavar="METRIC", help="Sort the table by a metric the runs wrote (-METRIC: descending).")
@QUIET
@VERBOSE
def sweep_cmd(uri: str | None, params: tuple[str, ...], grid_file: str | None, parallel: int, resume: str | None,
              sort: str | None, quiet: bool, verbose: bool, **given: Any) -> None:
    """Run the project at URI for every combination of parameter values, at most --parallel at once,
    on any backend; print a table of each run's parameters, status and metrics (what it wrote to
    metrics.json or metrics.csv in $DOCKRUN_OUTPUT_DIR). Exit 1 if a run did not finish."""
    from .experiments.sweep import grid_points, parse_axes, read_points, sweep, table

    if not uri and not resume:
        raise click.UsageError("missing URI (or --resume SWEEP)")
    # With --resume the points are the sweep's own: none unless given again (then they must match).
    points = read_points(grid_file) if grid_file else grid_points(parse_axes(params)) if params or not resume else []
    template = options.from_cli("sweep", uri or "", given)
    from .images.feedback import build_feedback

    with build_feedback(quiet, verbose=verbose) as log:
        result = sweep(template, points, parallel, resume, log=log)
    click.echo(f"sweep {result.sweep_id}")
    click.echo(table(result, sort))
    for row in result.rows:
        if row.note:  # a point that did not start, or a run whose MLflow metrics could not be read
            point = ", ".join(f"{k}={v}" for k, v in row.parameters.items())
            who = f"run {row.run_id}" if row.run_id else f"point {point}"
            click.echo(f"dockrun: {printable(who)}: {printable(row.note)}", err=True)
    if not result.ok:
        raise SystemExit(1)


@cli.command("build")
@click.argument("uri")
@request_options("build", after={"version": (
    click.option("--tag", help="Also tag the project image as REF."),
    click.option("--push", is_flag=True, help="Push the image (skipped when the registry has that tag).")),
})
@QUIET
@VERBOSE
def build_cmd(uri: str, tag: str | None, push: bool, quiet: bool, verbose: bool, **given: Any) -> None:
    """Build the project's image (environment + code) and print its reference."""
    from .building import build_project

    ref = build_project(options.from_cli("build", uri, given), tag=tag, push=push, quiet=quiet, verbose=verbose)
    click.echo(ref)


@cli.command("lock")
@click.argument("uri")
@request_options("lock")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def lock_cmd(uri: str, quiet: bool, **given: Any) -> None:
    """Write requirements.lock (pinned, with hashes) beside the project's python_env.yaml or
    requirements.txt, or conda-lock.txt (conda's explicit list) beside its conda.yaml; builds then
    install exactly it. Local folders only."""
    from .locking import lock_project

    request = options.from_cli("lock", uri, given)
    path = lock_project(request, log=(lambda line: None) if quiet else (lambda line: click.echo(line, err=True)))
    click.echo(path)


@cli.command("shell")
@click.argument("uri")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD ...]")
@request_options("shell")
@QUIET
@VERBOSE
def shell_cmd(uri: str, command: tuple[str, ...], quiet: bool, verbose: bool, **given: Any) -> None:
    """A shell (bash if the image has it, else sh), or CMD, in the project's image, as a run of the
    entry point would see it: same user, working directory, variables and mounts. Exits with CMD's
    exit code; the container is removed."""
    from .shell import open_shell

    sys.exit(open_shell(options.from_cli("shell", uri, given), command, quiet=quiet, verbose=verbose))


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
@request_options("rerun")
@QUIET
@VERBOSE
def runs_rerun(run: str, params: tuple[str, ...], quiet: bool, verbose: bool, **given: Any) -> None:
    """Run RUN again exactly: the same source (commit or content hash), entry point, parameters,
    options and image (by content ID; rebuilt from the same source and lock if gone, saying whether
    it installed the same). RUN is a run ID or a file `dockrun runs show` wrote (another machine's
    run: its image comes from DOCKRUN_REGISTRY). A record file is someone else's: what it asks of
    this machine (host paths as parameters, docker options, the project's host access and build
    credentials, a local folder's too) needs --trust; a run of your own keeps the --trust it had."""
    from .experiments.rerun import rerun

    values = options.cli_values("rerun", given)
    handle = rerun(run, options.key_values(params), synchronous=values["synchronous"], trust=values["trust"],
                   quiet=quiet, verbose=verbose)
    if not values["synchronous"]:
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


# click 8.2 and later: a group given no command raises this (its message is the help); before, it
# printed the help and exited 0 itself.
_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


def click_main(args: list[str]) -> RunLine | None:
    """Parse ``args`` with click and run the command, except `run`: its line is given back for
    cli.py to run. Click's own errors (usage, a bad option) are one line and exit 2."""
    try:
        line = cli.main(args=args, prog_name="dockrun", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        raise KeyboardInterrupt from None
    except _NO_ARGS as e:  # `dockrun` or `dockrun runs` alone asks what there is: the help, as --help
        click.echo(e.format_message())
        sys.exit(0)
    except click.ClickException as e:
        sys.stderr.write(f"dockrun: error: {e.format_message()}\n")
        sys.exit(2)
    return line if isinstance(line, RunLine) else None
