"""MLflow tracking over its REST API (no mlflow dependency on the host): the thin HTTP adapter
that creates MLflow runs and reports their end, for a tracking server or Databricks' hosted MLflow."""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..httpauth import basic, open_url


class MlflowRest:
    """``uri`` has no userinfo (``userinfo`` carries it): the URI may be shown in errors."""

    def __init__(self, uri: str, environ: Mapping[str, str], token: str | None = None,
                 userinfo: tuple[str, str] | None = None):
        self.uri = uri.rstrip("/")
        # MLflow's own order: the URI's user and password, then MLFLOW_TRACKING_USERNAME and
        # _PASSWORD (both set), then MLFLOW_TRACKING_TOKEN; the container's MLflow picks the same.
        # Sent to the server's origin alone (httpauth), never on to a redirect's.
        pair = userinfo or (environ.get("MLFLOW_TRACKING_USERNAME"), environ.get("MLFLOW_TRACKING_PASSWORD"))
        self.credentials: dict[str, str] = {}
        if token:  # a Databricks workspace's
            self.credentials = {"Authorization": f"Bearer {token}"}
        elif pair[0] and pair[1]:
            self.credentials = basic(pair[0], pair[1])
        elif environ.get("MLFLOW_TRACKING_TOKEN"):
            self.credentials = {"Authorization": f"Bearer {environ['MLFLOW_TRACKING_TOKEN']}"}

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              query: dict[str, str] | None = None) -> dict[str, Any]:
        import urllib.error  # lazy: only tracked runs pay for urllib.request's import
        import urllib.request

        url = f"{self.uri}/api/2.0/mlflow/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with open_url(req, self.credentials, 30) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read() or b"{}")
            except ValueError:
                detail = {}
            raise TrackingError(e.code, detail.get("error_code", ""), detail.get("message", str(e))) from None
        except (urllib.error.URLError, OSError) as e:
            raise ConfigError(f"--tracking-uri {self.uri}: cannot reach the MLflow tracking server "
                              f"({getattr(e, 'reason', e)})") from None

    def experiment_id(self, name: str) -> str:
        try:
            found = self._call("GET", "experiments/get-by-name", query={"experiment_name": name})
            return found["experiment"]["experiment_id"]
        except TrackingError as e:
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        try:
            return self._call("POST", "experiments/create", {"name": name})["experiment_id"]
        except TrackingError as e:  # created by a concurrent run in between
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self._call("GET", "experiments/get-by-name", query={"experiment_name": name})[
                "experiment"]["experiment_id"]

    def create_run(self, experiment_id: str, run_name: str | None, tags: Mapping[str, str],
                   params: Mapping[str, str]) -> str:
        body: dict[str, Any] = {"experiment_id": experiment_id, "start_time": int(time.time() * 1000),
                                "tags": [{"key": k, "value": v} for k, v in tags.items()]}
        if run_name:
            body["run_name"] = run_name
        run_id = self._call("POST", "runs/create", body)["run"]["info"]["run_id"]
        if params:
            self._call("POST", "runs/log-batch", {"run_id": run_id, "params": [
                {"key": k, "value": str(v)[:6000]} for k, v in params.items()]})
        return run_id

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        if tags:
            self._call("POST", "runs/log-batch", {"run_id": run_id, "tags": [
                {"key": k, "value": v} for k, v in tags.items()]})

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", "runs/get", query={"run_id": run_id})["run"]

    def end_run(self, run_id: str, status: str) -> None:
        self._call("POST", "runs/update", {"run_id": run_id, "status": status, "end_time": int(time.time() * 1000)})


class TrackingError(ConfigError):
    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(f"MLflow tracking server answered {status} {error_code}: {message}".strip())
        self.error_code = error_code

