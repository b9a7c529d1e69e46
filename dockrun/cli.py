"""The `dockrun` command (after warm start): read the line, run one command, turn errors into
exit codes and one line on stderr.

`dockrun run`'s usual lines are read by argv.py and never import click; every other line goes to
click (commands.py), which runs the command itself or, for `run`, gives its line back to be run
here the same way.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any, NoReturn

from . import options
from .argv import RunLine, read_run
from .errors import DockrunError, ExecutionError, Interrupted, OutputClosed, printable


class _OneLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        for line in record.getMessage().splitlines() or [""]:
            sys.stderr.write(f"dockrun: {record.levelname.lower()}: {printable(line, tabs=True)}\n")


def run_line(line: RunLine) -> None:
    """`dockrun run`: submit the request; a detached run prints its ID."""
    from .api import submit

    request = options.from_cli("run", line.uri, line.values)
    submitted = submit(request, quiet=line.quiet, verbose=line.verbose)
    if not request.synchronous:
        sys.stdout.write(f"{submitted.run_id}\n")
        sys.stdout.flush()


def _raise_interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


def _quiet_stdout() -> None:
    """stdout's reader is gone: what is still buffered for it must not fail again at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger("dockrun").addHandler(_OneLine())
    logging.getLogger("dockrun").propagate = False
    # SIGTERM is handled like Ctrl-C: stop and remove the container, then exit.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        line = read_run(args)
        if line is None:
            from .commands import click_main

            line = click_main(args)
        if line is not None:
            run_line(line)
    except (Interrupted, KeyboardInterrupt) as e:
        msg = str(e) if isinstance(e, Interrupted) else "interrupted"
        sys.stderr.write(f"dockrun: error: {msg}\n")
        sys.exit(130)
    except BrokenPipeError:  # the reader of our output went away (`dockrun runs list | head -1`)
        _quiet_stdout()
        sys.exit(OutputClosed.exit_code)
    except DockrunError as e:
        if isinstance(e, OutputClosed):
            _quiet_stdout()
        if os.environ.get("DOCKRUN_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        lines = str(e).splitlines() or [type(e).__name__]
        try:
            # The first line is the error; lines after it (if any) are printed before it.
            for extra in lines[1:]:
                sys.stderr.write(printable(extra, tabs=True) + "\n")
            sys.stderr.write(f"dockrun: error: {printable(lines[0], tabs=True)}\n")
            sys.stderr.flush()
        except BrokenPipeError:  # stderr went the same way as stdout (`2>&1 | head -1`)
            pass
        sys.exit(e.exit_code if not isinstance(e, ExecutionError) else 1)


if __name__ == "__main__":
    main()
