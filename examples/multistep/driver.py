"""A multi-step workflow through the Python API: each step's output folder feeds the next step,
as a `path` parameter (featurize) and as a `uri` parameter (train).

    python examples/multistep/driver.py
"""
import os
import sys

import dockrun

project = os.path.dirname(os.path.abspath(__file__))


def step(entry_point: str, **params: object):
    run = dockrun.execute(project, entry_point=entry_point, parameters=params, synchronous=False)
    if not run.wait():  # check each step's status before going on
        sys.exit(f"step {entry_point} ({run.run_id}) ended {run.get_status()}; stopping")
    print(f"{entry_point}: {run.run_id} {run.get_status()} -> {run.outputs}")
    return run


load = step("load", rows=200)
featurize = step("featurize", raw=os.path.join(load.outputs, "raw.csv"))
train = step("train", features="file://" + os.path.join(featurize.outputs, "features.json"), alpha=0.5)
with open(os.path.join(train.outputs, "model.json")) as f:
    print("model:", f.read())
