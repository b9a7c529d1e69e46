"""Download remote path parameters before a run, into one folder per URI under the storage dir.

One module per source: s3.py (boto3), web.py (http/https, urllib), dbfs.py (the Databricks REST
API), artifacts.py (any other scheme MLflow's artifact repositories know; needs dockrun[mlflow]).
local.py is the storage side they share: where files go, what was fetched last time, and the check
that nothing lands outside the download's folder.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

from ...errors import ParameterError
from ...httpauth import redact
from ...locks import file_lock
from .local import Download, load_known, save_known

# scheme prefix -> module that downloads it; the MLflow-backed ones need the mlflow package.
NATIVE = {"s3://": "s3", "http://": "web", "https://": "web", "dbfs:/": "dbfs"}
VIA_MLFLOW = ("runs:/", "models:/", "mlflow-artifacts:/", "gs://", "wasbs://", "abfss://", "ftp://",
              "sftp://", "hdfs:/", "viewfs:/", "b2://", "r2://")
SCHEMES = (*NATIVE, *VIA_MLFLOW)


def download_inputs(downloads: Mapping[str, str], storage_dir: Path,
                    log: Callable[[str], None] = lambda line: None,
                    tracking_uri: str | None = None) -> dict[str, str]:
    """Fetch each URI into its own folder under ``storage_dir``; returns name -> local path.

    Every URI is checked before the first transfer, so a bad one fails with nothing fetched."""
    modules = {name: _module_for(name, uri) for name, uri in downloads.items()}
    return {name: _download(modules[name], uri, storage_dir, f"parameter {name!r}", log, tracking_uri)
            for name, uri in downloads.items()}


def _module_for(name: str, uri: str):  # noqa: ANN202 - a module
    where = f"parameter {name!r}: {redact(uri)}"
    for prefix, module in NATIVE.items():
        if uri.startswith(prefix):
            return importlib.import_module(f".{module}", __name__)
    if uri.startswith(VIA_MLFLOW):
        if not _has_mlflow():
            raise ParameterError(f"{where}: downloading {uri.split(':', 1)[0]}: URIs needs MLflow: "
                                 "pip install 'dockrun[mlflow]'")
        return importlib.import_module(".artifacts", __name__)
    scheme = uri.split(":", 1)[0]
    raise ParameterError(f"{where}: cannot download {scheme}: paths (supported: "
                         f"{', '.join(SCHEMES)}); pass a local path, or declare the parameter as uri")


def _has_mlflow() -> bool:
    try:
        return importlib.util.find_spec("mlflow") is not None
    except ValueError:  # a None in sys.modules: import blocked
        return False


def _download(module, uri: str, storage_dir: Path, what: str,  # noqa: ANN001 - a module
              log: Callable[[str], None], tracking_uri: str | None) -> str:
    # One folder per URI: a rerun finds what it fetched last time; different inputs never collide.
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    root = storage_dir / key
    shown = redact(uri)
    storage_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(storage_dir, key):  # two runs of the same input take turns, then the second reuses
        fresh = not root.exists()
        root.mkdir(exist_ok=True)
        meta = storage_dir / f"{key}.json"
        d = Download(uri=uri, shown=shown, where=f"{what}: {shown}", root=root, known=load_known(meta),
                     log=log, tracking_uri=tracking_uri)
        try:
            got = module.fetch(d, lambda files: save_known(meta, shown, files))
        except BaseException:
            if fresh:  # nothing half-made left behind
                shutil.rmtree(root, ignore_errors=True)
                meta.unlink(missing_ok=True)
            raise
        save_known(meta, shown, got.files)
        return got.path
