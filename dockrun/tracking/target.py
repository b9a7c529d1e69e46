"""Where a run is tracked, decided from the user's options and environment (pure, but for looking
at the local store's folder and whether MLflow is installed).

Three ways in, as MLflow has them:

    http(s)://...              a tracking server, over its REST API (rest.py; no MLflow on the host)
    databricks[://PROFILE]     the workspace's hosted MLflow: the same REST API, its host and token
    sqlite:///F, file:P, a path  a local store, through MLflow's own client (store.py, the `mlflow`
                               extra), bind-mounted into the container at the same absolute path

With no tracking URI but an experiment or run asked for, the run goes where MLflow itself would
put it: MLflow 3's default store in the caller's folder. A tracking URI on localhost is reachable
from the container only through the host's network, so such runs get ``network_mode=host``
(unless the user chose a network with ``-A network=...``): `mlflow run` users know the other
outcome.
"""
from __future__ import annotations

import importlib.util
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
AUTH_VARS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
             "MLFLOW_TRACKING_INSECURE_TLS")
# The container's MLflow refuses a file store without it, as the host's does.
STORE_VARS = ("MLFLOW_ALLOW_FILE_STORE",)
SERVER, DATABRICKS, STORE = "server", "databricks", "store"
INSTALL_HINT = "pip install 'dockrun[mlflow]'"


@dataclass(frozen=True)
class TrackingTarget:
    uri: str  # a local store's URI is absolute: relative paths are the caller's
    experiment_id: str | None
    experiment_name: str | None
    run_name: str | None
    host_network: bool  # the server is on the host's loopback
    mlflow_run_id: str | None = None  # log into this existing MLflow run (`--run-id`)
    store_dir: str | None = None  # a local store's folder, mounted read-write at the same path
    # A server URI's user and password (``http://user:pw@host``), taken out of ``uri``: used to
    # reach the server (here and in the container), never recorded, shown or logged.
    userinfo: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return uri_kind(self.uri)


def uri_kind(uri: str) -> str:
    """SERVER, DATABRICKS or STORE: which adapter talks to this tracking URI."""
    if uri == "databricks" or uri.startswith("databricks://"):
        return DATABRICKS
    if urllib.parse.urlparse(uri).scheme in ("http", "https"):
        return SERVER
    return STORE


def tracking_target(
    tracking_uri: str | None,
    experiment_name: str | None,
    experiment_id: str | None,
    run_name: str | None,
    environ: Mapping[str, str],
    mlflow_run_id: str | None = None,
    cwd: Path | None = None,
) -> TrackingTarget | None:
    """Tracking is on when a tracking URI is given (option or MLFLOW_TRACKING_URI), or an
    experiment or MLflow run is named (then in MLflow's default store)."""
    if experiment_name and experiment_id:
        raise ConfigError("give --experiment-name or --experiment-id, not both")
    if not (experiment_name or experiment_id):  # as MLflow: the options first, then the environment
        experiment_name = environ.get("MLFLOW_EXPERIMENT_NAME") or None
        experiment_id = None if experiment_name else environ.get("MLFLOW_EXPERIMENT_ID") or None
    cwd = Path(cwd or os.getcwd())
    uri = tracking_uri or environ.get("MLFLOW_TRACKING_URI")
    where = "--tracking-uri" if tracking_uri else "MLFLOW_TRACKING_URI"
    if not uri:
        if not (experiment_name or experiment_id or mlflow_run_id):
            return None
        uri = default_store(cwd)
        where = "MLflow's default store (no --tracking-uri or MLFLOW_TRACKING_URI given)"
    kind = uri_kind(uri)
    store_dir = userinfo = None
    if kind == SERVER:
        uri, userinfo = split_userinfo(uri.rstrip("/"))
    elif kind == DATABRICKS:
        from .databricks import workspace_credentials

        workspace_credentials(uri, environ, where)  # missing credentials fail before anything is built
    else:
        uri, store_dir = local_store(uri, cwd, where)
    host = urllib.parse.urlparse(uri).hostname if kind == SERVER else None
    return TrackingTarget(uri, experiment_id, experiment_name, run_name, (host or "") in LOCAL_HOSTS,
                          mlflow_run_id, store_dir, userinfo)


def split_userinfo(uri: str) -> tuple[str, tuple[str, str] | None]:
    """A server URI without its ``user:password@`` (what may be recorded and shown), and the pair."""
    parts = urllib.parse.urlsplit(uri)
    if "@" not in parts.netloc:
        return uri, None
    pair = (urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or ""))
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl(), pair


def default_store(cwd: Path) -> str:
    """MLflow 3's default: ``./mlruns`` if it already holds experiments, else ``./mlflow.db``."""
    mlruns = cwd / "mlruns"
    try:
        if any(e.is_dir() and e.name.isdigit() and (e / "meta.yaml").exists() for e in mlruns.iterdir()):
            return mlruns.as_uri()
    except OSError:
        pass
    return "sqlite:///" + str(cwd / "mlflow.db")


def local_store(uri: str, cwd: Path, where: str) -> tuple[str, str]:
    """A local store's absolute URI and the folder to mount; relative paths are from ``cwd``."""
    parsed = urllib.parse.urlparse(uri)
    expected = (f"{where} {redact(uri)!r}: expected http(s)://HOST, databricks[://PROFILE], sqlite:///FILE, "
                "file:FOLDER or a folder (for a database server store, run `mlflow server "
                "--backend-store-uri ...` and give its URL)")
    if parsed.scheme == "sqlite":
        if not uri.startswith("sqlite:///") or parsed.netloc:
            raise ConfigError(expected)
        rest, sep, query = uri[len("sqlite:///"):].partition("?")
        if not rest or rest == ":memory:":
            raise ConfigError(f"{where} {uri!r}: an in-memory store cannot be shared with the container; "
                              "expected sqlite:///FILE")
        path = Path(os.path.abspath(cwd / urllib.parse.unquote(rest)))
        folder = path.parent
        if not folder.is_dir():
            raise ConfigError(f"{where} {uri!r}: folder {folder} does not exist")
        absolute = "sqlite:///" + str(path) + (sep + query if sep else "")
        _require_mlflow(where, absolute, ("mlflow", "sqlalchemy", "alembic"))
    elif parsed.scheme in ("file", "") and parsed.netloc in ("", "localhost"):
        path = folder = Path(os.path.abspath(cwd / os.path.expanduser(urllib.parse.unquote(parsed.path))))
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{where} {uri!r}: expected a folder for MLflow's file store, found a file")
        absolute = path.as_uri()
        _require_mlflow(where, absolute, ("mlflow",))
    else:
        raise ConfigError(expected)
    if folder == Path(folder.anchor):
        raise ConfigError(f"{where} {uri!r}: a store at the file system's root cannot be mounted; "
                          "put it in a folder")
    return absolute, str(folder)


def redact(uri: str) -> str:
    """``uri`` without a password, for messages (a database URI may carry one)."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.password is None:
        return uri
    return parsed._replace(netloc=f"{parsed.username}:***@" + parsed.netloc.rpartition("@")[2]).geturl()


def _require_mlflow(where: str, uri: str, modules: tuple[str, ...]) -> None:
    if not all(have_module(m) for m in modules):
        raise ConfigError(f"{where} {uri}: a local MLflow store needs MLflow on this machine: {INSTALL_HINT}")


def have_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def container_env(target: TrackingTarget, experiment_id: str, mlflow_run_id: str,
                  environ: Mapping[str, str], workspace: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the project's MLflow needs to log into the run; credentials only for the target's own
    kind (a Databricks token never goes to a run tracked elsewhere)."""
    env = {"MLFLOW_RUN_ID": mlflow_run_id, "MLFLOW_EXPERIMENT_ID": experiment_id}
    if target.kind == SERVER:
        env["MLFLOW_TRACKING_URI"] = target.uri
        env.update({k: environ[k] for k in AUTH_VARS if environ.get(k)})
        if target.userinfo and all(target.userinfo):  # as in MLflow, the URI's own pair wins
            env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = target.userinfo
    elif target.kind == DATABRICKS:
        # The container has no ~/.databrickscfg: the profile's host and token travel as variables.
        env["MLFLOW_TRACKING_URI"] = "databricks"
        env.update(workspace or {})
    else:
        env["MLFLOW_TRACKING_URI"] = target.uri  # the same absolute path, mounted
        env.update({k: environ[k] for k in STORE_VARS if environ.get(k)})
    return env
