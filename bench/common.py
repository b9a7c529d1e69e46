"""Helpers shared by the benchmarks."""
from __future__ import annotations

import subprocess
import time


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Wall time of one command, its output discarded; fails loudly if it fails."""
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0

