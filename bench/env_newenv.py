"""Issue 26's one missed target: the first run of a new environment whose packages are all in the
cache, against the floor (`uv venv` + `uv pip install` of the same set, uv's cache warm), with two
checkouts side by side, paired round by round.

    python bench/env_newenv.py [--main /work/main] [--this .] [--rounds 8]

Each checkout's DOCKRUN_HOME starts from an environment of the base set that checkout built (a
parent must have been made by the same install scripts), so every build in the rounds derives from
it, as a user's changed environment would. Each round gives every arm a set it has not
seen: the base set plus two small packages all installed before (no download anywhere). Arms, in an
order that alternates between rounds: the environment build alone (prepare in-process, then
ensure_env_image timed) for each checkout, `dockrun run` for each checkout, the floor. Only paired
ratios mean much on this shared machine: the 1-minute load is printed with every round.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NONCE = f"numpy>=1.0.{int(time.time()) % 1000000}"  # a new base key for every invocation
BASE = [NONCE, "pandas", "scikit-learn"]
EXTRA = ["colorama", "iniconfig", "wrapt", "idna", "attrs", "toolz", "pyparsing", "cachetools", "decorator",
         "pluggy", "tabulate", "termcolor"]
BUILD = textwrap.dedent("""\
    import sys, time
    from dockrun.engine.lean import connect
    from dockrun.images.build import ensure_env_image
    from dockrun.prepare import prepare_image
    from dockrun.request import RunRequest
    prepared = prepare_image(RunRequest(uri=sys.argv[1]))
    docker = connect()
    t0 = time.perf_counter()
    ensure_env_image(prepared.plan, prepared.settings, docker)
    print(time.perf_counter() - t0)
    """)


def _project(root: Path, packages: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "MLproject").write_text("name: newenv\npython_env: python_env.yaml\nentry_points:\n"
                                    "  main:\n    command: python -c 'print(1)'\n")
    deps = "".join(f"  - {p}\n" for p in packages)
    (root / "python_env.yaml").write_text(f'python: "3.11"\nbuild_dependencies:\n  - pip\ndependencies:\n{deps}')
    return root


class Bench:
    def __init__(self, work: Path, checkouts: dict[str, Path], uv: str, base_image: str):
        self.work, self.checkouts, self.uv, self.base_image = work, checkouts, uv, base_image

    def env(self, arm: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.checkouts[arm]), "DOCKRUN_HOME": str(self.work / f"home-{arm}"),
                "DOCKRUN_BASE_IMAGE": self.base_image, "PYTHONUNBUFFERED": "1"}

    def build(self, arm: str, packages: list[str], tag: str) -> float:
        root = _project(self.work / f"build-{arm}-{tag}", packages)
        p = subprocess.run([sys.executable, "-c", BUILD, str(root)], env=self.env(arm), capture_output=True,
                           text=True, cwd=self.work)
        if p.returncode:
            raise SystemExit(p.stderr[-2000:])
        return float(p.stdout.strip().splitlines()[-1])

    def run(self, arm: str, packages: list[str], tag: str) -> float:
        root = _project(self.work / f"run-{arm}-{tag}", packages)
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "dockrun", "run", str(root)], env=self.env(arm),
                           capture_output=True, text=True, cwd=self.work)
        if p.returncode:
            raise SystemExit(p.stderr[-2000:])
        return time.perf_counter() - t0

    def floor(self, packages: list[str], copy: bool = False) -> float:
        """uv's own time for a fresh venv of ``packages``, its cache warm: hard links from the cache
        (uv's default here), or with ``copy`` the files copied, as any install into an image layer
        must (a link cannot cross from the cache volume into the container's root file system)."""
        venv = self.work / "floor-venv"
        shutil.rmtree(venv, ignore_errors=True)
        env = {**os.environ, "UV_CACHE_DIR": str(self.work / "uv-cache"), "UV_PYTHON_DOWNLOADS": "never",
               "UV_LINK_MODE": "copy" if copy else "hardlink"}
        t0 = time.perf_counter()
        subprocess.run([self.uv, "venv", "-q", "--python", "3.11", str(venv)], env=env, check=True)
        subprocess.run([self.uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *packages],
                       env=env, check=True)
        return time.perf_counter() - t0


def _paired(a: list[float], b: list[float]) -> str:
    ratios = [x / y for x, y in zip(a, b)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--main", type=Path, default=Path("/work/main"), help="the checkout to compare with")
    ap.add_argument("--this", type=Path, default=REPO)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--base-image", default=os.environ.get("DOCKRUN_BASE_IMAGE", "dockrun-base:bookworm"))
    ap.add_argument("--uv", default="/tmp/dockrun-env-bench/mlflow-venv/bin/uv", help="uv for the floor")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dockrun-newenv-"))
    bench = Bench(work, {"main": args.main.resolve(), "this": args.this.resolve()}, args.uv, args.base_image)
    try:
        for i, arm in enumerate(("main", "this")):  # another numpy bound each: a key of its own
            seed = [f"numpy>=1.0.{int(time.time()) % 1000000 + 1 + i}", *BASE[1:]]
            print(f"the base environment of {arm}, built once: {bench.build(arm, seed, 'seed'):.2f} s", flush=True)
        bench.floor(BASE + EXTRA)  # the floor's cache holds every package too
        sets = iter(itertools.combinations(EXTRA, 2))
        arms = ["build, main", "build, this", "run, main", "run, this", "floor", "floor, copying"]
        times: dict[str, list[float]] = {a: [] for a in arms}
        loads = []
        for r in range(args.rounds + 1):  # round 0 is a warm-up
            order = ["main", "this"] if r % 2 == 0 else ["this", "main"]
            load = os.getloadavg()[0]
            row = {}
            for arm in order:
                row[f"build, {arm}"] = bench.build(arm, BASE + list(next(sets)), f"r{r}")
            for arm in order:
                row[f"run, {arm}"] = bench.run(arm, BASE + list(next(sets)), f"r{r}")
            row["floor"] = bench.floor(BASE + list(next(sets)))
            row["floor, copying"] = bench.floor(BASE + list(next(sets)), copy=True)
            print(f"round {r}{' (warm-up)' if r == 0 else ''}, load {load:.1f}: "
                  + ", ".join(f"{a} {row[a]:.2f}" for a in arms), flush=True)
            if r:
                loads.append(load)
                for a in arms:
                    times[a].append(row[a])
        print(f"\nload (1 min) at each counted round: {min(loads):.1f}-{max(loads):.1f}\n")
        print("| arm | median s (min-max) | paired ratio to the floor | to the copying floor | this/main |")
        print("| --- | --- | --- | --- | --- |")
        for a in arms:
            ts = times[a]
            kind = a.split(",")[0]
            against = _paired(ts, times[f"{kind}, main"]) if a.endswith("this") else ""
            print(f"| {a} | {statistics.median(ts):.2f} ({min(ts):.2f}-{max(ts):.2f}) | "
                  f"{_paired(ts, times['floor'])} | {_paired(ts, times['floor, copying'])} | {against} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
