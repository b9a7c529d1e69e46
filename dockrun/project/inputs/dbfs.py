"""dbfs:/ inputs through the Databricks REST API (DBFS 2.0: get-status, list, read in 1 MB chunks),
with the workspace and token the Databricks backend uses."""
from __future__ import annotations

import base64
import os
import posixpath
from collections.abc import Iterator, Mapping
from typing import Callable

from ...databricks_api.client import BLOCK, DatabricksClient, DatabricksError
from ...databricks_api.workspace import connect
from ...errors import ParameterError, RemoteError
from .local import Download, Entry, Fetched, Fingerprint, sync


def fetch(d: Download, save: Callable[[Mapping[str, Fingerprint]], None]) -> Fetched:
    path = "/" + d.uri[len("dbfs:"):].lstrip("/")
    client = DatabricksClient(connect(os.environ, who=d.where))
    try:
        status = client.call("GET", "2.0/dbfs/get-status", query={"path": path})
        name = posixpath.basename(path.rstrip("/")) or "dbfs"
        if status.get("is_dir"):
            entries = [Entry(p, f"{name}/{rel}", fp) for p, rel, fp in _walk(client, path.rstrip("/"), d)]
            if not entries:
                raise ParameterError(f"{d.where}: the folder is empty")
        else:
            entries = [Entry(path, name, _fingerprint(status))]
        return sync(d, name, entries, lambda e, tmp: _read(client, e.key, tmp), save)
    except DatabricksError as e:
        if e.status == 404 or e.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ParameterError(f"{d.where}: no such file or folder on DBFS") from None
        raise ParameterError(f"{d.where}: {e}") from None
    except RemoteError as e:  # the workspace did not answer, even after retries
        raise ParameterError(f"{d.where}: {e}") from None


def _fingerprint(status: Mapping) -> dict:
    # DBFS has no ETag: a file's size and modification time say whether it changed.
    return {"size": status.get("file_size"), "mtime": status.get("modification_time")}


def _walk(client: DatabricksClient, folder: str, d: Download) -> Iterator[tuple[str, str, dict]]:
    """(DBFS path, path under ``folder``, fingerprint) of every file below ``folder``."""
    pending = [folder]
    while pending:
        here = pending.pop()
        for f in client.call("GET", "2.0/dbfs/list", query={"path": here or "/"}).get("files", []):
            full = str(f.get("path", ""))
            full = full[len("dbfs:"):] if full.startswith("dbfs:") else full
            if not full.startswith(folder + "/"):
                raise ParameterError(f"{d.where}: refusing the listed path {full!r}: it is not inside "
                                     f"{folder or '/'}")
            if f.get("is_dir"):
                pending.append(full.rstrip("/"))
            else:
                yield full, full[len(folder) + 1:], _fingerprint(f)


def _read(client: DatabricksClient, path: str, tmp: str) -> None:
    with open(tmp, "wb") as out:
        offset = 0
        while True:
            got = client.call("GET", "2.0/dbfs/read", query={"path": path, "offset": offset, "length": BLOCK})
            data = base64.b64decode(got.get("data") or "")
            out.write(data)
            offset += len(data)
            if len(data) < BLOCK:  # a short read is the end of the file
                return
