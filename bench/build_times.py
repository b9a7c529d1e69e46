"""Build times: cold (environment + code), warm (nothing to build) and code-only change (code layer
on the cached environment), for a python_env project with one small dependency. Each round's cold
build gets a new environment key from a requirement whose marker never applies (so the install
itself is the same); the base image stays cached, as on a developer's machine.

    python bench/build_times.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


def build(project: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dockrun.cli", "build", "-q", str(project)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cold, warm, code = [], [], []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "buildbench"
            p.mkdir()
            # A unique but equivalent environment: a new key, so the first build is cold.
            never = f"'six>=1.{uuid.uuid4().int % 10**6}; python_version < \"3\"'"
            (p / "python_env.yaml").write_text(f"python: '3.11'\ndependencies: [tabulate==0.9.0, {never}]\n")
            (p / "main.py").write_text("print('hi')\n")
            cold.append(build(p))
            warm.append(build(p))
            (p / "main.py").write_text(f"print('hi {i}')\n")
            code.append(build(p))
    for name, xs in (("cold (env + code)", cold), ("warm (nothing)", warm), ("code-only change", code)):
        print(f"{name:18s}: median {statistics.median(xs):6.2f} s  (all: {', '.join(f'{x:.2f}' for x in xs)})")
    print(f"ratios: cold/warm = {statistics.median(cold) / statistics.median(warm):.1f}, "
          f"code-only/warm = {statistics.median(code) / statistics.median(warm):.1f}")


if __name__ == "__main__":
    main()
