"""The Databricks REST adapter (DBFS API 2.0, Jobs API 2.1): urllib, tenacity retries for transport
errors, 429 and 5xx; a 4xx is a one-line DatabricksError. Shared by the Databricks backend and by
`dbfs:/` path inputs, so it sits below both."""
from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from ..errors import RemoteError
from .workspace import Workspace

BLOCK = 1 << 20  # DBFS put and add-block take at most 1 MB per call


class _Retry(Exception):
    pass


class DatabricksClient:
    def __init__(self, ws: Workspace):
        self.ws = ws

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
             query: Mapping[str, Any] | None = None) -> dict[str, Any]:
        from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

        # Only transport errors, 429 and 5xx are retried: a 4xx answer is final.
        @retry(retry=retry_if_exception_type(_Retry), stop=stop_after_attempt(4),
               wait=wait_exponential(multiplier=0.5, max=8), reraise=True)
        def once() -> dict[str, Any]:
            return self._once(method, path, body, query)

        try:
            return once()
        except _Retry as e:
            raise RemoteError(f"Databricks {self.ws.host}: {e}") from None

    def _once(self, method: str, path: str, body: Mapping[str, Any] | None,
              query: Mapping[str, Any] | None) -> dict[str, Any]:
        import urllib.error
        import urllib.request

        url = f"{self.ws.host}/api/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.ws.token}", "Content-Type": "application/json",
            "User-Agent": "dockrun"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                detail = json.loads(text)
            except ValueError:
                detail = {"message": text.strip()[:200]}
            if e.code == 429 or e.code >= 500:
                raise _Retry(f"{e.code} {detail.get('error_code', '')}".strip()) from None
            raise DatabricksError(e.code, detail.get("error_code", ""), detail.get("message", "")) from None
        except (urllib.error.URLError, OSError) as e:
            raise _Retry(f"cannot reach the workspace ({getattr(e, 'reason', e)})") from None

    # DBFS: its endpoints take absolute paths (/x); dbfs:/x is the form tasks and users write.
    def exists(self, path: str) -> bool:
        try:
            self.call("GET", "2.0/dbfs/get-status", query={"path": _dbfs_path(path)})
            return True
        except DatabricksError as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST" or e.status == 404:
                return False
            raise

    def upload(self, path: str, data: bytes) -> None:
        """Put a file (streamed in 1 MB blocks when larger than one call may carry)."""
        path = _dbfs_path(path)
        if len(data) <= BLOCK:
            self.call("POST", "2.0/dbfs/put", {"path": path, "contents": base64.b64encode(data).decode(),
                                               "overwrite": True})
            return
        handle = self.call("POST", "2.0/dbfs/create", {"path": path, "overwrite": True})["handle"]
        for i in range(0, len(data), BLOCK):
            self.call("POST", "2.0/dbfs/add-block", {"handle": handle,
                                                     "data": base64.b64encode(data[i:i + BLOCK]).decode()})
        self.call("POST", "2.0/dbfs/close", {"handle": handle})

    # Jobs
    def submit(self, body: Mapping[str, Any]) -> str:
        return str(self.call("POST", "2.1/jobs/runs/submit", body)["run_id"])

    def get(self, run_id: str) -> dict[str, Any]:
        return self.call("GET", "2.1/jobs/runs/get", query={"run_id": run_id})

    def cancel(self, run_id: str) -> None:
        self.call("POST", "2.1/jobs/runs/cancel", {"run_id": int(run_id)})

    def output(self, task_run_id: str) -> dict[str, Any]:
        return self.call("GET", "2.1/jobs/runs/get-output", query={"run_id": task_run_id})


def _dbfs_path(path: str) -> str:
    return "/" + path[len("dbfs:"):].lstrip("/") if path.startswith("dbfs:") else path


class DatabricksError(RemoteError):
    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(f"Databricks answered {status} {error_code}: {message}".strip())
        self.status, self.error_code = status, error_code
        # A refused token or request is the user's to fix (exit 2, like a Git auth failure).
        self.exit_code = 2 if 400 <= status < 500 else 1
