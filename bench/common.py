"""Helpers shared by the benchmarks: timing a command, interleaving arms, summarising the times
(median, min-max, ratios paired round by round) and a process's peak RSS."""
from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Union

# An arm is a command (argv, env, cwd) timed as a whole, or a function that does its own setup
# and returns the seconds it measured.
Arm = Union[tuple[list[str], dict[str, str], Union[str, None]], Callable[[], float]]


def timed(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> float:
    """Wall time of one command, its output discarded; fails loudly if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def run_arm(arm: Arm) -> float:
    if callable(arm):
        return arm()
    command, env, cwd = arm
    return timed(command, env, cwd)


def interleaved(arms: dict[str, Arm], repeat: int, baseline: str, warmup: int = 0,
                quiet: bool = False, unit: str = "s") -> dict[str, list[float]]:
    """Time each arm ``repeat`` times, interleaved (A B C A B C ...), after ``warmup`` uncounted
    rounds, and (unless ``quiet``) print each arm's median and its ratio to ``baseline``."""
    for _ in range(warmup):
        for arm in arms.values():
            run_arm(arm)
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(repeat):
        for name, arm in arms.items():
            times[name].append(run_arm(arm))
    if not quiet:
        for line in report(times, baseline, unit):
            print(line)
    return times


@dataclass(frozen=True)
class Summary:
    median: float
    lo: float
    hi: float
    n: int

    def fmt(self, unit: str = "s", digits: int = 3) -> str:
        return f"{self.median:.{digits}f} {unit} ({self.lo:.{digits}f}-{self.hi:.{digits}f})"


def summary(xs: list[float]) -> Summary:
    return Summary(statistics.median(xs), min(xs), max(xs), len(xs))


def paired_ratios(xs: list[float], base: list[float]) -> list[float]:
    """Round i of an arm against round i of its baseline: both saw the same moment's load."""
    return [x / b for x, b in zip(xs, base)]


def report(times: dict[str, list[float]], baseline: str, unit: str = "s") -> list[str]:
    base = times[baseline]
    lines = []
    for name, ts in times.items():
        r = summary(paired_ratios(ts, base))
        lines.append(f"{name:22}: median {statistics.median(ts):.3f} {unit} over {len(ts)} (min {min(ts):.3f}, "
                     f"max {max(ts):.3f}), ratio to {baseline} {r.median:.2f} ({r.lo:.2f}-{r.hi:.2f}, paired)")
    return lines


def peak_rss_mb(cmd: list[str], env: dict[str, str], cwd: str | None = None, every: float = 0.002) -> float:
    """Peak resident set size (VmHWM) of the process ``cmd`` starts, in MB, read from /proc while
    it runs. Only that process: children it forks or starts are not counted. (A child's
    ru_maxrss would not do: it keeps the forking parent's peak across exec.)"""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = f"/proc/{proc.pid}/status"
    peak = 0
    while proc.poll() is None:
        try:
            with open(status) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
                        break
        except OSError:
            pass
        time.sleep(every)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return peak / 1024


def installed_dockrun(repo: Path, cache: Path | None = None) -> list[str]:
    """The `dockrun` command as users have it: this checkout installed (not editable) into the
    bench's own venv, its dependencies from PyPI once, dockrun itself again on every call (so it
    is the code being measured). A checkout's editable finder and this machine's site .pth files
    cost 25-40 ms per start that no installed dockrun pays."""
    import os
    import sys

    cache = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dockrun-bench"
    venv = cache / "dockrun-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", str(repo)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(repo)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [str(venv / "bin" / "dockrun")]
