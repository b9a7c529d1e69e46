"""Any other scheme MLflow's artifact repositories know (runs:/, models:/, gs://, wasbs://,
mlflow-artifacts:/, ...), through `mlflow.artifacts.download_artifacts` (the dockrun[mlflow] extra).

MLflow gives no cheap "has it changed?" for these, so each run downloads again: into a temp folder
inside the download's folder, swapped into place only when complete.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

from ...errors import ParameterError
from .local import Download, Fetched, Fingerprint, safe_rel


def fetch(d: Download, save: Callable[[Mapping[str, Fingerprint]], None]) -> Fetched:
    import mlflow.artifacts  # lazy: seconds to import, and only with the extra

    save({})
    d.log(f"downloading {d.shown}")
    scratch = Path(tempfile.mkdtemp(dir=d.root, prefix=".part-"))
    try:
        try:
            got = Path(mlflow.artifacts.download_artifacts(artifact_uri=d.uri, dst_path=str(scratch),
                                                           tracking_uri=d.tracking_uri))
        except Exception as e:  # noqa: BLE001 - MLflow's errors share no base class worth naming
            first = (str(e).strip().splitlines() or [e.__class__.__name__])[0][:300]
            raise ParameterError(f"{d.where}: MLflow could not download it ({first})") from None
        if os.path.commonpath([got.resolve(), scratch.resolve()]) != str(scratch.resolve()):
            raise ParameterError(f"{d.where}: MLflow placed the download outside the storage dir")
        name = safe_rel(got.name, d, got.name)
        for old in d.root.iterdir():  # the last download's copy, whatever its name was
            if old != scratch:
                shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
        os.replace(got, d.root / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    final = d.root / name
    files = [final] if final.is_file() else [p for p in final.rglob("*") if p.is_file()]
    return Fetched(str(final), {p.relative_to(d.root).as_posix(): {"size": p.stat().st_size} for p in files})
