"""A warm `dockrun run` as an installed dockrun runs it (a venv with `pip install .`, no editable
finder, none of the development machine's .pth files), served and in-process, against a bare
`docker run`, interleaved round by round (paired ratios).

    python -m venv /tmp/vinst && /tmp/vinst/bin/pip install .
    setsid python bench/installed_warm.py 31 --dockrun /tmp/vinst/bin/dockrun < /dev/null
    setsid python bench/installed_warm.py 31 --dockrun /tmp/vinst/bin/dockrun --python-env < /dev/null
    setsid python bench/installed_warm.py 21 --dockrun /tmp/vinst/bin/dockrun --before /tmp/vbase/bin/dockrun

Run it without a controlling terminal (setsid, stdin from /dev/null): a command with one is not served. Needs
DOCKRUN_BASE_IMAGE (a local image both arms run).
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("rounds", type=int, nargs="?", default=21)
ap.add_argument("--dockrun", default="dockrun", help="the installed dockrun command")
ap.add_argument("--python-env", action="store_true",
                help="a python_env project (no dependencies; its environment image built once) instead of docker_env")
ap.add_argument("--before", metavar="DOCKRUN",
                help="another installed dockrun (say, main's) measured in the same rounds, both ways")
args = ap.parse_args()
base = os.environ.get("DOCKRUN_BASE_IMAGE", "dockrun-base:bookworm")
work = Path(tempfile.mkdtemp(prefix="dockrun-installed-warm-"))
(work / "p").mkdir()
if args.python_env:  # the usual project: its python_env.yaml is read on every run
    (work / "p" / "MLproject").write_text("name: w\npython_env: python_env.yaml\nentry_points:\n  main:\n"
                                          "    command: \"true\"\n")
    (work / "p" / "python_env.yaml").write_text("python: \"3.11\"\ndependencies: []\n")
else:
    (work / "p" / "MLproject").write_text(f"name: w\ndocker_env:\n  image: {base}\nentry_points:\n  main:\n"
                                          "    command: \"true\"\n")
env = {**os.environ, "DOCKRUN_BASE_IMAGE": base, "DOCKRUN_HOME": str(work / "home")}
arms = {
    "bare docker run": (["docker", "run", "--rm", base, "true"], {}),
    "installed dockrun, in-process": ([args.dockrun, "run", str(work / "p")], {"DOCKRUN_WARMSTART": "0"}),
    "installed dockrun, served": ([args.dockrun, "run", str(work / "p")], {}),
}
if args.before:
    arms["before, in-process"] = ([args.before, "run", str(work / "p")], {"DOCKRUN_WARMSTART": "0"})
    arms["before, served"] = ([args.before, "run", str(work / "p")], {})
for cmd, extra in arms.values():  # warm up: image built, helper started, pyc written
    for _ in range(2):
        subprocess.run(cmd, env={**env, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
times = {k: [] for k in arms}
for _ in range(args.rounds):
    for name, (cmd, extra) in arms.items():
        t = time.perf_counter()
        subprocess.run(cmd, env={**env, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times[name].append(time.perf_counter() - t)
bare = times["bare docker run"]
for name, ts in times.items():
    ratios = sorted(t / b for t, b in zip(ts, bare))
    print(f"{name:32s} median {statistics.median(ts):.3f} s, paired ratio median {statistics.median(ratios):.2f} "
          f"({ratios[0]:.2f}-{ratios[-1]:.2f})")
