"""Make sure a plan's images exist: write the build contexts, build only what is missing (through
the engine adapter, under a per-image lock), or pull it from the team's registry."""
from __future__ import annotations

import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Callable, Protocol

from ..config import Settings, credential_settings
from ..errors import BuildError, TrustRequired
from ..locks import file_lock
from ..project.treehash import DISK_ERRNOS, TreeDigest, walk
from ..store.records import RunStore
from .feedback import build_failed
from .inputs import env_inputs
from .plan import WORKDIR, ImagePlan, env_dockerfile, local_code, project_dockerfile


def env_context(plan: ImagePlan, settings: Settings) -> IO[bytes]:
    """Build context of the environment image: the Dockerfile, the environment's inputs
    (``env_inputs``) and the host's CA bundle (used by the installing stage only)."""
    files: dict[str, bytes] = {"Dockerfile": env_dockerfile(plan, settings).encode(), **env_inputs(plan)}
    if settings.ca_bundle is not None:
        files["dockrun-ca.pem"] = settings.ca_bundle.read_bytes()
    buf = tempfile.TemporaryFile()  # noqa: SIM115 - returned open; the caller closes it
    try:
        with _disk_errors(plan.env_image, buf), tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in sorted(files.items()):
                _add_bytes(tar, name, data, 0o644)
    except BaseException:
        _discard(buf)
        raise
    buf.seek(0)
    return buf


def _discard(context: IO[bytes]) -> None:
    """Close a context that failed; its buffered bytes may not fit on the disk either (the file
    is closed, and so its space freed, all the same)."""
    with suppress(OSError):
        context.close()


@contextmanager
def _disk_errors(image: str, context: IO[bytes]) -> Iterator[None]:
    """A full (or read-only) temp disk while a build context is written (or its last buffered
    bytes flushed): one line naming what and where. The context is an unlinked temp file, so
    closing it gives the space back."""
    try:
        yield
        context.flush()
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        raise BuildError(f"writing the build context of {image} in {tempfile.gettempdir()}: "
                         f"{e.strerror} (TMPDIR chooses the folder)") from None


def project_context(plan: ImagePlan, root: Path, settings: Settings, dockerfile: bool = True) -> IO[bytes]:
    """Build context of the project image: the Dockerfile and the code under ``project/``, as the
    tree walk (and so the source key) sees it; the host's CA bundle when local code is installed.
    Without ``dockerfile``: the code alone, to be unpacked at / (``commit_code``), with no entry for
    ``project/`` itself, which is then made as the builder's COPY makes it (0755, owned by root)."""
    buf = tempfile.TemporaryFile()  # noqa: SIM115 - returned open; the caller closes it
    try:
        with _disk_errors(plan.project_image, buf), tarfile.open(fileobj=buf, mode="w") as tar:
            if dockerfile:
                _add_bytes(tar, "Dockerfile", project_dockerfile(plan, settings).encode(), 0o644)
                if local_code(plan) and settings.ca_bundle is not None:
                    _add_bytes(tar, "dockrun-ca.pem", settings.ca_bundle.read_bytes(), 0o644)
                _add_dir(tar, "project")
            made: set[str] = {"project"}
            digest = TreeDigest()
            for entry in walk(root):
                parts = entry.relpath.split("/")
                for i in range(1, len(parts)):
                    d = "project/" + "/".join(parts[:i])
                    if d not in made:
                        made.add(d)
                        _add_dir(tar, d)
                name = "project/" + entry.relpath
                if stat.S_ISLNK(entry.mode):
                    info = _info(name, 0o777)
                    info.type = tarfile.SYMTYPE
                    info.linkname = os.readlink(entry.path)
                    tar.addfile(info)
                    digest.link(entry.relpath, info.linkname)
                else:
                    info = _info(name, 0o777 if entry.mode & 0o111 else 0o666)
                    info.size = entry.path.stat().st_size
                    digest.pack_file(tar, info, entry, root)
        if plan.source_key_is_tree_hash:
            digest.verify(root, plan.source_key)
    except BaseException:
        _discard(buf)
        raise
    buf.seek(0)
    return buf


def _info(name: str, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 0  # deterministic contexts; Docker's cache ignores mtimes anyway
    info.uid = info.gid = 0
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = _info(name, 0o777)
    info.type = tarfile.DIRTYPE
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = _info(name, mode)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


class DockerLike(Protocol):
    """The part of dockerio.Docker that images.py uses."""

    def image_id(self, ref: str) -> str | None: ...
    def try_pull(self, ref: str) -> str | None: ...
    def ensure_pulled(self, ref: str, log: Callable[[str], None]) -> str: ...
    def tag(self, ref: str, target: str) -> None: ...
    def build(self, context: IO[bytes], tag: str, buildargs: dict[str, str],
              labels: Mapping[str, str], log: Callable[[str], None]) -> str: ...


def ensure_images(
    plan: ImagePlan,
    source_root: Path,
    settings: Settings,
    docker: DockerLike,
    rebuild: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> str:
    """Make sure the project image exists; build only what is missing. Returns its image ID."""
    if not rebuild:
        # Here, or in the team's registry: then there is nothing to build at all.
        found = _present(docker, plan.project_image, settings, log)
        if found:
            return found
    # The code is packed now, checked against the key the image will carry, before a possibly
    # long environment build during which it could change.
    committed = not local_code(plan) and hasattr(docker, "commit_files")
    with project_context(plan, source_root, settings, dockerfile=not committed) as code:
        _, env_built = ensure_env_image(plan, settings, docker, rebuild, log)
        with file_lock(settings.home, plan.project_image):
            # A new environment image means the project image must be rebuilt on it.
            image_id = None if (rebuild or env_built) else docker.image_id(plan.project_image)
            if not image_id:
                log(f"building project image {plan.project_image}")
                if committed:
                    image_id = commit_code(plan, code, settings, docker, log)  # type: ignore[arg-type]
                else:
                    if local_code(plan):  # its own code's install runs its build backend
                        check_credentials_given(plan, settings)
                    build_args = dict(settings.build_args) if local_code(plan) else {}
                    image_id = _build(docker, code, plan.project_image, build_args, plan.project_labels, log)
                _made(settings, image_id, plan.project_image)
    return image_id


# ---- the code layer without the builder ------------------------------------------------------------
# Without local code, project.Dockerfile.j2 is COPY project/ /project/, WORKDIR, ENV and three LABELs:
# the classic builder makes a container for each of those steps and commits it (0.5-1.5 s on this
# machine kind, most of a changed environment's run after the install). The same layer and config are
# made by one container that is created, given the code and committed, never started.
CODE_ENV = {"PYTHONUNBUFFERED": "1"}  # the template's ENV line


class CodeEngine(Protocol):
    def image_config(self, ref: str) -> dict[str, Any]: ...
    def commit_files(self, image: str, files: IO[bytes], ref: str, config: Mapping[str, Any]) -> str: ...
    def build(self, context: IO[bytes], tag: str, buildargs: dict[str, str],
              labels: Mapping[str, str], log: Callable[[str], None]) -> str: ...


def builder_only(config: Mapping[str, Any]) -> str | None:
    """Why the environment image's config needs the builder for the code layer, or None."""
    if config.get("OnBuild"):
        return "its ONBUILD triggers run in a build"
    if config.get("Volumes"):
        return "it declares volumes, which a container would create"
    if not (config.get("Entrypoint") or config.get("Cmd")):
        return "it has no command, which a container needs"
    return None


def code_config(base: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """The project image's config, as the builder makes it from the environment image's config
    ``base``: WORKDIR, the template's ENV (a name keeps its place, a new one follows), the labels
    added, the ONBUILD triggers consumed, everything else inherited."""
    pairs = [e.split("=", 1) for e in base.get("Env") or ()]
    env = {p[0]: p[1] if len(p) > 1 else "" for p in pairs}
    env.update(CODE_ENV)
    config = {k: v for k, v in base.items() if k not in ("Hostname", "Domainname", "Image", "OnBuild")}
    config.update({"Env": [f"{k}={v}" for k, v in env.items()], "WorkingDir": WORKDIR,
                   "Labels": {**(base.get("Labels") or {}), **labels}})
    return config


def commit_code(plan: ImagePlan, code: IO[bytes], settings: Settings, docker: CodeEngine,
                log: Callable[[str], None]) -> str:
    """The project image: the environment image plus the code (``project_context`` without a
    Dockerfile) as one committed layer; the classic builder where the environment image's config
    asks for it. Its ID."""
    base = docker.image_config(plan.env_image)
    why = builder_only(base)
    if why is not None:
        log(f"the code layer is built by the engine's builder: {plan.env_image} {why}")
        with _with_dockerfile(plan, code, settings) as context:
            return _build(docker, context, plan.project_image, {}, plan.project_labels, log)  # type: ignore[arg-type]
    log(f"code layer on {plan.env_image}: COPY project/ {WORKDIR}/, WORKDIR {WORKDIR}, ENV PYTHONUNBUFFERED=1 "
        "and the labels, committed from a container that never starts")
    try:
        image_id = docker.commit_files(plan.env_image, code, plan.project_image,
                                       code_config(base, plan.project_labels))
    except BuildError:
        log(build_failed(plan.project_image))
        raise
    log(f"Successfully tagged {plan.project_image}")  # a build's last line, as the engine's builder says it
    return image_id


def _with_dockerfile(plan: ImagePlan, code: IO[bytes], settings: Settings) -> IO[bytes]:
    """The classic build context made from a code-only archive: the Dockerfile, then its entries."""
    buf = tempfile.TemporaryFile()  # noqa: SIM115 - returned open; the caller closes it
    try:
        with _disk_errors(plan.project_image, buf), tarfile.open(fileobj=buf, mode="w") as tar, \
                tarfile.open(fileobj=code, mode="r") as src:
            _add_bytes(tar, "Dockerfile", project_dockerfile(plan, settings).encode(), 0o644)
            _add_dir(tar, "project")
            for member in src:
                tar.addfile(member, src.extractfile(member) if member.isfile() else None)
    except BaseException:
        _discard(buf)
        raise
    buf.seek(0)
    return buf


def ensure_env_image(
    plan: ImagePlan,
    settings: Settings,
    docker: DockerLike,
    rebuild: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> tuple[str, bool]:
    """Make sure the environment image exists (built, pulled or the given one); its image ID and
    whether it was built now. A --dev run needs nothing more."""
    if not plan.env.needs_build:
        return docker.ensure_pulled(plan.env_image, log), False
    with file_lock(settings.home, plan.env_image):  # one build per image, across processes
        found = None if rebuild else _present(docker, plan.env_image, settings, log)
        if found:
            return found, False
        check_credentials_given(plan, settings)
        from .cached_build import build_env_cached, classic_reason  # the build stack: only when building

        why_classic = classic_reason(plan, os.environ)
        if why_classic is None:  # one line that says which path the build took
            log(f"building environment image {plan.env_image} ({plan.env.kind}) in a build container with "
                + ("a package cache of its own (a project from a Git URI or an archive shares no cache with other "
                   "builds)" if plan.from_elsewhere else "the package cache (volume dockrun-cache)"))
            try:
                built = build_env_cached(plan, settings, docker, log)  # type: ignore[arg-type]
            except BuildError:
                log(build_failed(plan.env_image))
                raise
            return _made(settings, built, plan.env_image), True
        log(f"building environment image {plan.env_image} ({plan.env.kind}) with the classic builder, no "
            f"package cache ({why_classic})")
        with env_context(plan, settings) as ctx:
            built = _build(docker, ctx, plan.env_image, dict(settings.build_args), plan.env_labels, log)
        return _made(settings, built, plan.env_image), True


def check_credentials_given(plan: ImagePlan, settings: Settings) -> None:
    """A build runs the project's packages' code (a build backend, a `.pth` file at any Python
    start) with the host's index and proxy settings in its environment: a credential in them goes to
    a project from elsewhere only if the user trusts it. Asked only when something is to be built,
    so a project whose images are here runs without the question."""
    if not plan.from_elsewhere or plan.trusted:
        return
    names = credential_settings(settings.build_args)
    if names:
        which = f"{names[0]} carries a credential" if len(names) == 1 else f"{', '.join(names)} carry credentials"
        raise TrustRequired(f"{which} (user:token@ in the URL), and building the environment of a project from a Git "
                          "URI or an archive runs its packages' code, which could read it: rerun with --trust if you "
                          "trust this project with it, or without the credential if the index does not need one")


def _build(docker: DockerLike, context: IO[bytes], ref: str, buildargs: dict[str, str],
           labels: Mapping[str, str], log: Callable[[str], None]) -> str:
    """``docker.build``, saying when it failed: the feedback then shows the failing step's output."""
    try:
        return docker.build(context, ref, buildargs, labels, log)
    except BuildError:
        log(build_failed(ref))
        raise


def _present(docker: DockerLike, ref: str, settings: Settings, log: Callable[[str], None]) -> str | None:
    """The image ID of ``ref`` if it is here, or can be pulled from the configured registry."""
    found = docker.image_id(ref)
    if found is None and settings.registry and ref.startswith(settings.registry + "/"):
        # Built here before DOCKRUN_REGISTRY was set: the same key names the same image.
        unprefixed = ref[len(settings.registry) + 1:]
        found = docker.image_id(unprefixed)
        if found:
            docker.tag(found, ref)
            log(f"{unprefixed} is here: tagged it {ref}")
            return _made(settings, found, ref)  # listed and pruned under this name too
        found = docker.try_pull(ref)
        if found:
            log(f"pulled {ref} from the registry")
            _made(settings, found, ref)
    return found


def _made(settings: Settings, image_id: str, ref: str) -> str:
    """Record that dockrun made ``image_id`` under ``ref``: `dockrun images` lists and prunes only
    what it recorded (an image built FROM one of dockrun's has its labels, and is not dockrun's)."""
    RunStore(settings.home).record_image(image_id, ref)
    return image_id


class Pusher(Protocol):
    """The part of engine.client.Docker that pushing uses."""

    def push(self, ref: str, log: Callable[[str], None]) -> str | None: ...
    def registry_digest(self, ref: str) -> str | None: ...
    def repo_digests(self, ref: str) -> list[str]: ...


def push_pinned(docker: Pusher, ref: str, log: Callable[[str], None]) -> str:
    """Push the local image ``ref`` unless the registry already serves this very image under its
    tag; the digest of this image in the registry (what to pin). A tag names whatever was pushed
    last, by anyone with push rights: another image under it is said and pushed over, never used."""
    ours = docker.repo_digests(ref)
    served = docker.registry_digest(ref)
    if served is not None and served in ours:
        log(f"{ref} is already in the registry; nothing to push")
        return served
    if served is not None:
        log(f"the registry has another image under {ref} ({served}); pushing the one built here over it")
    else:
        log(f"pushing {ref}")
    pushed = docker.push(ref, log)
    if pushed is None:  # an engine that does not report it: the one digest the image now has there
        known = docker.repo_digests(ref)
        pushed = known[0] if len(known) == 1 else None
    if pushed is None:
        raise BuildError(f"pushing {ref}: the engine did not say which digest it pushed")
    return pushed
