"""The one rule for text that is not dockrun's own reaching a terminal (and so the run's logs,
which `dockrun runs logs` prints as they are): names and labels from a project or an image, a
build step's output, a cluster's or a workspace's messages.

Every character a terminal would act on rather than show is written escaped, as Python writes it
in a string (``\\x1b``, ``\\x9b``, ``\\u202e``): C0 controls and DEL (so ESC, and with it every
CSI, OSC, DCS, APC and PM sequence), the 8-bit C1 controls (``\\x9b`` is a CSI on its own for some
terminals), format characters such as the bidi overrides, line and paragraph separators, and
unpaired surrogates (undecodable bytes). Such text can then neither repaint the screen, set the
window title, write the clipboard, hide a link behind other words, nor forge a line of dockrun's.
"""
from __future__ import annotations

import re

# Complete ANSI sequences (ECMA-48): CSI (ESC [ or the 8-bit CSI) ... final byte; OSC, DCS, SOS, PM
# and APC strings up to their terminator (BEL or ST); any other two-character ESC sequence.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]"
)


def printable(text: str, tabs: bool = False) -> str:
    """One line of text from elsewhere as a terminal may show it: every control character (newlines
    too; tabs unless ``tabs``) written escaped."""
    return "".join(c if c.isprintable() or (tabs and c == "\t") else repr(c)[1:-1] for c in text)


def printable_lines(text: str) -> str:
    """Text of many lines from elsewhere: as ``printable`` line by line, the newlines and tabs kept."""
    return "\n".join(printable(line, tabs=True) for line in text.split("\n"))


def output_line(line: str) -> str:
    """A line of another program's output (a build step, a resolver): its colours and other
    complete terminal sequences dropped (they are formatting, not text), the rest as ``printable``."""
    return printable(_SEQUENCE.sub("", line), tabs=True)
