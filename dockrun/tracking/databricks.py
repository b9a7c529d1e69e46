"""The workspace behind a ``databricks`` / ``databricks://PROFILE`` tracking URI: ``databricks``
means what MLflow makes of it (the environment, else the configured or DEFAULT profile);
``databricks://NAME`` means that profile alone (see databricks_api/workspace.py)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..databricks_api.workspace import Workspace, is_profile_name, workspace
from ..errors import ConfigError


def workspace_credentials(uri: str, environ: Mapping[str, str], where: str = "--tracking-uri",
                          config_file: Path | None = None) -> Workspace:
    profile = uri[len("databricks://"):] if uri.startswith("databricks://") else None
    if (uri != "databricks" and profile is None) or (profile is not None and not is_profile_name(profile)):
        raise ConfigError(f"{where} {uri!r}: expected databricks or databricks://PROFILE (a profile name "
                          "of ~/.databrickscfg)")
    return workspace(environ, config_file, who=f"{where} {uri}", profile=profile)
