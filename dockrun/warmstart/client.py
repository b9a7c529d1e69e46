"""The `dockrun` command's entry point, and the client side of warm start.

A warm `dockrun run` spends more time importing Python modules (about 90 ms: click, sqlite3,
dataclasses, dockrun itself) than doing its own work (about 10 ms before the engine is asked to
create the container). So `dockrun run` hands itself to a warm helper (server.py): a per-user
process that has those modules imported and forks a fresh worker per command. A served command
must be indistinguishable from the same command run here, and a helper must never be a way around
what this process was allowed.

What keeps it so:
- The helper believes nothing this process says about itself that matters: it reads who we are
  and how we are confined from the kernel (SO_PEERCRED, SO_PEERGROUPS, SO_PEERPIDFD and
  /proc/<pid> while that pidfd shows us alive; server.py, peer.py) and serves only a process that
  shares everything a worker cannot take on (`shared_facts`); the worker takes on the rest
  (resource limits, nice, CPU affinity, umask, ignored and blocked signals, working directory).
- Every helper is for one such context: the socket's name covers the code (interpreter, its
  flags, module path, the newest change to dockrun's files, the folders installed distributions
  live in) and `shared_facts`, so a command in another context finds (or starts) its own helper.
- We never talk to a helper that is not ours: the runtime folder is ours and 0700, and before
  anything is sent the peer's uid (SO_PEERCRED) must be ours.
- What cannot be made equal is not served: a command with a controlling terminal (prompts of
  ssh, git and credential helpers read /dev/tty, which a worker cannot have), with more open
  descriptors than are passed, under a memory limit (a worker holds the helper's memory too), or
  with no-new-privs (a sandbox's Landlock rules and seccomp filters are not in /proc, so one
  sandbox's worker could be another's way out) runs here; a helper that refuses says why, and we
  run here without starting another.
- Per command, the worker takes on our arguments, descriptors (0-2 and every other inheritable
  one), environment, time zone, locale and stdio encodings; the helper keeps no command's
  environment (it starts with only the interpreter's PYTHON*/locale variables).
- Exactly once: the worker waits for our "go" after telling us its pid; if no pid comes in time
  we hang up, the worker never starts, and the command runs here instead.
- Nothing depends on it: no helper, DOCKRUN_WARMSTART=0, or anything unexpected, and the command
  runs in this process as before.

This module is imported on every `dockrun` start, so it uses the C halves of `socket` and `signal`
(`_socket`, `_signal`): the Python halves import enum, selectors and functools, 10 ms that would
be a quarter of what warm start saves.
"""
from __future__ import annotations

import _signal
import _socket
import atexit
import marshal
import os
import stat
import sys
import zlib
from _struct import pack, unpack

ENABLE_ENV = "DOCKRUN_WARMSTART"
DEBUG_ENV = "DOCKRUN_WARMSTART_DEBUG"  # 1: say on stderr whether and why a command was served
PID_TIMEOUT_S = 10.0  # a helper that cannot fork a worker in this time is not a warm start
COMMANDS = ("run",)  # the hot path; every other command runs in-process
MAX_EXTRA_FDS = 64  # more inheritable descriptors than this: run in-process
MAX_HELPERS = 8  # live helpers of one dockrun per runtime folder; past that, a new context runs in-process
# Variables the helper starts with: those the interpreter reads at start-up (its flags, UTF-8
# mode, bytecode cache, file system encoding). Nothing else of the first command's environment.
HELPER_ENV = ("PYTHON", "LC_", "LANG")


def main() -> None:
    """The `dockrun` console script and `python -m dockrun`."""
    argv = sys.argv[1:]
    debug = os.environ.get(DEBUG_ENV) == "1"
    if argv[:1] and argv[0] in COMMANDS:
        if os.environ.get(ENABLE_ENV, "1") != "0":
            try:
                code, why = run_warm(argv)
            except Exception as e:  # noqa: BLE001 - nothing depends on warm start: the command runs here
                code, why = None, f"{type(e).__name__}: {e}"
            if code is not None:
                sys.stdout.flush()
                sys.exit(code)
        else:
            why = f"{ENABLE_ENV}=0"
        if debug:
            sys.stderr.write(f"dockrun: warm start: in-process ({why})\n")
    from ..cli import main as cli_main

    if debug:
        sys.stderr.write(f"dockrun: process: {describe_process()}\n")
    if argv[:1] != ["run"]:
        cli_main()
        return
    try:
        cli_main()
    except SystemExit as e:
        exit_now(e.code)
    exit_now(0)


def exit_now(code: object) -> None:  # never returns
    """Leave as Python's own exit would (other threads awaited, atexit callbacks run, the standard
    streams flushed), without its teardown of every module and object: 10-15 ms of a warm run,
    after the run is over. Anything unusual (a thread still running, an exit message, a stream that
    cannot be flushed) takes Python's own way."""
    threading = sys.modules.get("threading")
    running = threading is not None and any(
        not t.daemon and t is not threading.main_thread() for t in threading.enumerate())
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if running or run_exitfuncs is None or not (code is None or isinstance(code, int)):
        sys.exit(code)
    run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - Python's own exit reports it as it always does
        sys.exit(code)
    os._exit(code or 0)


def describe_process() -> str:
    """The per-command state a served command must share with an in-process one (DEBUG_ENV)."""
    import locale
    import time

    streams = " ".join(f"{name}={s.encoding}/{s.errors}" if s is not None else f"{name}=closed" for name, s in
                       (("stdin", sys.stdin), ("stdout", sys.stdout), ("stderr", sys.stderr)))
    return (f"tz={'/'.join(time.tzname)} offset={time.timezone} ctype={locale.setlocale(locale.LC_CTYPE)} "
            f"preferred={locale.getpreferredencoding(False)} {streams}")


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
    parent = os.path.dirname(_package())
    # An empty PYTHONPATH entry (or ".") names the working directory again, made absolute.
    here = os.path.realpath(os.getcwd())
    rest = [p for p in sys.path[1:] if p and (p == parent or os.path.realpath(p) != here)]
    return rest if parent in rest else [parent, *rest]


def identity(path: list[str], proc: str = "/proc/self") -> str:
    """What makes a helper the same as this command, short of what a worker takes on itself: the
    code (interpreter, its start-up flags and encodings, where modules come from, the newest
    change to dockrun's files, and when a folder of the module path last gained or lost an entry:
    installing, upgrading or removing any distribution there does that) and ``shared_facts``."""
    package = _package()
    newest, count = 0, 0
    for top in (package, os.path.join(os.path.dirname(package), "templates")):
        newest, count = _newest(top, newest, count)
    interpreter = (sys.executable, sys.version, repr(sys.flags), sorted(sys._xoptions.items()), sys.warnoptions,
                   sys.pycache_prefix, sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
    code = repr((interpreter, path, _folders(path), package, newest, count))
    return f"{code}\n{sorted(shared_facts(proc).items())!r}"  # the code, then the context


def _folders(path: list[str]) -> list[int]:
    """Each module folder's last change of entries (a distribution installed, upgraded or removed
    creates and deletes entries there: its package folder and its .dist-info)."""
    times = []
    for folder in path:
        try:
            times.append(os.stat(folder).st_mtime_ns)
        except OSError:
            times.append(0)
    return times


# Lines of /proc/PID/status a worker cannot take on: a served command must have them all as the
# helper has them (who we are, what we may do, what confines us).
SHARED_STATUS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs",
                 "Seccomp", "Seccomp_filters", "Mems_allowed")
# Single-line files of /proc/PID with the same rule ('' where the kernel has none to show).
SHARED_FILES = ("cgroup", "loginuid", "sessionid", "attr/current", "personality")


def shared_facts(proc: str = "/proc/self") -> dict[str, str]:
    """What a worker cannot take on, of the process ``proc`` (/proc/self or /proc/PID), as the
    kernel shows it: identity and capabilities, no-new-privs, seccomp, every namespace, cgroup,
    root directory, security label, audit session, personality and scheduling policy. The client
    names its helper by these; the helper serves only a peer whose facts equal its own."""
    facts = {}
    status = _read(proc + "/status")
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in SHARED_STATUS:
            facts[key] = value.strip()
    for name in SHARED_FILES:
        facts[name] = _read(f"{proc}/{name}")
    try:
        for name in sorted(os.listdir(proc + "/ns")):
            facts["ns/" + name] = _readlink(f"{proc}/ns/{name}")
    except OSError:
        facts["ns"] = ""
    facts["root"] = _readlink(proc + "/root")
    stat_fields = _read(proc + "/stat").rpartition(")")[2].split()
    # Fields 40 and 41 of stat (rt_priority, policy): after the command name, 38 and 39.
    facts["sched"] = " ".join(stat_fields[37:39])
    return facts


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def has_terminal(proc: str = "/proc/self") -> bool:
    """Whether the process has a controlling terminal (stat's tty_nr: field 7)."""
    fields = _read(proc + "/stat").rpartition(")")[2].split()
    return len(fields) < 5 or fields[4] != "0"


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
    """CODE-CONTEXT.sock: the helpers of one dockrun are those whose name starts with its CODE."""
    code, _, context = ident.partition("\n")
    return os.path.join(folder, f"{zlib.crc32(code.encode()):08x}-{zlib.crc32(context.encode()):08x}.sock")


def run_warm(argv: list[str]) -> tuple[int | None, str]:
    """Run ``argv`` in a warm helper's worker and return its exit code; None (and why) if it did
    not run there (then it must run here), having started a helper for the next command if none
    answered."""
    folder = runtime_dir()
    if folder is None or not sys.executable:
        return None, "no private runtime folder"
    if has_terminal():
        return None, "a controlling terminal"
    if "\nNoNewPrivs:\t1" in _read("/proc/self/status"):  # a sandbox's: no helper would serve it (peer.py)
        return None, "no-new-privs"
    extra = _extra_fds()
    if extra is None:
        return None, f"more than {MAX_EXTRA_FDS} open descriptors"
    if None in (sys.stdin, sys.stdout, sys.stderr):
        return None, "a standard stream is closed"
    modules = search_path()
    ident = identity(modules)
    path = socket_path(folder, ident)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
        # Ours, or nothing is sent: the folder was checked before, but not this very socket.
        uid = unpack("3i", sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12))[1]
    except OSError:
        sock.close()
        start_helper(path, modules)
        return None, "no helper yet (one was started)"
    try:
        if uid != os.geteuid():
            return None, f"the helper's socket belongs to uid {uid}"
        return _converse(sock, argv, (path, ident), extra)
    finally:
        sock.close()


def _extra_fds() -> list[int] | None:
    """This process's inheritable descriptors above 2 (a command can name one: `-P data=/dev/fd/5`);
    None if there are too many to pass."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    fds.append(fd)
            except OSError:  # listdir's own descriptor, closed by now
                pass
    return sorted(fds) if len(fds) <= MAX_EXTRA_FDS else None


def _converse(sock: _socket.socket, argv: list[str], where: tuple[str, str],
              extra: list[int]) -> tuple[int | None, str]:
    path, ident = where
    streams = [(s.encoding, s.errors, s.line_buffering, s.write_through)
               for s in (sys.stdin, sys.stdout, sys.stderr)]
    request = marshal.dumps({"identity": ident, "argv": argv, "env": dict(os.environ), "fds": extra,
                             "streams": streams})
    sock.settimeout(PID_TIMEOUT_S)
    fds = [0, 1, 2, *extra]
    try:
        sock.sendmsg([pack("!I", len(request)) + request],
                     [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, pack(f"{len(fds)}i", *fds))])
        lines = _Lines(sock)
        first = lines.next().split(None, 1)
    except OSError:  # a closed descriptor to pass, a helper that went away, or one too slow: run here
        return None, "the helper did not answer"
    if len(first) != 2 or first[0] != b"pid":
        # "stale": that helper has other code, or cannot take on what this command has (a higher
        # limit or priority than its own), and is leaving: start its successor. "refused": this
        # process is not what that helper serves; no helper of ours would serve it either.
        reason = b" ".join(first).decode("utf-8", "replace").strip() or "the helper hung up"
        if first[:1] == [b"stale"]:
            start_helper(path, search_path())
        return None, reason
    worker = int(first[1])
    forward = _Forwarder(worker)
    try:
        sock.settimeout(None)
        sock.sendall(b"go\n")  # from here on the worker runs the command: no more falling back
        while line := lines.next():
            word, _, value = line.strip().partition(b" ")
            if word == b"exit":
                return int(value), "served"
            if word == b"signal":  # killed by a signal: so are we, as the command would have been
                forward.restore()
                _die_by(int(value))
                return 128 + int(value), "served"
    except Exception:  # noqa: BLE001 - the command has run (or is running) there: never run it here too
        pass
    finally:
        forward.restore()
    sys.stderr.write("dockrun: error: the command's worker process ended without an exit code\n")
    return 1, "served"


def _die_by(signum: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        if signum not in (_signal.SIGKILL, _signal.SIGSTOP):  # (no handler, never blocked: the OOM killer's)
            _signal.signal(signum, _signal.SIG_DFL)
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
    except (OSError, ValueError):
        pass


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
    command does in-process (cancel the run, exit 130). An ignored SIGINT (a script's background
    job) stays ignored, as the worker's is; SIGTERM is always forwarded, as the CLI always
    handles it."""

    def __init__(self, pid: int):
        self.pid = pid
        signals = [_signal.SIGTERM]
        if _signal.getsignal(_signal.SIGINT) != _signal.SIG_IGN:
            signals.append(_signal.SIGINT)
        self.previous = {sig: _signal.signal(sig, self._forward) for sig in signals}

    def _forward(self, signum: int, frame: object) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            _signal.signal(sig, handler)
        self.previous = {}


def start_helper(path: str, modules: list[str]) -> None:
    """Start a helper for ``path`` in the background, detached (its own session, no terminal), for
    the next command; this one runs in-process meanwhile. Failing to start one changes nothing."""
    folder, name = os.path.split(path)
    if _live_helpers(folder, name.split("-")[0]) >= MAX_HELPERS:
        return  # contexts that come and go (`unshare -n` per command) must not pile up helpers
    import subprocess  # only on the way to an in-process run, which imports it anyway

    bootstrap = ("import marshal, sys; sys.path[:] = marshal.loads(bytes.fromhex(sys.argv[2])); "
                 "from dockrun.warmstart.server import main; main(sys.argv[1])")
    # The interpreter's own flags (-X utf8, -O, -W ...): they are part of the identity.
    flags = subprocess._args_from_interpreter_flags()
    env = {k: v for k, v in os.environ.items() if k.startswith(HELPER_ENV)}
    # Not os.posix_spawn: glibc's leaves its internal signals 32 and 33 ignored in the new program,
    # and every worker would inherit that.
    try:
        subprocess.Popen([sys.executable, *flags, "-c", bootstrap, path, marshal.dumps(modules).hex()], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                         start_new_session=True)
    except OSError:
        pass


def _live_helpers(folder: str, code: str) -> int:
    """Helpers of this code (their name starts with ``code``) holding their lock in ``folder`` (a
    killed helper's files do not count)."""
    import fcntl

    live = 0
    try:
        names = [n for n in os.listdir(folder) if n.startswith(code + "-") and n.endswith(".lock")]
    except OSError:
        return 0
    for name in names:
        try:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            live += 1
        finally:
            os.close(fd)
    return live
