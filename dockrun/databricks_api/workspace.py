"""Which workspace, and how to authenticate to it.

Two ways, one set of rules (those of the Databricks CLI and SDKs, "unified auth"):

* With the ``databricks`` extra (``databricks-sdk``) installed, ``connect`` hands the settings to
  the SDK's ``Config``: PAT, OAuth M2M (DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET), Azure,
  GCP, profiles and environment variables resolve exactly as the CLI resolves them, and request
  headers come from it (OAuth tokens fetched and refreshed by the SDK).
* Without it, ``workspace`` reads DATABRICKS_HOST / DATABRICKS_TOKEN, else the profile
  DATABRICKS_CONFIG_PROFILE (or DEFAULT) of ~/.databrickscfg: personal access tokens only; OAuth,
  Azure or GCP settings are one line asking for the extra.

Either way a profile named explicitly (``databricks://NAME``, DATABRICKS_CONFIG_PROFILE) means that
profile alone: it never borrows another's host or token, DEFAULT is a profile like any other, and a
profile that does not exist is an error naming it before any host is contacted. The configuration
file is read only when the environment names no host and no credentials (the SDK's rule), so
DEFAULT's token never goes to the environment's host.
"""
from __future__ import annotations

import configparser
import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import seconds
from ..errors import ConfigError

_PROFILE = re.compile(r"^[A-Za-z0-9_.@-]+$")
EXTRA = "pip install 'dockrun[databricks]'"
SETUP_RETRY_S = 3
# Settings (environment variable, profile key) that mean some authentication other than a PAT:
# the SDK's names for OAuth M2M/U2M, Azure, GCP, OIDC federation and the metadata service.
OTHER_AUTH = {
    "DATABRICKS_CLIENT_ID": "client_id", "DATABRICKS_CLIENT_SECRET": "client_secret",
    "DATABRICKS_AUTH_TYPE": "auth_type", "ARM_CLIENT_ID": "azure_client_id",
    "ARM_CLIENT_SECRET": "azure_client_secret", "ARM_TENANT_ID": "azure_tenant_id", "ARM_USE_MSI": "azure_use_msi",
    "DATABRICKS_AZURE_RESOURCE_ID": "azure_workspace_resource_id", "GOOGLE_CREDENTIALS": "google_credentials",
    "DATABRICKS_GOOGLE_SERVICE_ACCOUNT": "google_service_account",
    "DATABRICKS_METADATA_SERVICE_URL": "metadata_service_url", "DATABRICKS_OIDC_TOKEN_ENV": "oidc_token_env",
    "DATABRICKS_OIDC_TOKEN_FILEPATH": "oidc_token_filepath", "DATABRICKS_USERNAME": "username",
}


@dataclass(frozen=True)
class Workspace:
    host: str
    token: str = ""  # a personal access token, when resolved without the SDK
    # The SDK's header factory (fresh OAuth tokens, Azure/GCP credentials); None: the PAT above.
    authenticate: Callable[[], Mapping[str, str]] | None = field(default=None, compare=False)
    auth_type: str = "pat"

    def __repr__(self) -> str:  # a token or secret must never reach a log or a traceback
        return f"Workspace(host={self.host!r}, auth_type={self.auth_type!r}, token='***')"

    def headers(self) -> dict[str, str]:
        if self.authenticate is not None:
            return dict(self.authenticate())
        return {"Authorization": f"Bearer {self.token}"}

    def as_env(self) -> dict[str, str]:
        return {"DATABRICKS_HOST": self.host, "DATABRICKS_TOKEN": self.token}


def sdk_installed() -> bool:
    """Whether the `databricks` extra is there; found without importing it (`--help` stays fast)."""
    try:
        return importlib.util.find_spec("databricks.sdk") is not None
    except (ImportError, ValueError):
        return False


def workspace(environ: Mapping[str, str], config_file: Path | None = None, who: str = "--backend databricks",
              profile: str | None = None) -> Workspace:
    """The workspace and its personal access token, without the SDK. ``who`` starts the error, so the
    user learns what needed it (the backend, a `dbfs:/` parameter, a tracking URI)."""
    cfg = _config_path(environ, config_file)
    named = _named_profile(environ, profile, who)
    if named is not None:
        section = _profile(cfg, named, who)
        host, token = section.get("host"), section.get("token")
        if profile is not None:
            need = f"a [{named}] profile with host and token in {cfg}"
        else:
            need = f"host and token in the [{named}] profile of {cfg}, or DATABRICKS_HOST and DATABRICKS_TOKEN"
            host, token = environ.get("DATABRICKS_HOST") or host, environ.get("DATABRICKS_TOKEN") or token
    else:
        host, token = environ.get("DATABRICKS_HOST"), environ.get("DATABRICKS_TOKEN")
        section = {}
        if not (host or token or _other_auth(environ, {})):  # the SDK's rule: the file only when the env is silent
            section = _sections(cfg).get(_default_profile(cfg), {})
            host, token = section.get("host"), section.get("token")
        need = "DATABRICKS_HOST and DATABRICKS_TOKEN (or a profile in ~/.databrickscfg)"
    if not token:
        other = _other_auth(environ, section)
        if other:
            raise ConfigError(f"{who}: {other} needs the Databricks SDK for its authentication: {EXTRA}")
    if not host or not token:
        raise ConfigError(f"{who}: set {need}")
    return Workspace(_fix_host(host), token)


def check(environ: Mapping[str, str], who: str = "--backend databricks", profile: str | None = None,
          config_file: Path | None = None) -> None:
    """What can be checked of the credentials without contacting any host: a named profile exists,
    a host is known, and without the SDK a PAT is there. The SDK decides the rest when connecting."""
    if not sdk_installed():
        workspace(environ, config_file, who, profile)
        return
    cfg = _config_path(environ, config_file)
    named = _named_profile(environ, profile, who)
    if named is not None:
        section = _profile(cfg, named, who)  # a profile that is not there is an error, whatever else is set
        host = (None if profile is not None else environ.get("DATABRICKS_HOST")) or section.get("host")
    else:
        host = environ.get("DATABRICKS_HOST") or _sections(cfg).get(_default_profile(cfg), {}).get("host")
    if not host and not environ.get("DATABRICKS_AZURE_RESOURCE_ID"):
        where = f"the [{named}] profile of {cfg}" if named else "DATABRICKS_HOST or a profile in ~/.databrickscfg"
        raise ConfigError(f"{who}: no workspace host: set host in {where}")


def connect(environ: Mapping[str, str], who: str = "--backend databricks",
            config_file: Path | None = None, profile: str | None = None) -> Workspace:
    """The workspace to call, with its credentials: through the SDK's unified auth when installed
    (this may contact the host: its metadata, OAuth discovery and tokens), else `workspace`. The
    profile is DATABRICKS_CONFIG_PROFILE's, as for the CLI; ``profile`` (a ``databricks://NAME``
    tracking URI) means that profile alone, with nothing taken from the environment."""
    check(environ, who, profile, config_file)
    if not sdk_installed():
        return workspace(environ, config_file, who, profile)
    import logging

    from databricks.sdk.core import Config

    sdk_log = logging.getLogger("databricks.sdk")
    if not sdk_log.handlers:  # dockrun says what failed in one line; the SDK's warnings are not for users
        sdk_log.addHandler(logging.NullHandler())
    if profile is not None:
        settings = {"profile": profile, "config_file": str(_config_path(environ, config_file))}
    else:
        settings = _sdk_settings(Config, environ)
        if config_file is not None:
            settings["config_file"] = str(config_file)
    try:
        # The SDK's own calls at setup (host metadata) retry a refused connection for this long: a
        # wrong host must fail in seconds, as dockrun's own calls do, not after the SDK's 5 minutes.
        setup = {"retry_timeout_seconds": min(_budget(environ), SETUP_RETRY_S), "product": "dockrun", **settings}
        cfg = Config(**setup) if profile is None else _profile_only(Config, who, setup)
    except ValueError as e:
        if "cannot configure default credentials" in str(e):  # nothing the SDK knows applies: say what would
            where = settings.get("host") or f"the [{settings.get('profile', 'DEFAULT')}] profile"
            raise ConfigError(f"{who}: set DATABRICKS_HOST and DATABRICKS_TOKEN (or DATABRICKS_CLIENT_ID and "
                              "DATABRICKS_CLIENT_SECRET), or host and credentials in a profile of "
                              "~/.databrickscfg (DATABRICKS_CONFIG_PROFILE): none found for "
                              f"{where}") from None
        raise ConfigError(f"{who}: Databricks credentials: {_one_line(str(e))}") from None
    return Workspace(str(cfg.host).rstrip("/"), "", cfg.authenticate, str(cfg.auth_type or "default"))


def other_auth(environ: Mapping[str, str], config_file: Path | None = None, profile: str | None = None) -> str:
    """The first setting of the credentials in use that means something other than a PAT (OAuth,
    Azure, GCP, ...: only the SDK can use it); '' when there is none. ``profile``: that profile's
    own settings alone (the environment does not count)."""
    cfg = _config_path(environ, config_file)
    if profile is not None:
        return _other_auth({}, _sections(cfg).get(profile, {}))
    named = environ.get("DATABRICKS_CONFIG_PROFILE") or None
    section: Mapping[str, str] = {}
    if named is not None:
        section = _sections(cfg).get(named, {})
    elif not (environ.get("DATABRICKS_HOST") or environ.get("DATABRICKS_TOKEN") or _other_auth(environ, {})):
        section = _sections(cfg).get(_default_profile(cfg), {})
    return _other_auth(environ, section)


def _profile_only(config: type, who: str, settings: Mapping[str, Any]) -> Any:
    """The SDK's Config made without its environment loader: the SDK fills a named profile's gaps from
    DATABRICKS_* variables (another workspace's host or token), and a profile must mean itself alone.
    The loader is a private method, so an SDK without it is refused rather than silently trusted."""
    if not callable(getattr(config, "_load_from_env", None)):
        raise ConfigError(f"{who}: this databricks-sdk cannot be kept from mixing the environment into a "
                          f"named profile; use a profile with a token, or {EXTRA} at a tested version")
    cfg = config.__new__(config)
    cfg._load_from_env = lambda: None  # shadows the method for this one object, before __init__ calls it
    config.__init__(cfg, **settings)
    return cfg


def is_profile_name(name: str) -> bool:
    return bool(_PROFILE.match(name))


def _sdk_settings(config: type, environ: Mapping[str, str]) -> dict[str, str]:
    """The SDK's own settings taken from ``environ`` (its attribute table, so new ones come for free):
    the same values the SDK would read from the process environment, in the same order of precedence."""
    out = {}
    for attr in config.attributes():  # type: ignore[attr-defined]
        for name in [attr.env, *getattr(attr, "env_aliases", [])]:
            if name and environ.get(name):
                out[attr.name] = environ[name]
                break
    return out


def _budget(environ: Mapping[str, str]) -> int:
    return max(1, int(seconds("DOCKRUN_DATABRICKS_RETRY_S", environ)))  # the SDK takes whole seconds, 1 or more


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fix_host(host: str) -> str:
    if not host.startswith(("https://", "http://")):
        host = "https://" + host
    return host.rstrip("/")


def _config_path(environ: Mapping[str, str], config_file: Path | None) -> Path:
    return config_file or Path(environ.get("DATABRICKS_CONFIG_FILE", "~/.databrickscfg")).expanduser()


def _named_profile(environ: Mapping[str, str], profile: str | None, who: str) -> str | None:
    named = profile if profile is not None else environ.get("DATABRICKS_CONFIG_PROFILE") or None
    if named is not None and not is_profile_name(named):
        raise ConfigError(f"{who}: {named!r} is not a profile name of ~/.databrickscfg")
    return named


def _other_auth(environ: Mapping[str, str], section: Mapping[str, str]) -> str:
    """The first setting that means OAuth, Azure, GCP, ... ('' when there is none)."""
    for env, key in OTHER_AUTH.items():
        if environ.get(env):
            return env
        if section.get(key):
            return f"{key} in the profile"
    return ""


def _profile(cfg: Path, name: str, who: str) -> Mapping[str, str]:
    sections = _sections(cfg)
    if name not in sections:
        raise ConfigError(f"{who}: profile {name!r} is not in {cfg}" + ("" if cfg.is_file() else " (no such file)"))
    return sections[name]


def _default_profile(cfg: Path) -> str:
    """The profile used when none is named: [__settings__] default_profile, else DEFAULT (the CLI's rule)."""
    return _sections(cfg).get("__settings__", {}).get("default_profile", "").strip() or "DEFAULT"


def _sections(cfg: Path) -> dict[str, dict[str, str]]:
    if not cfg.is_file():
        return {}
    parser = configparser.ConfigParser(default_section="\0")  # DEFAULT is a profile like any other
    try:
        parser.read(cfg)
    except configparser.Error as e:
        raise ConfigError(f"{cfg}: not a valid Databricks config file ({type(e).__name__})") from None
    return {name: dict(parser[name]) for name in parser.sections()}
