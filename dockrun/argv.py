"""`dockrun run`'s command line read from the option table, without click.

A warm `dockrun run` in-process spends more time importing Python than doing its work, and click
with its dependencies is the largest single part of that (about 12 ms of a run that costs about
100 ms more than `docker run`). So the usual `run` lines are read here, from what options.py
declares for `run` and the spellings click accepts for them (``--flag VALUE``, ``--flag=VALUE``,
``-f VALUE``, ``-fVALUE``, options before or after the URI, ``--``). Anything else (help, an
unknown or misspelt flag, a missing value, a value outside its choices, combined short flags, a
single-valued option given twice, a second argument) is left to click, which parses the whole line
again and runs it or says what is wrong. So both agree on every line this reads;
tests/test_argv.py checks it flag by flag against click itself.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import options

# The commands' own output flags (not options of a run): field name -> (flags, help). Declared once
# here for click (commands.py) and for this reader.
OUTPUT_FLAGS: Mapping[str, tuple[tuple[str, ...], str]] = {
    "quiet": (("-q", "--quiet"), "No build output (a failed build still shows why)."),
    "verbose": (("--verbose",), "The engine's whole build log (without it: one line per image built; a failing "
                                "step's output)."),
}


@dataclass(frozen=True)
class RunLine:
    """A `dockrun run` line as read (here or by click): the URI, the option table's values by field
    name (as click gives them: strings, tuples for repeatable options, booleans for flags), and the
    output flags."""

    uri: str
    values: Mapping[str, Any]
    quiet: bool
    verbose: bool


def read_run(args: Sequence[str]) -> RunLine | None:
    """``args`` (after the program name) as a `dockrun run` line, or None: click must read it."""
    if not args or args[0] != "run":
        return None
    table = options.for_command("run")
    takes = {}  # flag -> (field name, Option or None for an output flag)
    for name, opt in table:
        takes.update((flag, (name, opt)) for flag in opt.flags)
    for name, (flags, _) in OUTPUT_FLAGS.items():
        takes.update((flag, (name, None)) for flag in flags)
    values: dict[str, Any] = {name: _default(opt) for name, opt in table}
    outputs = {name: False for name in OUTPUT_FLAGS}
    given: set[str] = set()
    uri = None
    rest = list(args[1:])
    positional_only = False
    while rest:
        arg = rest.pop(0)
        if positional_only or arg[:1] != "-" or arg == "-":
            if uri is not None or arg == "-":
                return None
            uri = arg
            continue
        if arg == "--":
            positional_only = True
            continue
        if arg[:2] == "--":
            flag, eq, value = arg.partition("=")
            attached = bool(eq)
        else:  # -fVALUE: the rest of the word is the value (combined flags such as -qd are click's)
            flag, value, attached = arg[:2], arg[2:], len(arg) > 2
        if flag not in takes:
            return None  # -h/--help, a misspelling, a command's own flag click knows
        name, opt = takes[flag]
        if opt is None or opt.is_flag:
            if attached:
                return None
            (outputs if opt is None else values)[name] = True
            continue
        if not attached:
            if not rest:
                return None
            value = rest.pop(0)
        if opt.choices and value not in opt.choices:
            return None
        if opt.multiple:
            values[name] = (*values[name], value)
        elif name in given:
            return None
        else:
            values[name] = value
        given.add(name)
    if uri is None:
        return None
    return RunLine(uri, values, outputs["quiet"], outputs["verbose"])


def _default(opt: options.Option) -> Any:
    if opt.is_flag:
        return False
    return () if opt.multiple else opt.default
