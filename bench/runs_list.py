"""`dockrun runs list` with 10,000 finished runs in the store, against the interpreter's own start
(`python -c pass`) in the same run: what listing costs beyond starting Python.

    python bench/runs_list.py --runs 10000 --repeat 9
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Arm, interleaved  # noqa: E402 - bench/ is not a package


def fill(home: Path, n: int) -> None:
    sys.path.insert(0, str(REPO))
    from dockrun.store.records import RunRecord, RunStore, _to_row

    first = RunRecord(run_id=f"{0:016x}", status="FINISHED", created=time.time(), uri="/p", source_key="k",
                      project="bench", entry_point="main", parameters={"a": "1"}, command="c", image="i",
                      env_key="e", outputs="/o", ended=time.time())
    RunStore(home).insert(first)  # creates and stamps the store as dockrun does
    with sqlite3.connect(home / "runs.db") as db:
        for i in range(1, n):
            row = _to_row(RunRecord(**{**first.__dict__, "run_id": f"{i:016x}", "created": time.time() - i}))
            db.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                       tuple(row.values()))


def measure(runs: int = 10_000, repeat: int = 9, warmup: int = 0) -> dict[str, list[float]]:
    """Times of `dockrun runs list` over a store of ``runs`` finished runs and of `python -c pass`
    (the baseline, "python -c pass"), interleaved; prints the report."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        fill(home, runs)
        env = dict(os.environ, DOCKRUN_HOME=str(home))
        arms: dict[str, Arm] = {
            "python -c pass": ([sys.executable, "-c", "pass"], env, None),
            f"runs list ({runs})": ([sys.executable, "-m", "dockrun.cli", "runs", "list"], env, str(REPO)),
        }
        return interleaved(arms, repeat, "python -c pass", warmup=warmup)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    measure(args.runs, args.repeat)


if __name__ == "__main__":
    main()
