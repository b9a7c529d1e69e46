"""The workspace behind a ``databricks`` / ``databricks://PROFILE`` tracking URI: ``databricks``
means what MLflow makes of it (the environment, else the configured or DEFAULT profile);
``databricks://NAME`` means that profile alone (see databricks_api/workspace.py).

MLflow's REST API takes a bearer token: a personal access token as configured, or, with credentials
only the SDK can use (OAuth M2M, Azure, GCP; the `databricks` extra), an access token the SDK gets
for that workspace (short-lived: it is handed to a run's container as DATABRICKS_TOKEN only for
local runs). For ``databricks://NAME`` that is NAME's credentials alone: never DEFAULT's, never the
environment's."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..databricks_api.workspace import Workspace, connect, is_profile_name, other_auth, sdk_installed, workspace
from ..errors import ConfigError


def workspace_credentials(uri: str, environ: Mapping[str, str], where: str = "--tracking-uri",
                          config_file: Path | None = None) -> Workspace:
    profile = uri[len("databricks://"):] if uri.startswith("databricks://") else None
    if (uri != "databricks" and profile is None) or (profile is not None and not is_profile_name(profile)):
        raise ConfigError(f"{where} {uri!r}: expected databricks or databricks://PROFILE (a profile name "
                          "of ~/.databrickscfg)")
    who = f"{where} {uri}"
    try:
        return workspace(environ, config_file, who=who, profile=profile)
    except ConfigError:
        # A profile that is missing or has no credentials stays an error here, before any host is
        # contacted; only settings the SDK can use are handed to it.
        if not sdk_installed() or not other_auth(environ, config_file, profile):
            raise
    ws = connect(environ, who, config_file, profile)  # unified auth, as the backend resolves it
    try:
        headers = ws.headers()
    except (OSError, ValueError) as e:  # the token endpoint did not answer, or refused the credentials
        raise ConfigError(f"{who}: no token from {ws.host}: {' '.join(str(e).split()) or type(e).__name__}") from None
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or not token:
        raise ConfigError(f"{who}: the workspace's credentials ({ws.auth_type}) give no bearer token for "
                          "MLflow's REST API; set DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID/SECRET")
    return Workspace(ws.host, token, auth_type=ws.auth_type)
