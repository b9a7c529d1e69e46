"""A run's wake-up line: its supervisor tells the submitting process "look again" (the run is
RUNNING, the run is over) instead of leaving it to find out on its next poll. Output is not woken
for: a chatty command must not make its driver spin.

A FIFO in the run's folder, by path, so that it works however the supervisor was started (direct
fork or fork server). The driver opens the reading end before it starts the supervisor; the
supervisor opens the writing end once and writes a byte at each change; its exit closes it, which
wakes the driver one last time. Nothing depends on a wake arriving: a waiter always times out into
a poll of the record (which stays the truth), so a lost, stolen or never-sent wake costs one poll
interval, never a run.
"""
from __future__ import annotations

import os
import select
import time
import weakref
from pathlib import Path

NAME = "wake"


class Listener:
    """The driver's end. ``wait(timeout)`` returns at the next wake (True) or after ``timeout``."""

    def __init__(self, path: Path | None, fd: int | None):
        self._fd = fd
        self._finalizer = weakref.finalize(self, _close, fd, path, os.getpid()) if fd is not None else None

    @property
    def listening(self) -> bool:
        """Whether wakes can arrive (a FIFO is open); otherwise ``wait`` just sleeps."""
        return self._fd is not None

    def wait(self, timeout: float) -> bool:
        if self._fd is None:
            time.sleep(timeout)
            return False
        if not select.select([self._fd], [], [], timeout)[0]:
            return False
        try:
            data = os.read(self._fd, 4096)  # every pending wake at once: one look covers them all
        except BlockingIOError:
            return False
        if not data:  # the supervisor is gone: no more wakes, and EOF would wake us forever
            self.close()
        return True

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._fd = None


def listen(run_dir: Path) -> Listener:
    """Make the run's FIFO and open its reading end (without blocking: no writer yet). Where FIFOs
    are not available the listener just sleeps, as polling did."""
    path = run_dir / NAME
    try:
        os.mkfifo(path, 0o600)
    except (OSError, AttributeError):
        return Listener(None, None)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        path.unlink(missing_ok=True)
        return Listener(None, None)
    return Listener(path, fd)


def _close(fd: int, path: Path, owner: int) -> None:
    # A forked supervisor carries a copy of its driver's listeners: collecting one there must not
    # close whatever that fd number now is, nor take the FIFO from the driver.
    if os.getpid() != owner:
        return
    try:
        os.close(fd)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


class Notifier:
    """The supervisor's end; ``poke()`` never blocks and never fails the run."""

    def __init__(self, fd: int | None):
        self._fd = fd

    def poke(self) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, b".")
        except BlockingIOError:  # the pipe is full of wakes not yet read: one more adds nothing
            pass
        except OSError:  # the driver closed its end: nobody is listening any more
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def notifier(run_dir: Path) -> Notifier:
    """Open the run's FIFO for writing if a driver is listening; otherwise a notifier that does
    nothing (a detached run followed from elsewhere, or a driver that is gone)."""
    try:  # ENOENT: nobody made the FIFO; ENXIO: nobody holds it open
        return Notifier(os.open(run_dir / NAME, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        return Notifier(None)
