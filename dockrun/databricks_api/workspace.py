"""Which workspace and token (pure, but for reading ~/.databrickscfg).

DATABRICKS_HOST / DATABRICKS_TOKEN, else the profile DATABRICKS_CONFIG_PROFILE (or DEFAULT) of
~/.databrickscfg, as the Databricks tools read them. A profile named explicitly (``databricks://NAME``
as a tracking URI) means that profile alone: it never borrows another's host or token, and DEFAULT
is a profile like any other, not a fallback for missing keys.
"""
from __future__ import annotations

import configparser
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

_PROFILE = re.compile(r"^[A-Za-z0-9_.@-]+$")


@dataclass(frozen=True)
class Workspace:
    host: str
    token: str

    def __repr__(self) -> str:  # the token must never reach a log or a traceback
        return f"Workspace(host={self.host!r}, token='***')"

    def as_env(self) -> dict[str, str]:
        return {"DATABRICKS_HOST": self.host, "DATABRICKS_TOKEN": self.token}


def workspace(environ: Mapping[str, str], config_file: Path | None = None, who: str = "--backend databricks",
              profile: str | None = None) -> Workspace:
    """The workspace to talk to. ``who`` starts the error, so the user learns what needed it (the
    backend, a `dbfs:/` parameter, a tracking URI)."""
    cfg = config_file or Path(environ.get("DATABRICKS_CONFIG_FILE", "~/.databrickscfg")).expanduser()
    if profile is not None:
        if not is_profile_name(profile):
            raise ConfigError(f"{who}: {profile!r} is not a profile name of ~/.databrickscfg")
        section = _section(cfg, profile)
        host, token = section.get("host"), section.get("token")
        need = f"a [{profile}] profile with host and token in {cfg}"
    else:
        host, token = environ.get("DATABRICKS_HOST"), environ.get("DATABRICKS_TOKEN")
        if not (host and token):
            named = environ.get("DATABRICKS_CONFIG_PROFILE") or "DEFAULT"
            section = _section(cfg, named)
            host, token = host or section.get("host"), token or section.get("token")
        need = "DATABRICKS_HOST and DATABRICKS_TOKEN (or a profile in ~/.databrickscfg)"
    if not host or not token:
        raise ConfigError(f"{who}: set {need}")
    if not host.startswith(("https://", "http://")):
        host = "https://" + host
    return Workspace(host.rstrip("/"), token)


def is_profile_name(name: str) -> bool:
    return bool(_PROFILE.match(name))


def _section(cfg: Path, name: str) -> Mapping[str, str]:
    if not cfg.is_file():
        return {}
    parser = configparser.ConfigParser(default_section="\0")  # DEFAULT is a profile like any other
    try:
        parser.read(cfg)
    except configparser.Error as e:
        raise ConfigError(f"{cfg}: not a valid Databricks config file ({type(e).__name__})") from None
    return dict(parser[name]) if parser.has_section(name) else {}
