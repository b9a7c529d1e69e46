"""Helpers shared by the benchmarks."""
from __future__ import annotations

import subprocess
import time


def timed(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> float:
    """Wall time of one command, its output discarded; fails loudly if it fails."""
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def interleaved(arms: dict, repeat: int, baseline: str) -> dict[str, list[float]]:
    """Time each arm (command, env, cwd) ``repeat`` times, interleaved (A B C A B C ...), and print
    each arm's median and its ratio to ``baseline``'s median from the same run."""
    import statistics

    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(repeat):
        for name, (command, arm_env, cwd) in arms.items():
            times[name].append(timed(command, arm_env, cwd))
    base = statistics.median(times[baseline])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:18}: median {m:.3f} s over {repeat} (min {min(ts):.3f}), ratio to {baseline} {m / base:.2f}")
    return times
