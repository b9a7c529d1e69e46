"""argv.py reads `dockrun run`'s usual lines without click: on every line it reads, it must read
what click reads (click is the oracle: commands.click_main parses a `run` line and gives it back
without running it), and the usual spellings of every option in the table must be read by it, so
that a warm run never imports click."""
from __future__ import annotations

import random

import pytest

from dockrun import options
from dockrun.argv import OUTPUT_FLAGS, RunLine, read_run
from dockrun.commands import click_main

URI = "proj"
VALUES = ("v1", "k=v", "a=b=c", "", "-dash", "--dash=1", "-h", "x y")


def _spellings() -> list[tuple[list[str], bool]]:
    """(args after `run URI`, whether argv.py must read it) for every option of `run`."""
    out: list[tuple[list[str], bool]] = []
    for _, (flags, _help) in OUTPUT_FLAGS.items():
        out += [([flag], True) for flag in flags]
    for _, opt in options.for_command("run"):
        for flag in opt.flags:
            if opt.is_flag:
                out += [([flag], True), ([f"{flag}=1"], False)]
                continue
            values = list(opt.choices) + ["nosuch"] if opt.choices else list(VALUES)
            for value in values:
                usual = not opt.choices or value in opt.choices
                out.append(([flag, value], usual))
                out.append(([f"{flag}={value}"] if flag.startswith("--") else [flag + value], usual and bool(value)))
            out.append(([flag], False))  # the value is missing
            twice = ([flag, values[0], flag, values[-1]], bool(opt.multiple))
            out.append(twice)
    return out


def _agree(args: list[str]) -> RunLine | None:
    ours = read_run(args)
    if ours is not None:
        assert click_main(list(args)) == ours, args
    return ours


@pytest.mark.parametrize("extra,usual", _spellings(), ids=lambda x: " ".join(x) if isinstance(x, list) else str(x))
def test_every_option_of_run_is_read_as_click_reads_it(extra: list[str], usual: bool) -> None:
    for args in (["run", URI, *extra], ["run", *extra, URI]):
        ours = _agree(args)
        if usual:
            assert ours is not None, f"{args}: left to click"


@pytest.mark.parametrize("args", [
    ["run"], ["run", "a", "b"], ["run", "-h"], ["run", URI, "--help"], ["run", URI, "--nosuch"], ["run", "-"],
    ["run", URI, "-qd"], ["build", URI], ["--help"], [], ["run", URI, "--", "-P"],
])
def test_lines_it_does_not_read_are_left_to_click(args: list[str]) -> None:
    assert read_run(args) is None


def test_after_double_dash_everything_is_an_argument() -> None:
    assert _agree(["run", "--", "-weird"]) == RunLine("-weird", read_run(["run", "x"]).values, False, False)
    assert _agree(["run", "--", "--"]).uri == "--"


def test_random_lines_are_read_as_click_reads_them() -> None:
    pieces = [extra for extra, _ in _spellings()] + [[URI], ["--"], ["other"]]
    rng = random.Random(26)
    read = 0
    for _ in range(1500):
        args = ["run"] + [word for piece in rng.sample(pieces, rng.randint(1, 5)) for word in piece]
        if rng.random() < 0.7 and URI not in args:
            args.insert(rng.randint(1, len(args)), URI)
        read += _agree(args) is not None
    assert read > 300  # the fast path is the usual one, not a rare one
