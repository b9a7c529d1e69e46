"""The bench's own MLflow: the latest `mlflow` from PyPI in a venv under a cache folder, made once
and reused (``--upgrade`` asks PyPI again).

    python bench/mlflow_venv.py [--cache ~/.cache/dockrun-bench] [--upgrade]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dockrun-bench"


def ensure_mlflow(cache: Path = DEFAULT_CACHE, upgrade: bool = False) -> Path:
    """The ``mlflow`` executable of the bench's venv, creating the venv (latest MLflow and the Docker
    SDK its docker projects need) when it is missing."""
    venv = cache / "mlflow-venv"
    exe = venv / "bin" / "mlflow"
    if exe.exists() and not upgrade:
        return exe
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "mlflow", "docker"],
                   check=True)
    return exe


def mlflow_version(exe: Path) -> str:
    py = exe.parent / "python"
    return subprocess.run([str(py), "-c", "import mlflow; print(mlflow.__version__)"], check=True,
                          capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--upgrade", action="store_true")
    args = ap.parse_args()
    exe = ensure_mlflow(args.cache, args.upgrade)
    print(exe, mlflow_version(exe))


if __name__ == "__main__":
    main()
