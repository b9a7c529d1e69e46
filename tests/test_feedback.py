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
        for line in LINES:
            log(line)
    assert out.getvalue().splitlines() == LINES


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
