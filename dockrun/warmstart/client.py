"""The `dockrun` command's entry point, and the client side of warm start.

A warm `dockrun run` spends more time importing Python modules (about 90 ms: click, sqlite3,
dataclasses, dockrun itself) than doing its own work (about 10 ms before the engine is asked to
create the container), which is what kept it from running within 15% of a bare `docker run`. So
`dockrun run` hands itself to a warm helper (server.py): a per-user process that has those modules
imported and forks a fresh worker per command. The worker is the command: it gets this process's
stdin, stdout and stderr (the descriptors themselves), its arguments, working directory, umask and
environment, and its exit code becomes ours.

What keeps it invisible and safe:
- Same user only: the socket is in a folder of the user's own that nobody else can enter
  ($XDG_RUNTIME_DIR/dockrun, else /tmp/dockrun-UID, refused unless owned by us and mode 0700), and
  the helper checks the peer's uid (SO_PEERCRED) too.
- Same code: the socket's name comes from the interpreter, the module search path and the newest
  change to dockrun's own files; an edited or upgraded dockrun gets a new helper, and the helper
  refuses a command whose identity differs. An idle helper exits after 10 minutes.
- Same process semantics: Ctrl-C and SIGTERM are passed to the worker, which handles them as the
  command always has (the run is cancelled); if this process dies, the helper kills the worker, as
  if the command itself had been killed (its run's supervisor then stops the container).
- Exactly once: the worker waits for our "go" after telling us its pid; if no pid comes in time we
  hang up, the worker never starts, and the command runs in this process instead.
- Nothing depends on it: no helper, DOCKRUN_WARMSTART=0, or anything unexpected, and the command
  runs in this process as before (starting a helper for the next time).

This module is imported on every `dockrun` start, so it uses the C halves of `socket` and `signal`
(`_socket`, `_signal`): the Python halves import enum, selectors and functools, 10 ms that would
be a quarter of what warm start saves.
"""
from __future__ import annotations

import _signal
import _socket
import marshal
import os
import stat
import sys
import zlib
from _struct import pack

ENABLE_ENV = "DOCKRUN_WARMSTART"
PID_TIMEOUT_S = 10.0  # a helper that cannot fork a worker in this time is not a warm start
COMMANDS = ("run",)  # the hot path; every other command runs in-process


def main() -> None:
    """The `dockrun` console script and `python -m dockrun`."""
    argv = sys.argv[1:]
    if argv[:1] and argv[0] in COMMANDS and os.environ.get(ENABLE_ENV, "1") != "0":
        code = run_warm(argv)
        if code is not None:
            sys.stdout.flush()
            sys.exit(code)
    from ..cli import main as cli_main

    cli_main()


def runtime_dir() -> str | None:
    """A folder only this user can enter, for the helper's socket; None if there is no safe one."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = os.path.join(base, "dockrun") if base else os.path.join("/tmp", f"dockrun-{os.getuid()}")
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    # Another user's folder (made first, in a shared /tmp) or a symlink is never used.
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return folder


def _package() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def search_path() -> list[str]:
    """Where the helper imports modules from: ours without sys.path[0] (the script's folder, or with
    `python -m` the working directory, which may be a project someone else wrote: a helper must
    not import its files for every later command), plus the folder dockrun itself is in."""
    parent, rest = os.path.dirname(_package()), sys.path[1:]
    return rest if parent in rest else [parent, *rest]


def identity(path: list[str]) -> str:
    """What makes a helper the same as this command, short of what a worker takes on itself: the
    interpreter, where modules come from, the newest change to dockrun's files (an edit or upgrade
    is a new identity), and what a worker cannot take on: who we are, groups included (a user just
    added to the docker group must not be served by a helper from before), the cgroup (a CI job's
    memory limit and accounting) and the mount namespace."""
    package = _package()
    newest, count = 0, 0
    for top in (package, os.path.join(os.path.dirname(package), "templates")):
        newest, count = _newest(top, newest, count)
    who = (os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups()))
    return repr((sys.executable, sys.version, path, package, newest, count, who, _where()))


def _where() -> tuple[str, str]:
    """This process's cgroup and mount namespace ('' where the system has none to show)."""
    try:
        with open("/proc/self/cgroup", "rb") as f:
            cgroup = f.read().decode("utf-8", "replace")
    except OSError:
        cgroup = ""
    try:
        mounts = os.readlink("/proc/self/ns/mnt")
    except OSError:
        mounts = ""
    return cgroup, mounts


def _newest(folder: str, newest: int, count: int) -> tuple[int, int]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return newest, count
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name != "__pycache__":
                newest, count = _newest(entry.path, newest, count)
        elif entry.name.endswith((".py", ".j2")):
            newest, count = max(newest, entry.stat().st_mtime_ns), count + 1
    return newest, count


def socket_path(folder: str, ident: str) -> str:
    return os.path.join(folder, f"{zlib.crc32(ident.encode()):08x}.sock")


def run_warm(argv: list[str]) -> int | None:
    """Run ``argv`` in a warm helper's worker and return its exit code; None if it did not run
    there (then it must run here), having started a helper for the next command if none answered."""
    folder = runtime_dir()
    if folder is None or not sys.executable:
        return None
    modules = search_path()
    ident = identity(modules)
    path = socket_path(folder, ident)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        start_helper(path, modules)
        return None
    try:
        return _converse(sock, argv, ident)
    finally:
        sock.close()


def _converse(sock: _socket.socket, argv: list[str], ident: str) -> int | None:
    try:
        cwd = os.getcwd()
    except OSError:  # a removed working directory: let the command say so itself
        return None
    umask = os.umask(0)
    os.umask(umask)
    request = marshal.dumps({"identity": ident, "argv": argv, "cwd": cwd, "env": dict(os.environ),
                             "umask": umask, "limits": _limits()})
    sock.settimeout(PID_TIMEOUT_S)
    try:
        sock.sendmsg([pack("!I", len(request)) + request],
                     [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, pack("3i", 0, 1, 2))])
        lines = _Lines(sock)
        first = lines.next().split()
    except OSError:  # a closed descriptor to pass, a helper that went away, or one too slow: run here
        return None
    if len(first) != 2 or first[0] != b"pid":
        return None  # "stale": that helper has other code and is leaving
    worker = int(first[1])
    forward = _Forwarder(worker)
    try:
        sock.settimeout(None)
        sock.sendall(b"go\n")  # from here on the worker runs the command: no more falling back
        while line := lines.next():
            word, _, value = line.strip().partition(b" ")
            if word == b"exit":
                return int(value)
            if word == b"signal":  # killed before it could say: as a shell reports it
                return 128 + int(value)
    except OSError:
        pass
    finally:
        forward.restore()
    sys.stderr.write("dockrun: error: the command's worker process ended without an exit code\n")
    return 1


# Resource limits a worker takes on from its command (`ulimit -n`, `-v` in a CI script): lowered
# freely; raised only as far as the helper's hard limit allows.
LIMITS = ("RLIMIT_NOFILE", "RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_FSIZE", "RLIMIT_CORE",
          "RLIMIT_CPU", "RLIMIT_NPROC")


def _limits() -> dict[str, tuple[int, int]]:
    import resource  # a C module: well under a millisecond

    return {name: resource.getrlimit(getattr(resource, name)) for name in LIMITS if hasattr(resource, name)}


class _Lines:
    """Lines from the helper (socket.makefile without importing socket.py)."""

    def __init__(self, sock: _socket.socket):
        self.sock = sock
        self.buf = b""

    def next(self) -> bytes:
        """The next line, or b"" once the helper has hung up."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                line, self.buf = self.buf, b""
                return line
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"


class _Forwarder:
    """Ctrl-C (SIGINT) and SIGTERM to this process go to the worker, which handles them as the
    command does in-process (cancel the run, exit 130)."""

    SIGNALS = (_signal.SIGINT, _signal.SIGTERM)

    def __init__(self, pid: int):
        self.pid = pid
        self.previous = {sig: _signal.signal(sig, self._forward) for sig in self.SIGNALS}

    def _forward(self, signum: int, frame: object) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            _signal.signal(sig, handler)


def start_helper(path: str, modules: list[str]) -> None:
    """Start a helper for ``path`` in the background, detached (its own session, no terminal), for
    the next command; this one runs in-process meanwhile. Failing to start one changes nothing."""
    bootstrap = ("import marshal, sys; sys.path[:] = marshal.loads(bytes.fromhex(sys.argv[2])); "
                 "from dockrun.warmstart.server import main; main(sys.argv[1])")
    devnull = os.devnull
    try:
        os.posix_spawn(sys.executable, [sys.executable, "-c", bootstrap, path, marshal.dumps(modules).hex()],
                       dict(os.environ), setsid=True,
                       file_actions=[(os.POSIX_SPAWN_OPEN, 0, devnull, os.O_RDONLY, 0),
                                     (os.POSIX_SPAWN_OPEN, 1, devnull, os.O_WRONLY, 0),
                                     (os.POSIX_SPAWN_DUP2, 1, 2)])
    except (OSError, AttributeError, TypeError):
        pass
