"""A parallel hyperparameter sweep through the Python API: a grid of alphas over the hello
project, at most --parallel runs at once; prints the best run by the loss each run writes to its
output folder. The image is built once (the first runs to need it wait for that build).

    python examples/sweep/driver.py [--parallel 4] [--alphas 0.01,0.1,0.3,1,3]
"""
import argparse
import csv
import os
from concurrent.futures import ThreadPoolExecutor

import dockrun

ap = argparse.ArgumentParser()
ap.add_argument("--project", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hello"))
ap.add_argument("--parallel", type=int, default=4)
ap.add_argument("--alphas", default="0.01,0.03,0.1,0.3,1,3,10,30")
args = ap.parse_args()


def trial(alpha: str) -> tuple[float, str, str]:
    run = dockrun.execute(args.project, parameters={"alpha": alpha}, synchronous=False, log=lambda line: None)
    if not run.wait():
        return float("inf"), alpha, run.run_id
    with open(os.path.join(run.outputs, "metrics.csv")) as f:
        loss = float(next(csv.DictReader(f))["loss"])
    print(f"alpha={alpha:<6} loss={loss:.5f} run={run.run_id}", flush=True)
    return loss, alpha, run.run_id


with ThreadPoolExecutor(max_workers=args.parallel) as pool:
    results = list(pool.map(trial, args.alphas.split(",")))
loss, alpha, run_id = min(results)
print(f"best: alpha={alpha} loss={loss:.5f} run={run_id}")
