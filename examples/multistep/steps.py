"""Three steps of a toy pipeline; each writes its result into $DOCKRUN_OUTPUT_DIR."""
import argparse
import json
import os
import random

out_dir = os.environ["DOCKRUN_OUTPUT_DIR"]
ap = argparse.ArgumentParser()
ap.add_argument("step")
ap.add_argument("--rows", type=int)
ap.add_argument("--raw")
ap.add_argument("--features")
ap.add_argument("--alpha", type=float)
a = ap.parse_args()

if a.step == "load":
    rng = random.Random(0)
    with open(os.path.join(out_dir, "raw.csv"), "w") as f:
        for _ in range(a.rows):
            x = rng.uniform(0, 10)
            f.write(f"{x},{3 * x + rng.gauss(0, 1)}\n")
    print(f"load: wrote {a.rows} rows")
elif a.step == "featurize":
    with open(a.raw) as f:
        rows = [tuple(map(float, line.split(","))) for line in f]
    with open(os.path.join(out_dir, "features.json"), "w") as f:
        json.dump({"sxy": sum(x * y for x, y in rows), "sxx": sum(x * x for x, _ in rows), "n": len(rows)}, f)
    print(f"featurize: {len(rows)} rows from {a.raw}")
elif a.step == "train":
    path = a.features[len("file://"):] if a.features.startswith("file://") else a.features
    with open(path) as f:
        feats = json.load(f)
    w = feats["sxy"] / (feats["sxx"] + a.alpha)
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump({"w": w}, f)
    print(f"train: w={w:.4f}")
