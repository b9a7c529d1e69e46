"""The warm helper: a per-user process with `dockrun run`'s modules imported, which forks one worker
per command (client.py says why, and what the worker inherits from the command).

One loop, single-threaded (so that forking is safe): accept a command, check who sent it (our
uid) and with what code (our identity), fork a worker, and watch each command's connection. The
connection carries, in order: the request (with the command's stdin, stdout and stderr), the
worker's "pid N", the client's "go" (relayed to the worker through a pipe: a worker runs nothing
before it), and the worker's "exit N". If the connection closes early the worker is killed (before
"go" it has done nothing; after, it is as if the command were killed), and a worker killed by a
signal is reported as "signal N". No command for DOCKRUN_WARMSTART_IDLE_S seconds (600): exit.
"""
from __future__ import annotations

import fcntl
import gc
import importlib
import marshal
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import NoReturn

from .client import identity, socket_path

IDLE_ENV = "DOCKRUN_WARMSTART_IDLE_S"
IDLE_S = 600.0
REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST = 16 << 20
# What `dockrun run` imports on its way to the engine, and what a build or a first run adds.
PRELOAD = ("dockrun.cli", "dockrun.api", "dockrun.prepare", "dockrun.backends.local.backend",
           "dockrun.backends.local.runs", "dockrun.backends.local.supervisor", "dockrun.engine.lean",
           "dockrun.images.build", "dockrun.images.feedback", "dockrun.tracking.tags", "difflib", "yaml",
           "jinja2")


@dataclass
class Command:
    conn: socket.socket
    pid: int | None  # None once reaped: the pid may belong to another process by then
    gate: int | None  # the write end of the worker's "go" pipe, until it is used


@dataclass
class Helper:
    listener: socket.socket
    wakeup: int
    commands: dict[int, Command] = field(default_factory=dict)  # by connection fd


def main(path: str) -> None:
    os.chdir("/")  # never keep the first command's working directory busy
    folder = os.path.dirname(path)
    lock = os.open(path + ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another helper for this code is already here
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())  # who holds it, for people (and tests) looking
    ident = identity(list(sys.path))
    if socket_path(folder, ident) != path:
        return  # dockrun's files changed while this helper started: its successor will come
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    listener = _listen(path)
    inode = os.stat(path).st_ino
    gc.freeze()  # the preloaded modules stay shared with every worker instead of being copied
    read_wake, write_wake = os.pipe()
    os.set_blocking(write_wake, False)
    signal.set_wakeup_fd(write_wake)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes select to reap
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    helper = Helper(listener, read_wake)
    try:
        serve(helper, ident, float(os.environ.get(IDLE_ENV) or IDLE_S))
    finally:
        _unlink_if_ours(path, inode)
        _unlink_if_ours(path + ".lock", os.fstat(lock).st_ino)


def _listen(path: str) -> socket.socket:
    """Bind under a temporary name, then move into place: a client never connects to a socket
    that is not listening yet, and a stale socket file is replaced."""
    tmp = f"{path}.{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.lexists(tmp):
        os.unlink(tmp)
    listener.bind(tmp)
    os.chmod(tmp, 0o600)
    listener.listen(64)
    os.rename(tmp, path)
    return listener


def _unlink_if_ours(path: str, inode: int) -> None:
    """Remove ``path`` unless a successor has put its own file there."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def serve(helper: Helper, ident: str, idle_s: float) -> None:
    last = time.monotonic()
    while True:
        timeout = None if helper.commands else max(0.0, idle_s - (time.monotonic() - last))
        if timeout == 0.0:
            return
        ready = select.select([helper.listener, helper.wakeup, *helper.commands], [], [], timeout)[0]
        for fd in ready:
            if fd is helper.listener:
                if accept(helper, ident) == "stale":
                    return
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
        if uid != os.getuid():
            conn.close()
            return None
        request, fds = _read_request(conn)
    except (OSError, ValueError, EOFError, TypeError):
        conn.close()
        return None
    if request.get("identity") != ident:  # other code than ours: make way for a helper with it
        for fd in fds:
            os.close(fd)
        _send(conn, b"stale\n")
        conn.close()
        return "stale"
    gate_read, gate_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(gate_write)
        worker(helper, conn, request, fds, gate_read)
    os.close(gate_read)
    for fd in fds:
        os.close(fd)
    conn.settimeout(None)
    helper.commands[conn.fileno()] = Command(conn, pid, gate_write)
    return None


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    fd_size = struct.calcsize("3i")
    data, ancillary, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(fd_size))
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += list(struct.unpack(f"{len(payload) // 4}i", payload[:len(payload) // 4 * 4]))
    try:
        if len(fds) != 3 or len(data) < 4:
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
        if not isinstance(request, dict):
            raise ValueError("a request is a dict")
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


def worker(helper: Helper, conn: socket.socket, request: dict, fds: list[int], gate: int) -> NoReturn:
    """The forked worker: become the command (descriptors, directory, umask, environment, default
    signal handling), tell the client our pid, wait for "go", run the CLI, report the exit code."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        helper.listener.close()
        os.close(helper.wakeup)
        for command in helper.commands.values():
            command.conn.close()
            if command.gate is not None:
                os.close(command.gate)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        _take_limits(request.get("limits") or {})
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})
        _fresh_process_state()
        sys.argv = ["dockrun", *[str(a) for a in request["argv"]]]
        conn.settimeout(None)
        conn.sendall(f"pid {os.getpid()}\n".encode())
        if os.read(gate, 1) != b"g":  # the client hung up instead: run nothing
            os._exit(1)
        os.close(gate)
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


def _take_limits(limits: dict) -> None:
    """The command's resource limits, as far as this process may set them (a limit above the
    helper's hard one stays at that)."""
    import resource

    for name, (soft, hard) in limits.items():
        which = getattr(resource, str(name), None)
        if which is None:
            continue
        _, my_hard = resource.getrlimit(which)
        hard = hard if my_hard == resource.RLIM_INFINITY or 0 <= hard <= my_hard else my_hard
        soft = soft if hard == resource.RLIM_INFINITY or 0 <= soft <= hard else hard
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass


def _fresh_process_state() -> None:
    """What the interpreter decided at the helper's start from its own descriptors and
    environment, decided again for the command's."""
    sys.stdout.reconfigure(line_buffering=os.isatty(1))
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile.tempdir = None  # TMPDIR is the command's


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
