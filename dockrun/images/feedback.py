"""Build feedback: on a TTY, one status line (current step, elapsed time) redrawn in place; in CI
or any non-TTY, plain lines; quiet, nothing. Every line is written terminal-safe (dockrun.terminal):
a build step's output, a registry's or a workspace's words are not dockrun's."""
from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Callable

from ..terminal import output_line

_STEP = re.compile(r"^Step \d+/\d+ : ")
# What images/build.py says before a build, and the engine's last line of a successful one: in
# between, lines are the build's output (the status line); outside, they are dockrun's own.
_BUILD_STARTS = re.compile(r"^building (environment|project) image ")
_BUILD_ENDS = "Successfully tagged "


class LiveView:
    """Redraws ``[12.3s] Step 3/7 : RUN ... | last output line`` on one terminal line; keeps the
    lines dockrun itself says (building X, pulled Y) above it."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.step = ""
        self.last = ""
        self.building = False  # between a "building ... image" line and the engine's last line
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()

    def __call__(self, line: str) -> None:
        line = output_line(line).rstrip()
        with self.lock:
            if _BUILD_STARTS.match(line) or not self.building:
                self._clear()
                self.stream.write(line + "\n")
                self.building = bool(_BUILD_STARTS.match(line))
                self.started = time.monotonic()
                self.step = self.last = ""
            elif line.startswith(_BUILD_ENDS):
                self.building = False
                self.step = self.last = ""
                self._clear()
            elif _STEP.match(line):
                self.step = line
            elif line.strip() and not line.startswith(" ---> "):
                self.last = line.strip()
            self._draw()

    def _tick(self) -> None:
        while not self.done.wait(0.5):
            with self.lock:
                self._draw()

    def _draw(self) -> None:
        if not self.step:
            return
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


def plain(stream: IO[str]) -> Callable[[str], None]:
    def log(line: str) -> None:
        stream.write(output_line(line.rstrip("\n")) + "\n")
        stream.flush()

    return log


@contextmanager
def build_feedback(quiet: bool = False, stream: IO[str] | None = None) -> Iterator[Callable[[str], None]]:
    """The log callable for a build, chosen by where output goes."""
    out = stream or sys.stderr
    if quiet:
        yield lambda line: None
    elif out.isatty():
        view = LiveView(out)
        try:
            yield view
        finally:
            view.close()
    else:
        yield plain(out)
