"""The warm helper: a per-user process with `dockrun run`'s modules imported, which forks one worker
per command (client.py says why, and what the worker takes on from the command).

One loop, single-threaded (so that forking is safe): accept a command, learn from the kernel who
sent it and check that a worker can be exactly that command (peer.py), check its code (our
identity), fork a worker, and watch each command's connection. The
connection carries, in order: the request (with the command's stdin, stdout and stderr), the
worker's "pid N", the client's "go" (relayed to the worker through a pipe: a worker runs nothing
before it), and the worker's "exit N". If the connection closes early the worker is killed (before
"go" it has done nothing; after, it is as if the command were killed), and a worker killed by a
signal is reported as "signal N". No command for DOCKRUN_WARMSTART_IDLE_S seconds (600): exit.
A stale helper (a command it cannot be, with higher limits or priority) hands its socket and lock
to a successor at once, and exits once its running commands are over.
"""
from __future__ import annotations

import _signal
import fcntl
import gc
import importlib
import io
import locale
import marshal
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from .client import DEBUG_ENV, MAX_EXTRA_FDS, describe_process, identity, socket_path
from .peer import Own, Peer, Refused, ioprio, judge, read_peer, set_ioprio

IDLE_ENV = "DOCKRUN_WARMSTART_IDLE_S"
IDLE_S = 600.0
REQUEST_TIMEOUT_S = 5.0
RECHECK_S = 10.0  # an idle helper checks this often whether it is still what its name says
MAX_REQUEST = 16 << 20
# What `dockrun run` imports on its way to the engine, and what a build or a first run adds.
PRELOAD = ("dockrun.cli", "dockrun.commands", "dockrun.api", "dockrun.prepare", "dockrun.backends.local.backend",
           "dockrun.backends.local.runs", "dockrun.backends.local.supervisor", "dockrun.engine.lean",
           "dockrun.images.build", "dockrun.images.feedback", "dockrun.tracking.tags", "difflib", "yaml",
           "jinja2", "ctypes")


@dataclass
class Command:
    conn: socket.socket
    pid: int | None  # None once reaped: the pid may belong to another process by then
    gate: int | None  # the write end of the worker's "go" pipe, until it is used


@dataclass
class Helper:
    listener: socket.socket
    wakeup: int
    lock: int
    own: Own
    commands: dict[int, Command] = field(default_factory=dict)  # by connection fd


def main(path: str) -> None:
    os.chdir("/")  # never keep the first command's working directory busy
    folder, name = os.path.split(path)
    # The folder the client checked may have been swapped since by whoever owns its parent (another
    # user's $XDG_RUNTIME_DIR after `su`): from here on everything goes through this descriptor of
    # a folder that is ours and private, or nothing is done (never a file of theirs, or one their
    # symlink names, opened or written as us).
    here = _own_folder(folder)
    if here is None:
        return
    try:
        lock = os.open(name + ".lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600, dir_fd=here)
    except OSError:
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another helper for this code is already here
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())  # who holds it, for people (and tests) looking
    ident = identity(list(sys.path))
    if socket_path(folder, ident) != path:
        return  # dockrun's files changed while this helper started: its successor will come
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    if identity(list(sys.path)) != ident:
        return  # something was installed while we imported: what we have may be a mix
    own = Own.read()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:  # room for the descriptors a worker moves out of its command's way
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = _listen(here, name)
    inode = os.stat(name, dir_fd=here, follow_symlinks=False).st_ino
    gc.freeze()  # the preloaded modules stay shared with every worker instead of being copied
    read_wake, write_wake = os.pipe()
    os.set_blocking(write_wake, False)
    signal.set_wakeup_fd(write_wake)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes select to reap
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _leave)  # through the finally below: our socket goes with us
    helper = Helper(listener, read_wake, lock, own)
    lock_inode = os.fstat(lock).st_ino
    named = [True]  # until we make way: then the files there may be a successor's (an inode reused)

    def make_way() -> None:
        """Our name (socket and lock) to a successor, while we see our running commands through."""
        listener.close()
        _unlink_if_ours(here, name, inode)
        _unlink_if_ours(here, name + ".lock", lock_inode)
        named.clear()
        os.close(lock)  # its lock released: the successor may start

    try:
        serve(helper, ident, float(os.environ.get(IDLE_ENV) or IDLE_S), make_way)
    finally:
        if named:
            _unlink_if_ours(here, name, inode)
            _unlink_if_ours(here, name + ".lock", lock_inode)


def _leave(signum: int, frame: object) -> NoReturn:
    sys.exit(0)


def _own_folder(folder: str) -> int | None:
    """A descriptor of ``folder`` if it is a directory (not a symlink) of ours that no one else
    can enter (as the client's runtime_dir requires); None otherwise."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        return None
    return fd


def _listen(here: int, name: str) -> socket.socket:
    """Bind under a temporary name, then move into place: a client never connects to a socket
    that is not listening yet, and a stale socket file is replaced (all in the folder ``here``)."""
    tmp = f"{name}.{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(tmp, dir_fd=here)
    except FileNotFoundError:
        pass
    os.fchdir(here)  # bind takes a path only: a name in the folder we hold, not the path to it
    try:
        listener.bind(tmp)
    finally:
        os.chdir("/")
    os.chmod(tmp, 0o600, dir_fd=here)
    listener.listen(64)
    os.rename(tmp, name, src_dir_fd=here, dst_dir_fd=here)
    return listener


def _unlink_if_ours(here: int, name: str, inode: int) -> None:
    """Remove ``name`` unless a successor has put its own file there."""
    try:
        if os.stat(name, dir_fd=here, follow_symlinks=False).st_ino == inode:
            os.unlink(name, dir_fd=here)
    except OSError:
        pass


def serve(helper: Helper, ident: str, idle_s: float, make_way: Callable[[], None]) -> None:
    """Serve until idle for ``idle_s`` or stale. A stale helper makes way for its successor at once
    but stays until its running commands are over: it is what kills a worker whose command is
    gone (the command killed, its terminal closed), as that command's own death would end it."""
    last = time.monotonic()
    listening = [helper.listener]
    while True:
        timeout = None if helper.commands else max(0.0, idle_s - (time.monotonic() - last))
        if timeout == 0.0 or not (listening or helper.commands):
            return
        ready = select.select([*listening, helper.wakeup, *helper.commands], [], [],
                              None if timeout is None else min(timeout, RECHECK_S))[0]
        if not ready and not helper.commands and identity(list(sys.path)) != ident:
            return  # dockrun or a distribution was changed, or we were moved: no command will come
        for fd in ready:
            if fd is helper.listener:
                if accept(helper, ident) == "stale":
                    make_way()
                    listening = []
            elif fd == helper.wakeup:
                os.read(helper.wakeup, 512)
            else:
                listen_to(helper, fd)
        reap(helper)
        if helper.commands:
            last = time.monotonic()


def accept(helper: Helper, ident: str) -> str | None:
    conn, _ = helper.listener.accept()
    try:
        conn.settimeout(REQUEST_TIMEOUT_S)
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
        if uid != os.geteuid():  # another user: not even an answer
            conn.close()
            return None
        request, fds = _read_request(conn)
    except (OSError, ValueError, EOFError, TypeError):
        conn.close()
        return None
    try:
        if request.get("identity") != ident:  # other code than ours: make way for a helper with it
            raise Refused("other code", stale=True)
        peer = read_peer(conn)
    except Refused as e:
        for fd in fds:
            os.close(fd)
        _send(conn, f"{'stale' if e.stale else 'refused'} {e}\n".encode())
        conn.close()
        return "stale" if e.stale else None
    try:
        judge(peer, helper.own)
    except Refused as e:
        for fd in (*fds, peer.cwd):
            os.close(fd)
        _send(conn, f"{'stale' if e.stale else 'refused'} {e}\n".encode())
        conn.close()
        return "stale" if e.stale else None
    gate_read, gate_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(gate_write)
        worker(helper, conn, (request, peer), fds, gate_read)
    os.close(gate_read)
    for fd in (*fds, peer.cwd):
        os.close(fd)
    del request  # the command's environment stays with its worker only
    conn.settimeout(None)
    helper.commands[conn.fileno()] = Command(conn, pid, gate_write)
    return None


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    fd_size = struct.calcsize("i") * (3 + MAX_EXTRA_FDS)
    data, ancillary, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(fd_size))
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += list(struct.unpack(f"{len(payload) // 4}i", payload[:len(payload) // 4 * 4]))
    try:
        if len(fds) < 3 or len(data) < 4:
            raise ValueError("a request needs three descriptors and a length")
        size = struct.unpack("!I", data[:4])[0]
        if size > MAX_REQUEST:
            raise ValueError("request too large")
        body = bytearray(data[4:])
        while len(body) < size:
            chunk = conn.recv(min(65536, size - len(body)))
            if not chunk:
                raise EOFError
            body += chunk
        request = marshal.loads(bytes(body))
        if not isinstance(request, dict) or list(request.get("fds") or []) != sorted(set(request.get("fds") or [])):
            raise ValueError("a request is a dict, with its descriptors' numbers in order")
        extra = list(request.get("fds") or [])
        if len(extra) != len(fds) - 3 or not all(isinstance(n, int) and n > 2 for n in extra):
            raise ValueError("a number for each descriptor above 2")
        return request, fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def listen_to(helper: Helper, fd: int) -> None:
    """The client said "go" (the worker may start), or hung up (the worker must not go on)."""
    command = helper.commands[fd]
    try:
        data = command.conn.recv(64)
    except OSError:
        data = b""
    if data and command.gate is not None:
        os.write(command.gate, b"g")
        os.close(command.gate)
        command.gate = None
        return
    if data:
        return  # nothing else is expected from a client; ignore it
    if command.pid is not None:  # still ours (not reaped): as if the command itself were killed
        try:
            os.kill(command.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _drop(helper, fd)


def reap(helper: Helper) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        for fd, command in list(helper.commands.items()):
            if command.pid == pid:
                command.pid = None
                if os.WIFSIGNALED(status):  # it could not say "exit N" itself
                    _send(command.conn, f"signal {os.WTERMSIG(status)}\n".encode())
                    _drop(helper, fd)


def _drop(helper: Helper, fd: int) -> None:
    command = helper.commands.pop(fd)
    if command.gate is not None:
        os.close(command.gate)
    command.conn.close()


def _send(conn: socket.socket, data: bytes) -> None:
    try:
        conn.sendall(data)
    except OSError:
        pass


def worker(helper: Helper, conn: socket.socket, command: tuple[dict, Peer], fds: list[int], gate: int) -> NoReturn:
    """The forked worker: become the command, tell the client our pid, wait for "go", run the CLI,
    report the exit code. What cannot be taken on: "refused" (the client runs the command
    itself), and nothing runs or is printed here."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    helper.listener.close()
    for fd in (helper.wakeup, helper.lock):
        os.close(fd)
    for other in helper.commands.values():
        other.conn.close()
        if other.gate is not None:
            os.close(other.gate)
    step: list = ["descriptors", conn]  # where we are, and the connection once it has moved
    try:
        conn, gate = _become(conn, command, fds, gate, step)
    except BaseException as e:  # noqa: BLE001 - the client is told, and runs the command itself
        _send(step[1], f"refused cannot take on the command's {step[0]} ({type(e).__name__}: {e})\n".encode())
        os._exit(1)
    del command
    code = 1
    try:
        conn.sendall(f"pid {os.getpid()}\n".encode())
        if os.read(gate, 1) != b"g":  # the client hung up instead: run nothing
            os._exit(1)
        os.close(gate)
        _die_with(conn)
        if os.environ.get(DEBUG_ENV) == "1":
            sys.stderr.write(f"dockrun: warm start: served by helper {os.getppid()}\n"
                             f"dockrun: process: {describe_process()}\n")
        code = run_cli(sys.argv[1:])
    except BaseException:  # noqa: BLE001 - reported on the command's stderr, as in-process
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - a closed pipe: nothing more can be said there
            pass
    _send(conn, f"exit {code}\n".encode())
    os._exit(code)


def _die_with(conn: socket.socket) -> None:
    """From "go" on, the kernel kills this worker (SIGKILL) the moment the command's end of the
    connection closes, as the command's own death would end the command: whether or not the helper
    is still there to do it (stopped, killed, or gone with `kill` while commands ran). Nothing else
    comes from a client after "go", and our own writes do not count."""
    fd = conn.fileno()
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, getattr(fcntl, "F_SETSIG", 10), signal.SIGKILL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
    if select.select([fd], [], [], 0)[0]:  # closed before we were armed: no signal would come
        os.kill(os.getpid(), signal.SIGKILL)


def _become(conn: socket.socket, command: tuple[dict, Peer], fds: list[int], gate: int,
            step: list) -> tuple[socket.socket, int]:
    """Take on the command's descriptors, working directory, umask, resource limits, nice, CPU
    affinity, I/O priority, oom_score_adj, environment (and what follows from it), signals and
    arguments, all but the environment and arguments as the kernel showed them (``peer``).
    ``step`` says where it failed. Returns the connection and the "go" pipe at their new numbers."""
    request, peer = command
    conn, gate, cwd = _take_descriptors(conn, [gate, peer.cwd], fds, [0, 1, 2, *request["fds"]])
    step[1] = conn
    conn.settimeout(None)
    step[0] = "working directory"
    os.fchdir(cwd)
    os.close(cwd)
    step[0] = "umask"
    os.umask(peer.umask)
    step[0] = "resource limits"
    for which, soft, hard in peer.limits:
        resource.setrlimit(which, (soft, hard))
    step[0] = "nice"
    if os.getpriority(os.PRIO_PROCESS, 0) != peer.nice:
        os.setpriority(os.PRIO_PROCESS, 0, peer.nice)
    step[0] = "CPU affinity"
    os.sched_setaffinity(0, peer.cpus)
    step[0] = "I/O priority"
    if peer.ioprio is not None and ioprio(0) != peer.ioprio:
        set_ioprio(peer.ioprio)
    step[0] = "oom_score_adj"
    with open("/proc/self/oom_score_adj") as f:
        different = int(f.read()) != peer.oom_score_adj
    if different:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(peer.oom_score_adj))
    step[0] = "environment"
    _take_environment({str(k): str(v) for k, v in dict(request["env"]).items()}, request["streams"])
    step[0] = "signals"
    _take_signals(peer)
    sys.argv = ["dockrun", *[str(a) for a in request["argv"]]]
    return conn, gate


def _take_descriptors(conn: socket.socket, keep: list[int], fds: list[int],
                      targets: list[int]) -> tuple[socket.socket, ...]:
    """Make this process's descriptor table the command's: received descriptor i at number
    targets[i], inheritable, as it had them; ours (``conn`` and ``keep``) moved above them,
    close-on-exec; nothing else open. Returns the connection and ``keep`` at their new numbers."""
    high = max([*targets, *fds, *keep, conn.fileno()]) + 1
    moved_conn = socket.socket(fileno=fcntl.fcntl(conn.fileno(), fcntl.F_DUPFD_CLOEXEC, high))
    moved_keep = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, high) for fd in keep]
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, high) for fd in fds]
    conn.close()
    for fd in {*keep, *fds}:
        os.close(fd)
    for fd, target in zip(moved, targets):
        os.dup2(fd, target, inheritable=True)
        os.close(fd)
    wanted = {*targets, moved_conn.fileno(), *moved_keep}
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in wanted:
            try:
                os.close(int(name))
            except OSError:
                pass
    return (moved_conn, *moved_keep)


def _take_environment(env: dict[str, str], streams: list) -> None:
    """The command's environment, and what the interpreter derives from it at start: the time
    zone, LC_CTYPE (the only category Python sets at start) and the stdio encodings (as the
    command's own interpreter chose them: PYTHONIOENCODING, the locale, a terminal or not)."""
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    try:
        locale.setlocale(locale.LC_CTYPE, "")
    except locale.Error:  # as Python's start-up: an unknown locale leaves "C"
        locale.setlocale(locale.LC_CTYPE, "C")
    sys.stdin, sys.stdout, sys.stderr = (_stdio(fd, *settings) for fd, settings in enumerate(streams))
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile.tempdir = None  # TMPDIR is the command's


def _stdio(fd: int, encoding: str, errors: str, line_buffering: bool, write_through: bool) -> io.TextIOWrapper:
    """A standard stream on ``fd`` as the interpreter's start-up makes it (create_stdio), with the
    command's settings: ours were made for the helper's /dev/null."""
    mode = "r" if fd == 0 else "w"
    unbuffered = mode == "w" and write_through  # -u or PYTHONUNBUFFERED: no buffer under the text layer
    buffered = open(fd, mode + "b", buffering=0 if unbuffered else -1, closefd=False)  # noqa: SIM115 - sys.stdout
    (buffered if unbuffered else buffered.raw).name = ("<stdin>", "<stdout>", "<stderr>")[fd]
    stream = io.TextIOWrapper(buffered, str(encoding), str(errors), "\n", bool(line_buffering), bool(write_through))
    stream.mode = mode
    return stream


def _take_signals(peer: Peer) -> None:
    """The command's blocked signals, and its ignored ones (SIGINT in a script's background job);
    the others as an interpreter starts: SIGINT raises KeyboardInterrupt, the rest default. (The C
    module's calls: the Python ones convert every number to an enum, a millisecond here.)"""
    valid = _signal.valid_signals()
    for sig in valid:
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        if sig in peer.ignored:
            wanted = _signal.SIG_IGN
        elif sig == signal.SIGINT:
            wanted = _signal.default_int_handler
        else:
            wanted = _signal.SIG_DFL
        if _signal.getsignal(sig) != wanted:  # most already are: a system call saved per signal
            _signal.signal(sig, wanted)
    _signal.pthread_sigmask(signal.SIG_SETMASK, peer.blocked & valid)


def run_cli(argv: list[str]) -> int:
    """The CLI as `dockrun` runs it in-process; its exit code."""
    from ..cli import main as cli_main

    try:
        cli_main(argv)
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code & 0xFF
        sys.stderr.write(f"{e.code}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
