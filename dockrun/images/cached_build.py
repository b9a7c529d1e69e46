"""Environment builds with a package cache that survives builds: a build container, volumes, a commit.

The classic builder (the engine's /build API) starts every environment from nothing: no cache
survives a build, uv or py-rattler is installed again, and the whole environment is copied between
stages to keep the host's CA out of the image. Here the same scripts (plan.env_scripts: the text
is part of the key, so both paths install the same environment under the same key) run in a
container on the engine instead, with:

- ``dockrun-cache``, a named volume at /tmp/dockrun/cache: uv's, pip's, py-rattler's and apt's
  caches, shared by every environment build on that engine (local, remote, for Kubernetes or
  `dockrun build --push` alike: the volume lives where the build runs);
- ``dockrun-tools``, a named volume holding the pinned uv and py-rattler, installed once per engine
  (a container that runs only tools.sh writes it; builds mount it read-only);
- the build's inputs (scripts, environment file, the host's CA and index/proxy settings) in an
  anonymous volume that is removed with the container, and a tmpfs at /tmp;

then the container is committed: one layer on the base image holding exactly what the install
wrote (the environment and installed.json; volumes and tmpfs are never part of a commit), with the
image config set in full (environment variables, labels, command) so nothing of the build
container's settings leaks in. OS packages (libgomp1 and apt.txt) are a layer of their own,
``dockrun-os:<key>``, made once per base image and package list and shared by the environments on it.

A project from a Git URI or an archive (ImagePlan.from_elsewhere) is someone else's: building a
source distribution runs its author's code as root in the build container, and that code could
rewrite a cached package the next project's build copies, or leave a file in the environment a
later build starts from (removing a distribution removes only the files it recorded). So such a
build gets a package cache of its own (an anonymous volume, removed with the container) instead of
``dockrun-cache``, and its environment is never a parent. It may still start from an environment
built for a project on this machine: it cannot change that image.

The cache is bounded: a build that finds it over ``DOCKRUN_CACHE_MAX_GB`` (default 10; measured at
most once an hour) while no other build uses it empties it first; `dockrun images prune` removes
it (and the tools and OS layers) when it has not been used for --older-than days.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from ..config import Settings
from ..errors import BuildError, ConfigError
from ..locks import file_lock, write_atomic
from .environment import install_text
from .inputs import env_inputs
from .plan import ImagePlan, env_scripts

CACHE_VOLUME = "dockrun-cache"
TOOLS_VOLUME = "dockrun-tools"
LABEL_CACHE = "dockrun.cache"  # on the volumes: packages | tools
# Build containers are named, not labelled, and OS layers found by their name: a commit keeps the
# container's labels (its image's and its own), and the environment image must carry only the base's
# and its own.
BUILD_NAME = "dockrun-build-"
OS_REPO = "dockrun-os"
PATH_ENV = "DOCKRUN_ENV_BUILD"  # auto (the cached path where it can run) | classic
MAX_ENV = "DOCKRUN_CACHE_MAX_GB"
DEFAULT_MAX_GB = 10.0
CACHE = "/tmp/dockrun/cache"
TOOLS = "/tmp/dockrun/tools"
IN = "/tmp/dockrun/in"
USED_MARK = Path("cache") / "build-cache-used"  # under DOCKRUN_HOME: when a build last used it

# What the classic template's final stage sets (ENV, USER), by kind; a test compares the two images.
FINAL_ENV = {
    "uv": {"VIRTUAL_ENV": "/opt/dockrun/venv",
           "PATH": "/opt/dockrun/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "PYTHONUNBUFFERED": "1"},
    "conda": {"CONDA_PREFIX": "/opt/dockrun/conda",
              "PATH": "/opt/dockrun/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "PYTHONUNBUFFERED": "1"},
}
FINAL_USER = {"conda": "root"}

# The container's entry point: settings, the cache's bound, then one script under a shared lock
# (an over-full cache is emptied only while no build holds it).
_RUNNER = f"""set -eu
. {IN}/settings.sh
step="$1"
if ! command -v flock >/dev/null 2>&1; then exec sh "{IN}/$step"; fi
if [ "$step" = tools.sh ]; then exec flock {TOOLS}/.lock sh "{IN}/tools.sh"; fi
# Measured at most once an hour per limit (du over a large cache costs seconds on a busy machine).
( flock -n 9 || exit 0
  if [ -n "$(find {CACHE}/.measured -mmin -60 2>/dev/null)" ] \
     && [ "$(cat {CACHE}/.measured)" = "$DOCKRUN_CACHE_MAX_MB" ]; then exit 0; fi
  echo "$DOCKRUN_CACHE_MAX_MB" > {CACHE}/.measured
  used=$(du -sm {CACHE} 2>/dev/null | cut -f1)
  if [ "${{used:-0}}" -gt "$DOCKRUN_CACHE_MAX_MB" ]; then
    echo "dockrun: the package cache holds $used MB, over its limit ({MAX_ENV}); emptying it"
    find {CACHE} -mindepth 1 -maxdepth 1 ! -name .lock ! -name .measured -exec rm -rf {{}} +
  fi ) 9>{CACHE}/.lock
if [ "$step" = env.sh ]; then DOCKRUN_TOOLS_CHECK=1 sh {IN}/tools.sh || exit $?; fi
exec flock -s {CACHE}/.lock sh "{IN}/$step"
"""
TOOLS_MISSING = 3  # tools.sh's exit code when the tools volume has no tool yet


class BuildEngine(Protocol):
    """The part of engine.client.Docker the cached path uses."""

    def image_id(self, ref: str) -> str | None: ...
    def tag(self, ref: str, target: str) -> None: ...
    def ensure_pulled(self, ref: str, log: Callable[[str], None]) -> str: ...
    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None: ...
    def image_config(self, ref: str) -> dict[str, Any]: ...
    def run_build_container(self, image: str, command: list[str], volumes: Mapping[str, tuple[str | None, bool]],
                            inputs: Any, labels: Mapping[str, str],
                            log: Callable[[str], None]) -> tuple[str, int, list[str]]: ...
    def commit(self, container_id: str, ref: str, config: Mapping[str, Any]) -> str: ...
    def remove_build_container(self, container_id: str) -> None: ...
    def discard_build_container(self, container_id: str) -> None: ...


def classic_reason(plan: ImagePlan, environ: Mapping[str, str]) -> str | None:
    """Why this environment is built by the classic builder, or None: the cached path can."""
    choice = environ.get(PATH_ENV, "auto").strip() or "auto"
    if choice not in ("auto", "classic"):
        raise ConfigError(f"{PATH_ENV}={choice!r}: expected auto (a build container with the package cache "
                          "where possible) or classic (the engine's builder, no cache)")
    if choice == "classic":
        return f"{PATH_ENV}=classic"
    if plan.env.kind not in FINAL_ENV:
        return f"{plan.env.kind} environments have no cached path yet"
    if plan.env.kind == "conda" and plan.env.installer_image != plan.env.base_image:
        return "the conda installer runs on another image than the base (give --base-image with python3)"
    return None


def max_cache_mb(environ: Mapping[str, str]) -> int:
    text = environ.get(MAX_ENV, "").strip()
    try:
        gb = float(text) if text else DEFAULT_MAX_GB
    except ValueError:
        gb = -1.0
    if gb <= 0:
        raise ConfigError(f"{MAX_ENV}={text!r}: expected the package cache's size limit in GB, such as 10")
    return int(gb * 1024)


def settings_script(settings: Settings, max_mb: int) -> str:
    """The build's network settings (the host's proxies and index, its CA) and cache locations, as
    the scripts read them; it lives in the build's inputs volume, never in the container's config
    (a commit would keep that)."""
    values = dict(sorted(settings.build_args.items()))
    if settings.ca_bundle is not None:
        for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            values[name] = f"{IN}/ca.pem"
    values.update({"UV_CACHE_DIR": f"{CACHE}/uv", "UV_LINK_MODE": "copy", "PIP_CACHE_DIR": f"{CACHE}/pip",
                   "DOCKRUN_CONDA_CACHE": f"{CACHE}/conda", "DOCKRUN_APT_CACHE": f"{CACHE}/apt",
                   "DOCKRUN_CACHE_MAX_MB": str(max_mb)})
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())


def _inputs(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def final_config(base: Mapping[str, Any], env: Mapping[str, str], labels: Mapping[str, str],
                 user: str | None = None) -> dict[str, Any]:
    """The committed image's config in full: the base image's, with ``env`` set as ENV sets it
    (a name keeps its place, new ones follow) and ``labels`` added. The engine merges the build
    container's config into whatever is left empty, so nothing here is left empty that the
    container set: the entry point is the base's or an explicit none."""
    pairs = [e.split("=", 1) for e in base.get("Env") or ()]
    merged = {k: v for k, v in ((p[0], p[1] if len(p) > 1 else "") for p in pairs)}
    merged.update(env)
    config: dict[str, Any] = {
        "Env": [f"{k}={v}" for k, v in merged.items()],
        "Labels": {**(base.get("Labels") or {}), **labels},
        "Cmd": base.get("Cmd"),
        "Entrypoint": base.get("Entrypoint") or [],
        "WorkingDir": base.get("WorkingDir") or "",
    }
    if user is not None:
        config["User"] = user
    return config


def os_layer_ref(base_id: str, os_script: str, registry: str | None) -> str:
    key = hashlib.sha256(f"{base_id}\n{os_script}".encode()).hexdigest()[:32]
    return f"{registry}/{OS_REPO}:{key}" if registry else f"{OS_REPO}:{key}"


def build_env_cached(plan: ImagePlan, settings: Settings, docker: BuildEngine,
                     log: Callable[[str], None], environ: Mapping[str, str] | None = None) -> str:
    """Build the plan's environment image in a build container with the package cache; its ID."""
    environ = os.environ if environ is None else environ
    scripts = env_scripts(plan)
    files = {**env_inputs(plan), "run.sh": _RUNNER.encode(), "os.sh": scripts["os.sh"].encode(),
             "settings.sh": settings_script(settings, max_cache_mb(environ)).encode()}
    if settings.ca_bundle is not None:
        files["ca.pem"] = settings.ca_bundle.read_bytes()
    inputs = _inputs(files)
    cache: dict[str, tuple[str | None, bool]] = {CACHE: (None if plan.from_elsewhere else CACHE_VOLUME, False)}
    if not plan.from_elsewhere:
        docker.ensure_volume(CACHE_VOLUME, {LABEL_CACHE: "packages"})
    docker.ensure_volume(TOOLS_VOLUME, {LABEL_CACHE: "tools"})
    base = plan.env.base_image
    base_id = docker.ensure_pulled(base, log)
    base_config = docker.image_config(base_id)
    start = _os_layer(docker, settings, base_id, base_config, scripts["os.sh"], inputs, cache, log)
    names, script = requirement_names(plan), install_digest(plan)
    parent = (choose_parent(settings.home, start, plan.env.python, names, docker, script)
              if plan.env.kind == "uv" else None)
    if parent is not None:
        log(f"starting from {parent.image}, which has {len(parent.names & names)} of its {len(names)} "
            "requirements: only the difference is installed")
    first = parent.image if parent is not None else start
    labels: dict[str, str] = {}
    cid, code, tail = docker.run_build_container(first, ["/bin/sh", f"{IN}/run.sh", "env.sh"],
                                                 {**cache, TOOLS: (TOOLS_VOLUME, True)}, [inputs], labels, log)
    if code == TOOLS_MISSING:
        docker.remove_build_container(cid)
        log(f"installing the environment tools into the volume {TOOLS_VOLUME} (once per engine)")
        _run(docker, base_id, "tools.sh", {**cache, TOOLS: (TOOLS_VOLUME, False)}, inputs, labels, log, keep=False)
        cid, code, tail = docker.run_build_container(first, ["/bin/sh", f"{IN}/run.sh", "env.sh"],
                                                     {**cache, TOOLS: (TOOLS_VOLUME, True)}, [inputs], labels, log)
    try:
        _check(code, tail, plan.env_image)
        config = final_config(base_config, FINAL_ENV[plan.env.kind], plan.env_labels, FINAL_USER.get(plan.env.kind))
        image_id = docker.commit(cid, plan.env_image, config)
    except BaseException:
        docker.remove_build_container(cid)
        raise
    # Removing the container deletes its copy of the environment: seconds on a busy engine that
    # the run need not wait for.
    docker.discard_build_container(cid)
    log(f"Successfully tagged {plan.env_image}")  # a build's last line, as the engine's builder says it
    if plan.from_elsewhere:  # its cache went with its container, and its environment is never a parent
        return image_id
    mark_used(settings.home)
    if plan.env.kind == "uv":
        remember(settings.home, Built(plan.env_image, image_id, start, plan.env.python, frozenset(names),
                                      parent.depth + 1 if parent is not None else 0, script, local=True))
    return image_id


# ---- starting from a similar environment ---------------------------------------------------------
# A changed environment usually differs from one built before by a package or two: its build starts
# from that image's venv and installs only the difference (env-uv.sh.j2 brings the venv to exactly
# the set a fresh install gets), so copying and committing the whole environment again is saved.
# Which environments were built, on which OS layer, with which requirements, is kept per
# DOCKRUN_HOME; a chain of such images stays short, and a parent with many packages the new
# environment does not want (whose files the image would still carry) is not used. Only an image
# the same install scripts made is a parent: the derived install brings the set of distributions to
# what a fresh one gets, not files an older script left otherwise (bytecode, say).
INDEX = Path("cache") / "env-builds.json"
MAX_DEPTH = 3
MAX_UNWANTED = 2


@dataclass(frozen=True)
class Built:
    image: str
    id: str
    start: str  # the OS layer's image ID it was built on
    python: str | None
    names: frozenset[str]
    depth: int  # how many environments it was derived through
    script: str = ""  # install_digest of what made it ("": recorded before it was kept, never a parent)
    # Made for a project on this machine, with the shared cache. False: recorded before this was
    # kept, when an environment from a Git URI or an archive was recorded too; never a parent.
    local: bool = False


def requirement_names(plan: ImagePlan) -> set[str]:
    lines = plan.env.lock if plan.env.lock is not None else plan.env.requirements
    return {re.split(r"[\[<>=!~;@ ]", line, maxsplit=1)[0] for line in lines}


def install_digest(plan: ImagePlan) -> str:
    """What installs the plan's environment (its kind's scripts and templates), as a short digest."""
    return hashlib.sha256(install_text(plan.env).encode()).hexdigest()[:16]


def _load(home: Path) -> list[Built]:
    try:
        raw = json.loads((home / INDEX).read_text(encoding="utf-8"))
        return [Built(e["image"], e["id"], e["start"], e["python"], frozenset(e["names"]), int(e["depth"]),
                      str(e.get("script") or ""), e.get("local") is True) for e in raw]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def remember(home: Path, built: Built, keep: int = 50) -> None:
    entries = [b for b in _load(home) if b.image != built.image][-(keep - 1):] + [built]
    data = [{"image": b.image, "id": b.id, "start": b.start, "python": b.python, "names": sorted(b.names),
             "depth": b.depth, "script": b.script, "local": b.local} for b in entries]
    (home / INDEX).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(home / INDEX, json.dumps(data, indent=1))


def choose_parent(home: Path, start: str, python: str | None, names: set[str],
                  docker: BuildEngine, script: str) -> Built | None:
    """The environment image to start from: built for a project on this machine, on the same OS
    layer and Python by the same install scripts (``script``: install_digest), sharing at least
    half of ``names``, with at most MAX_UNWANTED requirements ``names`` lacks; the one that shares
    most, the newest among equals. None: build from the OS layer."""
    fits = [b for b in _load(home) if b.start == start and b.python == python and b.depth < MAX_DEPTH
            and script and b.script == script and b.local
            and len(b.names - names) <= MAX_UNWANTED and 2 * len(b.names & names) >= max(len(names), 1)]
    for built in sorted(reversed(fits), key=lambda b: len(b.names & names) - len(b.names - names), reverse=True):
        if docker.image_id(built.image) == built.id:  # still there, and still that image
            return built
    return None


OS_INDEX = Path("cache") / "os-layers.json"  # OS layer name -> the image ID it had when made here


def _os_layer(docker: BuildEngine, settings: Settings, base_id: str, base_config: Mapping[str, Any],
              os_script: str, inputs: bytes, cache: Mapping[str, tuple[str | None, bool]],
              log: Callable[[str], None]) -> str:
    """The base image with the environment's OS packages: made once per base and package list.
    A prune removes its name, but not the image while environments built on it are there: that
    image is named again rather than made anew, so those environments can still be started from."""
    ref = os_layer_ref(base_id, os_script, None)
    with file_lock(settings.home, ref):
        known = _known_os_layers(settings.home)
        found = docker.image_id(ref)
        kept = known.get(ref)
        if found is None and kept is not None and docker.image_id(kept) == kept:
            docker.tag(kept, ref)
            log(f"named the OS layer {ref} again (its image was still there)")
            found = kept
        if found is None:
            log(f"building OS layer {ref} (libgomp1 and apt.txt packages, once per base image)")
            cid = _run(docker, base_id, "os.sh", cache, inputs, {}, log, keep=True)
            try:
                found = docker.commit(cid, ref, final_config(base_config, {}, {}))
            finally:
                docker.remove_build_container(cid)
        if kept != found:
            known.pop(ref, None)
            known[ref] = found
            write_atomic(settings.home / OS_INDEX, json.dumps(dict(list(known.items())[-50:]), indent=1))
        return found


def _known_os_layers(home: Path) -> dict[str, str]:
    try:
        raw = json.loads((home / OS_INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(raw, dict) else {}


def _run(docker: BuildEngine, image: str, step: str, volumes: Mapping[str, tuple[str | None, bool]], inputs: bytes,
         labels: Mapping[str, str], log: Callable[[str], None], keep: bool) -> str:
    cid, code, tail = docker.run_build_container(image, ["/bin/sh", f"{IN}/run.sh", step], volumes,
                                                 [inputs], labels, log)
    try:
        _check(code, tail, f"{step} on {image[:19]}")
    except BaseException:
        docker.remove_build_container(cid)
        raise
    if not keep:
        docker.remove_build_container(cid)
    return cid


def _check(code: int, tail: list[str], what: str) -> None:
    if code == 0:
        return
    prefix = "dockrun-check: "
    said = [line[len(prefix):] for line in tail if line.startswith(prefix)]
    if said:
        raise BuildError(f"building {what}: {said[-1]}")
    # One line, as a classic build's failure: the step's output was shown above it, once; its last
    # line says why.
    last = next((line.strip() for line in reversed(tail) if line.strip()), "")
    raise BuildError(f"building {what} failed (exit code {code})" + (f": {last}" if last else ""),
                     output=tuple(tail))


def mark_used(home: Path) -> None:
    path = home / USED_MARK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def last_used(home: Path) -> float | None:
    try:
        return (home / USED_MARK).stat().st_mtime
    except OSError:
        return None


class PruneEngine(Protocol):
    def volumes_with_label(self, label: str) -> list[dict[str, Any]]: ...
    def volume_sizes(self) -> dict[str, int]: ...
    def remove_volume(self, name: str) -> bool: ...
    def images_named(self, repository: str) -> list[dict[str, Any]]: ...
    def remove_image(self, image_id: str, refs: tuple[str, ...]) -> list[str]: ...


def prune_build_cache(docker: PruneEngine, home: Path, older_than_days: float,
                      environ: Mapping[str, str] | None = None) -> list[str]:
    """`dockrun images prune`'s part for the build cache: the package cache and tools volumes and
    the OS layers, removed together when no build used them for ``older_than_days`` (0: now) or
    when the package cache is over its limit; a volume a running build holds is left."""
    environ = os.environ if environ is None else environ
    volumes = [v["Name"] for v in docker.volumes_with_label(LABEL_CACHE)]
    if not volumes:
        return []
    # Another DOCKRUN_HOME may share the engine (its builds mark their own folder): a cache this
    # one never used goes only when the user asks for everything (--older-than 0).
    used = last_used(home)
    stale = older_than_days <= 0 or (used is not None and used <= time.time() - older_than_days * 86400)
    size = docker.volume_sizes().get(CACHE_VOLUME, -1) if CACHE_VOLUME in volumes else -1
    if not stale and size <= max_cache_mb(environ) * (1 << 20):
        return []
    removed = [f"volume {name}" for name in volumes if docker.remove_volume(name)]
    for image in docker.images_named(OS_REPO):
        refs = tuple(r for r in image.get("RepoTags") or () if r != "<none>:<none>")
        removed += docker.remove_image(image["Id"], refs)
    return removed
