"""Is a process still the one we recorded? (pid plus its start time, so a reused pid is not
mistaken for it; a zombie counts as gone.)"""
from __future__ import annotations

import os


def start_token(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, from /proc; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def alive(pid: int | None, token: str | None) -> bool:
    if not pid:
        return False
    if os.path.exists("/proc/self/stat"):
        current = start_token(pid)
        return current is not None and (token is None or current == token)
    try:  # no /proc (macOS): existence only
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
