"""Build feedback: on a TTY, one status line (current step, elapsed time) redrawn in place; in CI
or any non-TTY, one plain line per image built, with its time; verbose, the engine's whole log;
quiet, nothing. A failed build shows its failing step's own output (not the engine's bookkeeping),
once. Every line is written terminal-safe (dockrun.terminal): a build step's output, a registry's
or a workspace's words are not dockrun's."""
from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Callable

from ..engine.client import CHECK_PREFIX, STEP_LOG_LINES, is_bookkeeping, is_step_header
from ..terminal import output_line

_STEP = re.compile(r"^Step \d+/\d+ : ")
# What images/build.py says before a build, and the engine's last line of a successful one: in
# between, lines are the build's output (the status line); outside, they are dockrun's own.
_BUILD_STARTS = re.compile(r"^building (environment|project) image ")
_BUILD_ENDS = "Successfully tagged "
_BUILD_FAILED = re.compile(r"^build of \S+ failed$")


def build_failed(ref: str) -> str:
    """What images/build.py says when the build of ``ref`` failed (its error follows)."""
    return f"build of {ref} failed"


class StepLog:
    """The current step of a build: its instruction and its own output (the last lines of it)."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=STEP_LOG_LINES)
        self.header, self.dropped = "", 0

    def add(self, line: str) -> None:
        if is_step_header(line):
            self.header, self.dropped = line, 0
            self.lines.clear()
        elif not is_bookkeeping(line):
            self.dropped += len(self.lines) == self.lines.maxlen
            self.lines.append(line)

    def shown(self) -> list[str]:
        """The failing step as a log shows it: its instruction, then what it printed. Nothing for a
        template's own check: the error says what it found, in words, and the step is dockrun's."""
        if any(line.startswith(CHECK_PREFIX) for line in self.lines):
            return []
        head = [self.header] if self.header else []
        if self.dropped:
            head.append(f"(... {self.dropped} earlier lines of this step; --verbose shows them all)")
        return head + list(self.lines)


class LiveView:
    """Redraws ``[12.3s] Step 3/7 : RUN ... | last output line`` on one terminal line; keeps the
    lines dockrun itself says (building X, pulled Y) above it."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.step = ""
        self.last = ""
        self.building = False  # between a "building ... image" line and the engine's last line
        self.steps = StepLog()
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()

    def __call__(self, line: str) -> None:
        line = output_line(line).rstrip()
        with self.lock:
            if self.building and _BUILD_FAILED.match(line):
                self.building = False
                self.step = self.last = ""
                self._clear()
                for shown in self.steps.shown():
                    self.stream.write(shown + "\n")
                self.steps = StepLog()
            elif _BUILD_STARTS.match(line) or not self.building:
                self._clear()
                self.stream.write(line + "\n")
                self.building = bool(_BUILD_STARTS.match(line))
                self.started = time.monotonic()
                self.step = self.last = ""
            elif line.startswith(_BUILD_ENDS):
                self.building = False
                self.step = self.last = ""
                self._clear()
            else:
                self.steps.add(line)
                if _STEP.match(line):
                    self.step = line
                elif line.strip() and not is_bookkeeping(line):
                    self.last = line.strip()
            self._draw()

    def _tick(self) -> None:
        while not self.done.wait(0.5):
            with self.lock:
                self._draw()

    def _draw(self) -> None:
        if not self.step:
            return
        import shutil  # here: a warm run draws nothing, and shutil brings bz2 and lzma

        width = shutil.get_terminal_size((100, 20)).columns - 1
        text = f"[{time.monotonic() - self.started:5.1f}s] {self.step}"
        if self.last:
            text += f" | {self.last}"
        self.stream.write("\r\x1b[K" + text[:width])
        self.stream.flush()

    def _clear(self) -> None:
        self.stream.write("\r\x1b[K")

    def close(self) -> None:
        self.done.set()
        with self.lock:
            self._clear()
            self.stream.flush()


class PlainLines:
    """For a log file or a pipe: ``building environment image X (uv) ... 14.2 s``, one line per image
    built (the engine's lines kept back, and shown for the step that failed); dockrun's other lines
    as they come. ``verbose``: the engine's lines too, as they come. ``quiet``: only a failed step's
    output (the error that follows names the step; this says why)."""

    def __init__(self, stream: IO[str], verbose: bool = False, quiet: bool = False):
        self.stream, self.verbose, self.quiet = stream, verbose, quiet
        self.lock = threading.Lock()  # a sweep builds and starts runs from several threads
        self.stage, self.started, self.open = "", 0.0, False
        self.steps = StepLog()

    def __call__(self, line: str) -> None:
        line = output_line(line.rstrip("\n"))
        with self.lock:
            if self.quiet:
                self._quietly(line)
            elif _BUILD_STARTS.match(line):
                self._close_open()
                self.stage, self.started, self.steps = line, time.monotonic(), StepLog()
                if self.verbose:
                    self._write(line)
                else:  # the time comes at the end of the line; a line in between ends it first
                    self.stream.write(line + " ...")
                    self.stream.flush()
                    self.open = True
            elif self.stage and line.startswith(_BUILD_ENDS):
                if self.verbose:
                    self._write(line)
                self._end(f"{time.monotonic() - self.started:.1f} s")
            elif self.stage and _BUILD_FAILED.match(line):
                shown = [] if self.verbose else self.steps.shown()  # verbose: shown already
                self._end(f"failed after {time.monotonic() - self.started:.1f} s")
                for step_line in shown:
                    self._write(step_line)
            elif self.stage:  # the engine's line
                self.steps.add(line)
                if self.verbose:
                    self._close_open()
                    self._write(line)
            else:
                self._close_open()
                self._write(line)

    def _quietly(self, line: str) -> None:
        if _BUILD_STARTS.match(line):
            self.stage, self.steps = line, StepLog()
        elif self.stage and _BUILD_FAILED.match(line):
            for step_line in self.steps.shown():
                self._write(step_line)
            self.stage = ""
        elif self.stage and line.startswith(_BUILD_ENDS):
            self.stage = ""
        elif self.stage:
            self.steps.add(line)

    def _end(self, how: str) -> None:
        if self.open:
            self.stream.write(f" {how}\n")
            self.stream.flush()
            self.open = False
        else:
            self._write(f"{self.stage} ... {how}")
        self.stage, self.steps = "", StepLog()

    def _close_open(self) -> None:
        if self.open:
            self.stream.write("\n")
            self.open = False

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        with self.lock:
            self._close_open()
            self.stream.flush()


@contextmanager
def build_feedback(quiet: bool = False, stream: IO[str] | None = None,
                   verbose: bool = False) -> Iterator[Callable[[str], None]]:
    """The log callable for a build, chosen by where output goes (``verbose``: every line, anywhere;
    ``quiet``: a failed step's output only)."""
    out = stream or sys.stderr
    view: LiveView | PlainLines
    if quiet or verbose or not out.isatty():
        view = PlainLines(out, verbose=verbose and not quiet, quiet=quiet)
    else:
        view = LiveView(out)
    try:
        yield view
    finally:
        view.close()
