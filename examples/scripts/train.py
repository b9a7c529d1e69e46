"""A project with no MLproject: each script is an entry point by its path (-e train.py)."""
import argparse
import os

import tabulate

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
args = parser.parse_args()

rows = [(epoch, round(1.0 / epoch, 4)) for epoch in range(1, args.epochs + 1)]
print(tabulate.tabulate(rows, headers=["epoch", "loss"]))
out = os.path.join(os.environ.get("DOCKRUN_OUTPUT_DIR", "."), "losses.txt")
with open(out, "w") as f:
    f.write("\n".join(f"{e} {loss}" for e, loss in rows) + "\n")
print("wrote", out)
