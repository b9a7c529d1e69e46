"""Fit a logistic regression on scikit-learn's bundled iris data (no download) and report accuracy."""
import argparse
import json
import os

import mlflow
import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

ap = argparse.ArgumentParser()
ap.add_argument("--C", type=float, default=1.0)
args = ap.parse_args()

X, y = load_iris(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
model = LogisticRegression(C=args.C, max_iter=500).fit(X_train, y_train)
accuracy = float(np.mean(model.predict(X_test) == y_test))
print(pd.Series({"C": args.C, "accuracy": round(accuracy, 4)}).to_string())
print(f"numpy {np.__version__}, pandas {pd.__version__}, mlflow {mlflow.__version__}")
with open(os.path.join(os.environ.get("DOCKRUN_OUTPUT_DIR", "."), "metrics.json"), "w") as f:
    json.dump({"C": args.C, "accuracy": accuracy}, f)
tracked_run = os.environ.get("MLFLOW_RUN_ID")  # set by `dockrun run ... --tracking-uri URL`
if tracked_run:
    with mlflow.start_run():  # resumes that run
        mlflow.log_metric("accuracy", accuracy)
    print("logged to MLflow run", tracked_run)
