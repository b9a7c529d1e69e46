"""A tiny 'training' script: reads a CSV, fits y = w*x with L2 penalty alpha, writes a report."""
import argparse
import csv
import os

from tabulate import tabulate

parser = argparse.ArgumentParser()
parser.add_argument("--alpha", type=float, required=True)
parser.add_argument("--data", required=True)
args = parser.parse_args()

with open(args.data, newline="") as f:
    rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(f)]
w = sum(x * y for x, y in rows) / (sum(x * x for x, _ in rows) + args.alpha)
loss = sum((y - w * x) ** 2 for x, y in rows) / len(rows)

print(tabulate([["alpha", args.alpha], ["w", round(w, 4)], ["loss", round(loss, 4)]], headers=["", "value"]))
out = os.path.join(os.environ.get("DOCKRUN_OUTPUT_DIR", "."), "metrics.csv")
with open(out, "w") as f:
    f.write(f"alpha,w,loss\n{args.alpha},{w},{loss}\n")
print(f"wrote {out}")
