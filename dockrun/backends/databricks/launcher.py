"""Runs on the Databricks cluster (uploaded to DBFS by dockrun; a spark_python_task): unpack the
project, run its rendered command with bash, exit with its status.

    python launcher.py dbfs:/dockrun/projects/KEY.tar.gz "COMMAND" RUN_ID dbfs:/dockrun/runs/ID/outputs

It uses only the standard library: the cluster has Python, nothing of dockrun's.
"""
import os
import subprocess
import sys
import tarfile
import tempfile


def fuse(path: str) -> str:
    """dbfs:/x -> /dbfs/x, where clusters mount DBFS (DOCKRUN_DBFS_FUSE overrides the mount point)."""
    root = os.environ.get("DOCKRUN_DBFS_FUSE", "/dbfs")
    if path.startswith("dbfs:"):
        path = path[len("dbfs:"):]
    elif path.startswith("/dbfs/"):
        path = path[len("/dbfs"):]
    return root.rstrip("/") + "/" + path.lstrip("/")


def main() -> int:
    archive, command, run_id, outputs = sys.argv[1:5]
    work = tempfile.mkdtemp(prefix="dockrun-")
    with tarfile.open(fuse(archive)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(work, filter="data")
        else:
            tar.extractall(work)  # noqa: S202 - our own archive, made by dockrun
    out_dir = fuse(outputs)
    os.makedirs(out_dir, exist_ok=True)
    env = dict(os.environ, DOCKRUN_RUN_ID=run_id, DOCKRUN_OUTPUT_DIR=out_dir, PYTHONUNBUFFERED="1")
    sys.stdout.flush()
    return subprocess.run(["bash", "-c", command], cwd=work, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
