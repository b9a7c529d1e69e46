"""Build feedback: a live line on a TTY, plain lines elsewhere, nothing when quiet."""
from __future__ import annotations

import io
import os
import pty
import re
import select

from dockrun.images.feedback import LiveView, build_feedback

LINES = ["building environment image dockrun-env:abc (uv)", "Step 1/3 : FROM base", " ---> 123",
         "Step 2/3 : RUN pip install uv", "\x1b[91mCollecting uv\x1b[0m", "building project image dockrun-p:1"]


def test_plain_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    with build_feedback(stream=out) as log:
        for line in [*LINES, "Successfully tagged dockrun-p:1", "created Job ns/job-1"]:
            log(line)
    # One line per image built, with its time; a stage that did not end (here: cut short) still
    # ends its line; the engine's own lines are kept back.
    assert re.fullmatch(r"building environment image dockrun-env:abc \(uv\) ...\n"
                        r"building project image dockrun-p:1 ... \d+\.\d s\n"
                        r"created Job ns/job-1\n", out.getvalue()), out.getvalue()


def test_verbose_is_every_line_without_colours() -> None:
    out = io.StringIO()
    with build_feedback(stream=out, verbose=True) as log:
        for line in LINES:
            log(line)
    # The build's colours are dropped: its output is not dockrun's to colour a terminal with.
    assert out.getvalue().splitlines() == [line.replace("\x1b[91m", "").replace("\x1b[0m", "") for line in LINES]


def test_a_failed_build_shows_its_failing_steps_own_output_once() -> None:
    out = io.StringIO()
    with build_feedback(stream=out) as log:
        for line in ["building project image dockrun-p:1", "Step 1/2 : RUN echo one", " ---> Running in 0123",
                     "one", "Removing intermediate container 0123", " ---> 4567", "Step 2/2 : RUN make",
                     " ---> Running in 89ab", "compiling", "error: no rule", "build of dockrun-p:1 failed"]:
            log(line)
    assert re.fullmatch(r"building project image dockrun-p:1 ... failed after \d+\.\d s\n"
                        r"Step 2/2 : RUN make\ncompiling\nerror: no rule\n", out.getvalue()), out.getvalue()


def test_quiet_prints_nothing() -> None:
    out = io.StringIO()
    with build_feedback(quiet=True, stream=out) as log:
        for line in LINES:
            log(line)
    assert out.getvalue() == ""


def _drain(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.5)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_live_view_on_a_real_tty() -> None:
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as tty:
        assert tty.isatty()
        with build_feedback(stream=tty) as log:
            assert isinstance(log, LiveView)
            for line in LINES:
                log(line)
        tty.flush()
        text = _drain(leader)
    os.close(leader)
    # dockrun's own lines stay; steps are redrawn in place with the elapsed time and last output.
    assert "building environment image dockrun-env:abc (uv)" in text
    assert re.search(r"\r\x1b\[K\[ *\d+\.\ds\] Step 2/3 : RUN pip install uv \| Collecting uv", text)
    assert "\x1b[91m" not in text  # the build's own colours are stripped
    assert text.rstrip("\r\n").endswith("\r\x1b[K")  # the live line is cleared at the end


def _live(lines: list[str]) -> str:
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as tty:
        with build_feedback(stream=tty) as log:
            for line in lines:
                log(line)
        tty.flush()
        text = _drain(leader)
    os.close(leader)
    return text


def test_live_view_shows_dockrun_lines_outside_a_build() -> None:
    """On a terminal, what dockrun says before and after a build (downloads, a submitted remote
    run, a created Job) is printed as a line, not swallowed into the status line."""
    text = _live(["downloading http://127.0.0.1:9/data.csv",
                  "building project image dockrun-p:1", "Step 1/2 : FROM base", "Step 2/2 : COPY . .",
                  "Successfully built 0123", "Successfully tagged dockrun-p:1",
                  "submitted Databricks run 42: https://example.invalid/run/42", "created Job ns/job-1"])
    shown = [line.split("\r\x1b[K")[-1] for line in text.replace("\r\n", "\n").split("\n")]
    for own in ("downloading http://127.0.0.1:9/data.csv", "building project image dockrun-p:1",
                "submitted Databricks run 42: https://example.invalid/run/42", "created Job ns/job-1"):
        assert own in shown, text
    assert "Successfully tagged" not in text  # the build's own lines stay in the status line


def test_no_raw_control_reaches_the_terminal() -> None:
    hostile = ["downloading \x1b]8;;http://evil\x07x\x1b]8;;\x07 \x9b2J \x1bP+q\x1b\\",
               "building project image dockrun-p:1", "Step 1/2 : RUN x",
               "out \x1b]0;title\x07 \x90dcs\x9c \x9b31m \u202eevil \x1b[2J", "Successfully tagged dockrun-p:1"]
    for text in (_live(hostile), _plain(hostile)):
        ours = text.replace("\r\x1b[K", "")  # the live line's own redraw
        assert "\x1b" not in ours and "\x9b" not in ours and "\x90" not in ours and "\u202e" not in ours, repr(text)


def _plain(lines: list[str]) -> str:
    out = io.StringIO()
    with build_feedback(stream=out) as log:
        for line in lines:
            log(line)
    return out.getvalue()


def test_a_failed_build_on_a_terminal_leaves_its_failing_step_on_screen() -> None:
    text = _live(["building project image dockrun-p:1", "Step 1/2 : RUN echo one", " ---> Running in 0123", "one",
                  "Step 2/2 : RUN make", " ---> Running in 89ab", "error: no rule", "build of dockrun-p:1 failed"])
    shown = [line.split("\r\x1b[K")[-1] for line in text.replace("\r\n", "\n").split("\n")]
    assert shown[shown.index("Step 2/2 : RUN make") + 1] == "error: no rule", text
    assert "Step 1/2 : RUN echo one" not in shown and " ---> Running in 89ab" not in shown


def test_a_failed_check_of_dockruns_own_shows_no_step_the_error_says_it() -> None:
    out = io.StringIO()
    with build_feedback(stream=out) as log:
        for line in ["building environment image dockrun-env:abc (uv)", "Step 5/9 : RUN python3 -c 'import sys'",
                     "dockrun-check: the base image has Python 3.11, the project pins 3.12",
                     "build of dockrun-env:abc failed"]:
            log(line)
    assert re.fullmatch(r"building environment image dockrun-env:abc \(uv\) ... failed after \d+\.\d s\n",
                        out.getvalue()), out.getvalue()
