"""Settings read from the environment once, as frozen data (no global state)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PYTHON = "3.12"
# Not a default any more: conda.yaml installs with py-rattler from PyPI unless a micromamba image is
# configured (Docker Hub is not reachable everywhere). Named in messages as an example value.
EXAMPLE_MICROMAMBA_IMAGE = "mambaorg/micromamba:1.5.10-bookworm-slim"
DEFAULT_CONDA_BASE = "debian:bookworm-slim"

# Settings a build needs to reach a package index from behind a proxy. Their values are passed as
# build args to the installing stage only, never into the final image or the environment key.
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
INDEX_VARS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "UV_INDEX_URL",
              "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX")
CA_VARS = ("DOCKRUN_CA_BUNDLE", "SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def credential_settings(build_args: Mapping[str, str]) -> list[str]:
    """The build settings whose URLs carry a credential (``user:token@`` or ``token@`` before the
    host), by name; a value that repeats an earlier one (UV_DEFAULT_INDEX copied from PIP_INDEX_URL)
    is named once, by the variable the user set."""
    import re

    names, seen = [], set()
    for name, value in build_args.items():
        if value in seen or name.upper() in ("NO_PROXY", "PIP_TRUSTED_HOST"):  # host lists, no URLs
            continue
        seen.add(value)
        # Lists are space-separated (extra indexes), an entry may be named (UV_INDEX's name=url),
        # and a proxy may be given without its scheme.
        for entry in value.split():
            entry = re.sub(r"^[A-Za-z0-9_.-]+=(?=[A-Za-z][A-Za-z0-9+.-]*://)", "", entry)
            authority = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", entry).split("/", 1)[0]
            if "@" in authority:
                names.append(name)
                break
    return names


@dataclass(frozen=True)
class Settings:
    home: Path
    base_image: str | None  # None: pick python:<version>-slim from the project's Python pin
    micromamba_image: str | None  # DOCKRUN_MICROMAMBA_IMAGE: set, conda.yaml installs with micromamba
    registry: str | None
    build_args: Mapping[str, str]
    ca_bundle: Path | None
    # conda channel -> replacement (DOCKRUN_CONDA_CHANNEL_MAP="defaults=conda-forge,main=conda-forge"),
    # for companies that may not use Anaconda's channels.
    conda_channel_map: Mapping[str, str] = field(default_factory=dict)

    @property
    def yaml_cache(self) -> Path:
        """Where what YAML made of a project's MLproject or python_env.yaml is kept (by the text's
        SHA-256): a rerun of unchanged files needs no YAML parser (about 10 ms to import)."""
        return self.home / "cache" / "yaml"


@dataclass(frozen=True)
class ArchiveLimits:
    """How far a project archive may unpack: an archive from a URL is someone else's, and a few
    compressed kilobytes can otherwise fill a disk or the memory. Each limit has its variable."""

    max_bytes: int = 2 * 1024**3  # DOCKRUN_ARCHIVE_MAX_BYTES: unpacked, and the size of a download
    max_members: int = 50_000  # DOCKRUN_ARCHIVE_MAX_MEMBERS: files, folders and links
    # DOCKRUN_ARCHIVE_MAX_RATIO: unpacked bytes per byte of the archive, once past ratio_floor
    # (a small archive holding one well-compressed data file is no bomb).
    max_ratio: int = 200
    ratio_floor: int = 100 * 1024**2


ARCHIVE_LIMIT_VARS = {"max_bytes": "DOCKRUN_ARCHIVE_MAX_BYTES", "max_members": "DOCKRUN_ARCHIVE_MAX_MEMBERS",
                      "max_ratio": "DOCKRUN_ARCHIVE_MAX_RATIO"}


def archive_limits(environ: Mapping[str, str]) -> ArchiveLimits:
    from .errors import ConfigError

    values = {}
    for name, var in ARCHIVE_LIMIT_VARS.items():
        text = (environ.get(var) or "").strip()
        if not text:
            continue
        try:
            values[name] = int(text)
        except ValueError:
            values[name] = 0
        if values[name] <= 0:
            raise ConfigError(f"{var}: {text!r}: expected a positive whole number")
    return ArchiveLimits(**values)


# The durations a user may set, in seconds, and their defaults: each read by ``seconds`` alone, and
# checked by the backend that waits on them (``check_durations``) before it starts anything, so a
# typo is one line at submit rather than a traceback in a run's background owner.
DURATIONS = {"DOCKRUN_DATABRICKS_RETRY_S": 300.0, "DOCKRUN_DATABRICKS_POLL_S": 5.0,
             "DOCKRUN_K8S_POLL_S": 0.5, "DOCKRUN_K8S_PENDING_TIMEOUT_S": 120.0}


def seconds(name: str, environ: Mapping[str, str] | None = None) -> float:
    """The duration setting ``name`` (a key of DURATIONS): seconds, 0 or more; its default when unset."""
    environ = os.environ if environ is None else environ
    text = (environ.get(name) or "").strip()
    if not text:
        return DURATIONS[name]
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # NaN too
        from .errors import ConfigError

        raise ConfigError(f"{name}={text!r}: expected a number of seconds (0 or more), e.g. {DURATIONS[name]:g}")
    return value


def check_durations(prefix: str, environ: Mapping[str, str]) -> None:
    """Every duration setting whose name starts with ``prefix`` (a backend's), read once to refuse a bad one."""
    for name in DURATIONS:
        if name.startswith(prefix):
            seconds(name, environ)


def default_home(environ: Mapping[str, str]) -> Path:
    if environ.get("DOCKRUN_HOME"):
        return Path(environ["DOCKRUN_HOME"]).expanduser()
    data = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "dockrun"


def load_settings(environ: Mapping[str, str] | None = None, base_image: str | None = None) -> Settings:
    env = os.environ if environ is None else environ
    build_args = {k: env[k] for k in PROXY_VARS + INDEX_VARS if env.get(k)}
    # uv does not read pip's variable; users behind a mirror set only PIP_INDEX_URL.
    if "PIP_INDEX_URL" in build_args and not ({"UV_INDEX_URL", "UV_DEFAULT_INDEX"} & build_args.keys()):
        build_args["UV_DEFAULT_INDEX"] = build_args["PIP_INDEX_URL"]
    ca = next((Path(env[k]) for k in CA_VARS if env.get(k) and Path(env[k]).is_file()), None)
    registry = (env.get("DOCKRUN_REGISTRY") or "").strip().rstrip("/") or None
    if registry:
        check_registry(registry)
    return Settings(
        home=default_home(env),
        base_image=base_image or env.get("DOCKRUN_BASE_IMAGE") or None,
        micromamba_image=_micromamba_image(env),
        registry=registry,
        build_args=build_args,
        ca_bundle=ca,
        conda_channel_map=parse_channel_map(env.get("DOCKRUN_CONDA_CHANNEL_MAP", "")),
    )


# docker's reference grammar: a HOST (a dot, a port or localhost) then lowercase path components.
_HOST = r"(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|[A-Za-z0-9-]+(?=:))(?::\d+)?"
_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"


def image_ref_ok(ref: str, digest: bool = False) -> bool:
    """Whether docker takes ``ref`` as [HOST[:PORT]/]NAME[:TAG] (and, with ``digest``, [@sha256:HEX])."""
    import re

    tail = r"(?::\w[\w.-]{0,127})?" + (r"(?:@sha256:[0-9a-f]{64})?" if digest else "")
    return re.fullmatch(rf"(?:{_HOST}/)?{_PART}(?:/{_PART})*{tail}", ref, re.ASCII) is not None


def _micromamba_image(env: Mapping[str, str]) -> str | None:
    image = (env.get("DOCKRUN_MICROMAMBA_IMAGE") or "").strip() or None
    if image and not image_ref_ok(image, digest=True):
        from .errors import ConfigError

        raise ConfigError(f"DOCKRUN_MICROMAMBA_IMAGE={image!r}: expected an image reference, "
                          f"e.g. {EXAMPLE_MICROMAMBA_IMAGE}")
    return image


def check_registry(registry: str) -> None:
    """DOCKRUN_REGISTRY must be a prefix docker can name images under: HOST[:PORT][/PATH], a
    lowercase PATH (docker's grammar), or a lowercase namespace alone; not a URL."""
    import re

    from .errors import ConfigError

    if not re.fullmatch(rf"(?:{_HOST}|{_PART})(?:/{_PART})*", registry, re.ASCII):
        # A URL given by mistake may carry a password: never shown (an error reaches CI logs).
        shown = registry if "@" not in registry else "***@" + registry.rpartition("@")[2]
        raise ConfigError(f"DOCKRUN_REGISTRY={shown!r}: expected HOST[:PORT][/PATH] with a lowercase path, "
                          "e.g. registry.example:5000/team")


def parse_channel_map(text: str) -> dict[str, str]:
    from .errors import ConfigError

    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        src, sep, dst = item.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise ConfigError(f"DOCKRUN_CONDA_CHANNEL_MAP: {item!r}: expected FROM=TO, e.g. defaults=conda-forge")
        out[src.strip()] = dst.strip()
    return out
