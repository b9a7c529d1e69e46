"""Thin adapter over docker-py: the only module that talks to the Docker engine.

The core decides what to build and run as plain data; this module does it and turns engine
failures into dockrun errors.
"""
from __future__ import annotations

import os
import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from ..errors import BuildError, ConfigError, ExecutionError
from .address import REMOTE_ENV, local_socket

_STEP = re.compile(r"^Step \d+/\d+ : ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
CHECK_PREFIX = "dockrun-check: "  # a template's check prints this before failing the build


# The first import of docker-py is one thread's: two threads inside the marker below (a sweep's
# pool submitting its first points) would each remove it, the second finding it gone.
_FIRST_IMPORT = threading.Lock()


def _docker():  # lazy: importing docker-py costs ~0.3 s, which `dockrun --help` must not pay
    import sys

    with _FIRST_IMPORT:
        if "docker" not in sys.modules and "paramiko" not in sys.modules and local_socket(os.environ):
            # docker-py imports paramiko (~0.13 s) whenever it is installed, for ssh:// engines
            # only; on a local socket it is never used, so it is kept out while docker-py is imported.
            sys.modules["paramiko"] = None  # type: ignore[assignment]
            try:
                import docker  # noqa: F401
            finally:
                del sys.modules["paramiko"]
    import docker

    return docker


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create a run's container (computed by backends/local/container.py)."""

    image: str
    command: tuple[str, ...]
    name: str
    labels: Mapping[str, str]
    environment: Mapping[str, str]
    mounts: tuple[tuple[str, str, str], ...]  # (host, container, "rw"|"ro")
    working_dir: str
    user: str | None
    options: Mapping[str, Any] = field(default_factory=dict)  # docker-py create() kwargs from -A
    # (host, container, "rw"|"ro"): for an engine that cannot see this machine's files, copied into
    # the container before it starts (and "rw" ones back after it ends) instead of bind-mounted
    copies: tuple[tuple[str, str, str], ...] = ()




def engine_address(environ: Mapping[str, str]) -> str | None:
    """Where the engine is, as docker's CLI decides it: DOCKER_HOST, else the endpoint of the
    context named by DOCKER_CONTEXT or docker's config.json (``currentContext``); None for docker's
    default (the local unix socket). Reads files, never asks the engine."""
    if environ.get("DOCKER_HOST"):
        return environ["DOCKER_HOST"]
    context = _context(environ)
    return context.Host if context is not None else None


def engine_is_remote(environ: Mapping[str, str]) -> bool:
    """Whether the engine may not see this machine's files, so a run's files are copied to it
    instead of bind-mounted: ``DOCKRUN_REMOTE_ENGINE=1|0`` decides if set; else any engine not
    reached through a local socket (``tcp://``, ``ssh://``, a context pointing at one) counts as
    remote. Copying works on every engine; a bind mount only where the files are, so an engine on
    TCP that is in fact this machine costs a copy, never a failed run. No engine call: the local
    socket's warm path stays as fast as it was."""
    override = environ.get(REMOTE_ENV, "").strip()
    if override:
        if override not in ("0", "1"):
            raise ConfigError(f"{REMOTE_ENV}={override!r}: expected 1 (copy the run's files to the engine) "
                              "or 0 (bind-mount them)")
        return override == "1"
    address = engine_address(environ)
    return bool(address) and not address.startswith(("unix://", "npipe://"))


def _context(environ: Mapping[str, str]) -> Any | None:
    """The docker context in use, if it is not the default (docker-py's from_env ignores contexts)."""
    name = environ.get("DOCKER_CONTEXT")
    if not name:
        from docker.context.config import get_current_context_name

        name = get_current_context_name()
    if not name or name == "default":
        return None
    from docker.context import ContextAPI

    try:
        context = ContextAPI.get_context(name)
    except _docker().errors.DockerException as e:
        raise ConfigError(f"docker context {name!r}: {_short(e)}") from None
    if context is None:
        raise ConfigError(f"docker context {name!r} does not exist (DOCKER_CONTEXT or docker's config.json)")
    return context


def _client(environ: Mapping[str, str]) -> Any:
    docker = _docker()
    # ssh:// hosts go through the ssh command, as docker's CLI does (~/.ssh/config, agents).
    context = None if environ.get("DOCKER_HOST") else _context(environ)
    if context is None:
        return docker.from_env(timeout=120, use_ssh_client=True, environment=dict(environ))
    return docker.DockerClient(base_url=context.Host, tls=context.TLSConfig, timeout=120, use_ssh_client=True)


class Docker:
    def __init__(self, client: Any = None, environ: Mapping[str, str] | None = None):
        docker = _docker()
        environ = os.environ if environ is None else environ
        self.remote = engine_is_remote(environ)  # decides, before any call, how a run's files get there
        try:
            self.client = client or _client(environ)
            self.client.ping()
        except docker.errors.DockerException as e:
            raise ConfigError(f"cannot reach the Docker engine (DOCKER_HOST): {_short(e)}") from None

    # ---- images ---------------------------------------------------------------------------
    def runtimes(self) -> dict[str, Any]:
        """The container runtimes the engine has (``Runtimes`` of its info: name -> its path)."""
        return dict(self.client.api.info().get("Runtimes") or {})

    def image_id(self, ref: str) -> str | None:
        docker = _docker()
        try:
            return self.client.api.inspect_image(ref)["Id"]
        except docker.errors.ImageNotFound:
            return None

    def try_pull(self, ref: str) -> str | None:
        docker = _docker()
        repo, tag = _split(ref)
        try:
            self.client.api.pull(repo, tag=tag, auth_config=_registry_auth())
        except docker.errors.APIError:
            return None
        return self.image_id(ref)

    def ensure_pulled(self, ref: str, log: Callable[[str], None]) -> str:
        found = self.image_id(ref)
        if found:
            return found
        log(f"pulling {ref}")
        pulled = self.try_pull(ref)
        if not pulled:
            raise BuildError(f"image {ref!r} is not present locally and could not be pulled")
        return pulled

    def build(
        self,
        context: IO[bytes],
        tag: str,
        buildargs: dict[str, str],
        labels: Mapping[str, str],
        log: Callable[[str], None],
    ) -> str:
        """Build from a tar context, streaming output to ``log``; the image ID, or BuildError
        naming the failing step and its last lines."""
        docker = _docker()
        try:
            stream = self.client.api.build(
                fileobj=context, custom_context=True, tag=tag, buildargs=buildargs,
                labels=dict(labels), rm=True, forcerm=True, decode=True, pull=False,
            )
            image_id = follow_build(stream, tag, log)
        except docker.errors.APIError as e:
            raise BuildError(f"building {tag} failed: {_short(e)}") from None
        return image_id or self.image_id(tag) or _fail(tag)

    def push(self, ref: str, log: Callable[[str], None]) -> str | None:
        """Push ``ref``; the digest of the manifest the engine pushed (None if it did not say)."""
        docker = _docker()
        repo, tag = _split(ref)
        pushed = None
        try:
            for chunk in self.client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=_registry_auth()):
                if "error" in chunk:
                    raise BuildError(f"pushing {ref} failed: {chunk['error']}")
                if chunk.get("status") and chunk.get("id") is None:
                    log(chunk["status"])
                pushed = (chunk.get("aux") or {}).get("Digest") or pushed
        except docker.errors.APIError as e:
            raise BuildError(f"pushing {ref} failed: {_short(e)}") from None
        return pushed

    def tag(self, ref: str, target: str) -> None:
        repo, tag = _split(target)
        self.client.api.tag(ref, repo, tag)

    def registry_digest(self, ref: str) -> str | None:
        """The manifest digest (sha256:...) the registry serves for ``ref``, or None if it has none:
        what a cluster node pulls, whatever the tag points to later."""
        docker = _docker()
        try:
            return self.client.api.inspect_distribution(ref, auth_config=_registry_auth())["Descriptor"]["digest"]
        except (docker.errors.APIError, KeyError):
            return None

    def repo_digests(self, ref: str) -> list[str]:
        """The registry digests the local image ``ref`` has in ``ref``'s repository (those it was
        pushed or pulled as): what tells this image from another under the same tag."""
        info = self._image_info(ref) or {}
        repo = _split(ref)[0]
        return [d.rpartition("@")[2] for d in info.get("RepoDigests") or () if d.rpartition("@")[0] == repo]

    def images_with_label(self, label: str) -> list[dict[str, Any]]:
        return self.client.api.images(filters={"label": label})

    def remove_image(self, image_id: str, refs: tuple[str, ...]) -> list[str]:
        """Remove the image's tags (and with the last one, the image); what could not be removed
        because a container still uses it is kept, silently."""
        docker = _docker()
        removed = []
        for ref in refs or (image_id,):
            try:
                self.client.api.remove_image(ref)
                removed.append(ref)
            except docker.errors.APIError:
                pass
        return removed

    def read_image_file(self, image: str, path: str, limit: int = 16 << 20) -> bytes | None:
        """The file at ``path`` in ``image`` (None if it has none), from a container that is
        created, never started, and removed at once. The archive is read as a stream and a file over
        ``limit`` bytes refused as soon as its size is known: never more than ``limit`` in memory."""
        docker = _docker()
        try:
            created = self.client.api.create_container(image, command=["/dockrun-reads-a-file"],
                                                       labels={"dockrun.reader": "1"})
        except docker.errors.APIError as e:
            raise ConfigError(f"cannot read {path} in {image}: {_short(e)}") from None
        api = self.client.api
        try:
            # docker-py's get_archive keeps the reply to itself: a reply not read to its end must be
            # closed before the container can go (the engine holds it while it sends the archive).
            reply = api.get(f"{api.base_url}/v{api.api_version}/containers/{created['Id']}/archive",
                            params={"path": path}, headers={"Accept-Encoding": "identity"}, stream=True,
                            timeout=api.timeout)
            try:
                return _file_from_archive(reply, image, path, limit)
            finally:
                reply.close()
        finally:
            api.remove_container(created["Id"], force=True)

    # ---- build containers (images/cached_build.py) -----------------------------------------
    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """Create the named volume unless it exists (creating an existing one is a no-op)."""
        docker = _docker()
        try:
            self.client.api.create_volume(name, labels=dict(labels))
        except docker.errors.APIError as e:
            raise BuildError(f"cannot create the volume {name}: {_short(e)}") from None

    def images_named(self, repository: str) -> list[dict[str, Any]]:
        return self.client.api.images(name=repository)

    def volumes_with_label(self, label: str) -> list[dict[str, Any]]:
        return self.client.api.volumes(filters={"label": label}).get("Volumes") or []

    def volume_sizes(self) -> dict[str, int]:
        """Each volume's size in bytes, as the engine counts it (``docker system df -v``; slow)."""
        return {v["Name"]: int((v.get("UsageData") or {}).get("Size", -1))
                for v in self.client.api.df().get("Volumes") or ()}

    def remove_volume(self, name: str) -> bool:
        """False if it is in use (a build is running) or gone."""
        docker = _docker()
        try:
            self.client.api.remove_volume(name)
        except docker.errors.APIError:
            return False
        return True

    def image_config(self, ref: str) -> dict[str, Any]:
        return self.client.api.inspect_image(ref).get("Config") or {}

    def run_build_container(self, image: str, command: list[str], volumes: Mapping[str, tuple[str | None, bool]],
                            inputs: Iterable[bytes], labels: Mapping[str, str],
                            log: Callable[[str], None]) -> tuple[str, int, list[str]]:
        """Create a container from ``image`` with ``volumes`` (container path -> (volume, read_only);
        a volume of None is an anonymous one, removed with the container), an anonymous volume at
        /tmp/dockrun/in that gets the tar ``inputs``, a tmpfs at /tmp, nothing else from the host;
        run ``command`` to its end, its output to ``log``. Returns the container's ID (stopped, for
        a commit; the caller removes it), its exit code and its last lines of output."""
        mounts = [{"Target": t, **({"Source": v} if v else {}), "Type": "volume", "ReadOnly": ro}
                  for t, (v, ro) in volumes.items()]
        mounts.append({"Target": "/tmp/dockrun/in", "Type": "volume", "ReadOnly": False})
        body = {"Image": image, "Entrypoint": command, "Cmd": [], "Labels": dict(labels),
                "HostConfig": {"Mounts": mounts, "Tmpfs": {"/tmp": "exec"}, "Init": True}}
        cid = self._build_call("creating a build container from " + image, self._create_build, body,
                               f"dockrun-build-{os.urandom(6).hex()}")
        tail: deque[str] = deque(maxlen=15)
        try:
            self._build_call("copying the build's inputs", self._put_inputs, cid, b"".join(inputs))
            pending = b""
            for chunk in self._build_call("running the build container", self._start_and_follow, cid):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = _ANSI.sub("", line.decode("utf-8", "replace")).rstrip()
                    if text.strip():
                        tail.append(text)
                        log(text)
            if pending.strip():
                tail.append(pending.decode("utf-8", "replace").rstrip())
                log(tail[-1])
            code = self._build_call("waiting for the build container", self._wait_exit, cid)
        except BaseException:
            self.remove_build_container(cid)
            raise
        return cid, code, list(tail)

    def _build_call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        docker = _docker()
        try:
            return fn(*args)
        except docker.errors.APIError as e:
            raise BuildError(f"{what} failed: {_short(e)}") from None

    def _create_build(self, body: dict[str, Any], name: str) -> str:
        api = self.client.api
        host = api.create_host_config(tmpfs=body["HostConfig"]["Tmpfs"], init=True)
        host["Mounts"] = body["HostConfig"]["Mounts"]
        return api.create_container(body["Image"], entrypoint=body["Entrypoint"], command=body["Cmd"],
                                    labels=body["Labels"], name=name, host_config=host)["Id"]

    def _put_inputs(self, cid: str, data: bytes) -> None:
        self.client.api.put_archive(cid, "/tmp/dockrun/in", data)

    def _start_and_follow(self, cid: str) -> Iterator[bytes]:
        self.client.api.start(cid)
        return self.client.api.logs(cid, stream=True, follow=True)

    def _wait_exit(self, cid: str) -> int:
        return int(self.client.api.wait(cid).get("StatusCode", 1))

    def commit_files(self, image: str, files: IO[bytes], ref: str, config: Mapping[str, Any]) -> str:
        """``image`` with the tar ``files`` unpacked at / as one more layer, committed as ``ref``
        with ``config`` (as ``commit``); its ID. The container that carries them is created, given
        the files and committed without ever starting: no process, network or volume is set up. Its
        command is the image's own (one the commit's config leaves empty is taken from the container),
        so ``image`` must have one."""
        body = {"Image": image, "Entrypoint": None, "Cmd": None, "Labels": {},
                "HostConfig": {"Mounts": [], "Tmpfs": {}, "Init": True}}
        cid = self._build_call("creating a container for the code layer on " + image, self._create_build, body,
                               f"dockrun-build-{os.urandom(6).hex()}")
        try:
            self._build_call("copying the code", self._put_files, cid, "/", files)
            image_id = self.commit(cid, ref, config)
        except BaseException:
            self.remove_build_container(cid)
            raise
        self.discard_build_container(cid)
        return image_id

    def _put_files(self, cid: str, path: str, files: IO[bytes]) -> None:
        self.client.api.put_archive(cid, path, files)  # a file: streamed, never held in memory

    def commit(self, container_id: str, ref: str, config: Mapping[str, Any]) -> str:
        """The container's changes as one layer on its image, with ``config`` as the image's
        config (the engine merges in what it leaves out: see images/cached_build.py); its ID."""
        docker = _docker()
        repo, tag = _split(ref)
        try:
            return self.client.api.commit(container_id, repository=repo, tag=tag, conf=dict(config))["Id"]
        except docker.errors.APIError as e:
            raise BuildError(f"committing {ref} failed: {_short(e)}") from None

    def discard_build_container(self, container_id: str) -> None:
        """Remove it without making the caller wait (a thread the process still waits for at exit)."""
        import threading

        threading.Thread(target=self.remove_build_container, args=(container_id,), name="dockrun-build-cleanup").start()

    def remove_build_container(self, container_id: str) -> None:
        """Remove it and its anonymous volume (the build's inputs); quiet if it is gone."""
        docker = _docker()
        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.APIError:
            pass

    # ---- containers -----------------------------------------------------------------------
    def create(self, spec: ContainerSpec) -> Any:
        docker = _docker()
        mounts = [docker.types.Mount(target=c, source=h, type="bind", read_only=(m == "ro"))
                  for h, c, m in spec.mounts]
        try:
            return self.client.containers.create(
                image=spec.image, command=list(spec.command), name=spec.name, labels=dict(spec.labels),
                environment=dict(spec.environment), mounts=mounts, working_dir=spec.working_dir,
                user=spec.user, init=True, **{"detach": True, **spec.options},  # a shell's is False
            )
        except docker.errors.APIError as e:
            raise ConfigError(f"cannot create the run's container: {_short(e)}") from None

    def stream_output(self, container: Any) -> Iterator[tuple[bytes | None, bytes | None]]:
        """(stdout, stderr) chunks as the container writes them; attach before start so nothing
        is missed. No log replay (``logs=False``, as `docker run` attaches): the engine subscribes
        the stream before it answers, and a replay racing with the start could deliver the first
        lines twice."""
        return self.client.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=False,
                                      demux=True)

    def get_container(self, name_or_id: str) -> Any | None:
        docker = _docker()
        try:
            return self.client.containers.get(name_or_id)
        except docker.errors.NotFound:
            return None

    def stop(self, container: Any, timeout: int = 10) -> None:
        """SIGTERM, ``timeout`` seconds of grace, SIGKILL. Quiet if it is already gone."""
        docker = _docker()
        try:
            container.stop(timeout=timeout)
        except docker.errors.APIError:
            pass

    def remove(self, container: Any) -> None:
        docker = _docker()
        try:
            container.remove(force=True)
        except docker.errors.APIError:
            pass

    def stop_and_remove(self, container: Any, timeout: int = 10) -> None:
        """SIGTERM, ``timeout`` seconds of grace, SIGKILL; then remove. Never raises for a
        container that is already gone."""
        self.stop(container, timeout)
        self.remove(container)

    def put_archive(self, container: Any, chunks: Iterable[bytes]) -> None:
        """Unpack a tar stream at the container's root (before it starts); streamed, never held
        in memory."""
        docker = _docker()
        try:
            self.client.api.put_archive(container.id, "/", chunks)
        except docker.errors.APIError as e:
            raise ExecutionError(f"copying the run's files to the engine failed: {_short(e)}") from None

    def get_archive(self, container: Any, path: str) -> Iterator[bytes]:
        """``path`` in the (exited) container as a tar stream, in chunks."""
        docker = _docker()
        try:
            stream, _ = self.client.api.get_archive(container.id, path, chunk_size=1 << 20)
        except docker.errors.APIError as e:
            raise ExecutionError(f"reading {path} from the engine failed: {_short(e)}") from None
        return stream

    def image_digest(self, ref: str) -> str | None:
        """What ``ref`` names now, by content (for environment keys): the digest it is given by
        (``name@sha256:...``, no lookup); else, for an image here, the registry digest it was pulled
        by or, for one built or imported here, its image ID (one inspect); else the digest the
        registry serves for it; None if nothing answers (the build then says why)."""
        if "@sha256:" in ref:
            return ref.rsplit("@", 1)[1]
        info = self._image_info(ref)
        if info is None:
            return self.registry_digest(ref)
        if not info:
            return None
        pulled = sorted(d.rsplit("@", 1)[1] for d in info.get("RepoDigests") or () if "@" in d)
        return pulled[0] if pulled else info["Id"]

    def _image_info(self, ref: str) -> dict[str, Any] | None:
        """The engine's inspect of ``ref``: None if it is not here, {} if the engine failed to
        answer (``engine.lean`` asks over the socket itself)."""
        docker = _docker()
        try:
            return self.client.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError:
            return {}


# The engine's own words about a build (layer IDs, the intermediate containers it makes and removes,
# the cache it uses): what a step did is the rest.
_BOOKKEEPING = re.compile(r"^ ---> |^Removing intermediate container |^Successfully built |^Successfully tagged ")
_NONZERO = re.compile(r"^The command .* returned a non-zero code: (\d+)$", re.S)
STEP_LOG_LINES = 60  # of the failing step's output, this many (its last) are kept for the error


def is_step_header(line: str) -> bool:
    return bool(_STEP.match(line))


def is_bookkeeping(line: str) -> bool:
    """A line of the engine's build log that says nothing a step printed (``-v`` shows them)."""
    return bool(_BOOKKEEPING.match(line))


def follow_build(chunks: Iterable[Mapping[str, Any]], tag: str, log: Callable[[str], None]) -> str | None:
    """A build's progress (the engine's JSON messages) to ``log``, line by line (a line the engine
    sent in pieces is one line); the image ID it names, or a one-line BuildError naming the failing
    step and its last line of output (``output``: the step's own lines, without the engine's
    bookkeeping). Shared by docker-py's build and the lean one (engine.lean), so both say the same."""
    step, image_id, pending = "", None, ""
    own: deque[str] = deque(maxlen=STEP_LOG_LINES)
    for chunk in chunks:
        if "error" in chunk:
            pending = _ANSI.sub("", pending).strip("\r")
            if pending.strip():
                own.append(pending)
                log(pending)
            detail = ((chunk.get("errorDetail") or {}).get("message") or chunk["error"]).strip()
            # A template's own check explains itself better than the step that ran it.
            said = [line[len(CHECK_PREFIX):] for line in own if line.startswith(CHECK_PREFIX)]
            if said:
                raise BuildError(f"building {tag}: {said[-1]}", output=(step, *own) if step else tuple(own))
            raise _step_failed(tag, step, detail, tuple(own))
        pending += chunk.get("stream", "")
        *lines, pending = re.split(r"\r?\n", pending)
        for line in lines:
            # The engine colours a step's stderr; of a progress bar, its last state.
            line = _ANSI.sub("", line).rstrip("\r").rsplit("\r", 1)[-1]
            if not line.strip():
                continue
            if _STEP.match(line):
                step = line
                own.clear()
            elif not _BOOKKEEPING.match(line):
                own.append(line)
            log(line)
        aux = chunk.get("aux") or {}
        if "ID" in aux:
            image_id = aux["ID"]
    if _ANSI.sub("", pending).strip():
        log(_ANSI.sub("", pending))
    return image_id


def _step_failed(tag: str, step: str, detail: str, own: tuple[str, ...]) -> BuildError:
    """One line: the image, the step (its number and instruction: the instruction's text is in the
    log above, once) and what went wrong, said by the step's last line when the engine says only
    that its command exited non-zero (and repeats the command)."""
    if not step:
        return BuildError(f"building {tag} failed: {detail}", output=own)
    number, _, instruction = step[len("Step "):].partition(" : ")
    keyword = instruction.split(None, 1)[0].upper() if instruction.strip() else "?"
    code = _NONZERO.match(detail)
    if code:
        where, said = f"{keyword}, exit code {code[1]}", own[-1].strip() if own else "(no output)"
    else:
        where, said = keyword, detail.splitlines()[0] if detail else "failed"
    return BuildError(f"building {tag} failed at step {number} ({where}): {said}", output=(step, *own))


def _split(ref: str) -> tuple[str, str]:
    """'host:5000/team/img:tag' -> ('host:5000/team/img', 'tag'); no tag -> 'latest'."""
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = ref.rpartition(":")
        return repo, tag
    return ref, "latest"


def _registry_auth() -> dict[str, str] | None:
    """Registry credentials from the environment (else docker's own config.json applies)."""
    import os

    user, password = os.environ.get("DOCKRUN_REGISTRY_USERNAME"), os.environ.get("DOCKRUN_REGISTRY_PASSWORD")
    return {"username": user, "password": password} if user and password else None


def _fail(tag: str) -> str:
    raise BuildError(f"building {tag} produced no image")


def _file_from_archive(reply: Any, image: str, path: str, limit: int) -> bytes | None:
    """The first file in the archive ``reply`` streams, read only when it is within ``limit``."""
    import base64
    import json
    import tarfile

    if reply.status_code == 404:
        return None
    if reply.status_code != 200:
        raise ConfigError(f"cannot read {path} in {image}: the engine answered {reply.status_code}")
    too_large = ConfigError(f"{path} in {image} is larger than {limit >> 20} MB: not read")
    stat = reply.headers.get("X-Docker-Container-Path-Stat")
    if stat and int(json.loads(base64.b64decode(stat)).get("size") or 0) > limit:
        raise too_large  # the engine says so before any byte of the file is read
    with tarfile.open(fileobj=reply.raw, mode="r|") as tar:
        for member in tar:
            if member.isfile():
                if member.size > limit:
                    raise too_large
                f = tar.extractfile(member)
                return f.read() if f else None
    return None


def _short(e: Exception) -> str:
    text = str(getattr(e, "explanation", None) or e)
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__
