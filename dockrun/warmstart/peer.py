"""What the helper knows of the process at the other end of a connection: only what the kernel says.

The client says nothing the helper relies on. Who connected comes with the connection itself: its
uid and gid (SO_PEERCRED), its groups (SO_PEERGROUPS) and a pidfd of the very process that called
connect() (SO_PEERPIDFD, Linux 6.5): no pid that could have been reused. Everything else is read
from /proc/<pid> and counts only if that pidfd still shows the process alive after the reading
(while it lives, no other process can have its pid). A kernel without SO_PEERPIDFD is not served.

``judge`` then compares with the helper's own facts: what a worker cannot take on must be equal
(``client.shared_facts``: identity, capabilities, confinement, namespaces, cgroup, ...); what it can
take on is handed to the worker (``Peer``), unless it would have to rise above the helper's own
(a higher limit or priority), which only a new helper, started by such a command, can have.
"""
from __future__ import annotations

import os
import resource
import select
import socket
import struct
from dataclasses import dataclass

from .client import has_terminal, shared_facts

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)
CAP_SYS_NICE, CAP_SYS_RESOURCE = 23, 24
# Limits on a process's memory (ulimit -v, -d): a worker's memory is the helper's (every module it
# preloaded, the pages it had) plus the command's, so under such a limit a worker fails where the
# command itself would not, or the other way round.
MEMORY_LIMITS = tuple(getattr(resource, name) for name in ("RLIMIT_AS", "RLIMIT_DATA") if hasattr(resource, name))
# ioprio_set and ioprio_get, which Python does not wrap: (set, get) by machine. Elsewhere the I/O
# priority (`ionice`) is not carried.
IOPRIO_SYSCALLS = {"x86_64": (251, 252), "aarch64": (30, 31)}
IOPRIO_WHO_PROCESS = 1
LIMITS = tuple(getattr(resource, name) for name in (
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC",
    "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME") if hasattr(resource, name))


class Refused(Exception):
    """This peer is not served (the message says which fact); ``stale``: not by this helper, but a
    new one started by such a command would serve it."""

    def __init__(self, reason: str, stale: bool = False):
        super().__init__(reason)
        self.stale = stale


@dataclass(frozen=True)
class Peer:
    """A verified client: what its worker takes on, all read from the kernel."""

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...]
    shared: tuple[tuple[str, str], ...]
    terminal: bool
    umask: int
    ignored: frozenset[int]  # signals whose disposition is SIG_IGN
    blocked: frozenset[int]
    limits: tuple[tuple[int, int, int], ...]  # (resource, soft, hard)
    nice: int
    cpus: frozenset[int]
    oom_score_adj: int
    ioprio: int | None  # None where it cannot be read
    cwd: int  # an O_PATH descriptor of its working directory, opened while it was alive


@dataclass(frozen=True)
class Own:
    """The helper's own facts, read once at its start."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    shared: tuple[tuple[str, str], ...]
    limits: dict[int, tuple[int, int]]
    nice: int
    oom_score_adj: int
    caps: int

    @classmethod
    def read(cls) -> Own:
        return cls(os.geteuid(), os.getegid(), tuple(sorted(set(os.getgroups()))),
                   tuple(sorted(shared_facts("/proc/self").items())),
                   {r: resource.getrlimit(r) for r in LIMITS}, os.getpriority(os.PRIO_PROCESS, 0),
                   int(_read("/proc/self/oom_score_adj") or 0), int(_status("/proc/self").get("CapEff", "0"), 16))


def read_peer(conn: socket.socket) -> Peer:
    """The facts of the process that connected ``conn``; Refused if they cannot all be known."""
    _, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)
        pidfd = conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError as e:
        raise Refused(f"the kernel does not tell who is calling ({e.strerror})") from None
    groups = tuple(sorted(set(struct.unpack(f"{len(raw) // 4}I", raw[:len(raw) // 4 * 4]))))
    cwd = -1
    try:
        pid = _pidfd_pid(pidfd)
        if pid <= 0:
            raise Refused("the caller is gone or in another pid namespace")
        proc = f"/proc/{pid}"
        status = _status(proc)
        shared = tuple(sorted(shared_facts(proc).items()))
        cwd = os.open(proc + "/cwd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        peer = Peer(pid, uid, gid, groups, shared, has_terminal(proc), int(status["Umask"], 8),
                    _signals(status["SigIgn"]), _signals(status["SigBlk"]),
                    tuple((r, *resource.prlimit(pid, r)) for r in LIMITS), os.getpriority(os.PRIO_PROCESS, pid),
                    frozenset(os.sched_getaffinity(pid)), int(_read(proc + "/oom_score_adj")), ioprio(pid), cwd)
        if select.select([pidfd], [], [], 0)[0]:  # it exited while we read: those were maybe another's
            raise Refused("the caller exited")
        return peer
    except (OSError, KeyError, ValueError) as e:
        if cwd >= 0:
            os.close(cwd)
        raise Refused(f"cannot read the caller's state ({e})") from None
    except Refused:
        if cwd >= 0:
            os.close(cwd)
        raise
    finally:
        os.close(pidfd)


def judge(peer: Peer, own: Own) -> None:
    """Raise Refused unless a worker of this helper can be exactly ``peer``'s command."""
    if (peer.uid, peer.gid) != (own.uid, own.gid):
        raise Refused("another user or group")
    if peer.groups != own.groups:
        raise Refused("other supplementary groups")
    if peer.terminal:
        raise Refused("a controlling terminal (a worker cannot have it)")
    if dict(peer.shared).get("NoNewPrivs", "0") != "0":
        # What a sandbox confines itself with (Landlock rules, seccomp filters' contents) is not
        # shown in /proc: two sandboxes with no-new-privs look alike, and a worker of one would be
        # the other's way out.
        raise Refused("NoNewPrivs: a sandbox's Landlock rules and seccomp filters cannot be seen")
    theirs, mine = dict(peer.shared), dict(own.shared)
    for key in sorted(set(theirs) | set(mine)):
        if theirs.get(key) != mine.get(key):
            raise Refused(f"another {key}")
    for which, soft, _ in peer.limits:
        if which in MEMORY_LIMITS and soft != resource.RLIM_INFINITY:
            raise Refused(f"a memory limit (resource {which}): a worker's memory is not the command's")
    # What a worker takes on by lowering is always possible; rising above the helper needs a helper
    # started from such a command.
    for which, _, hard in peer.limits:
        mine_hard = own.limits[which][1]
        if not _within(hard, mine_hard) and not own.caps & (1 << CAP_SYS_RESOURCE):
            raise Refused(f"a higher hard limit (resource {which})", stale=True)
    if peer.nice < own.nice and not own.caps & (1 << CAP_SYS_NICE):
        raise Refused("a higher priority (nice)", stale=True)
    if peer.oom_score_adj < own.oom_score_adj and not own.caps & (1 << CAP_SYS_RESOURCE):
        raise Refused("a lower oom_score_adj", stale=True)


def ioprio(pid: int) -> int | None:
    """The I/O priority of ``pid`` (0: this process); None where it cannot be read."""
    numbers = IOPRIO_SYSCALLS.get(os.uname().machine)
    if numbers is None:
        return None
    import ctypes  # preloaded by the helper

    value = ctypes.CDLL(None, use_errno=True).syscall(numbers[1], IOPRIO_WHO_PROCESS, pid)
    return None if value < 0 else value


def set_ioprio(value: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(IOPRIO_SYSCALLS[os.uname().machine][0], IOPRIO_WHO_PROCESS, 0, value) < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def _within(value: int, limit: int) -> bool:
    if limit == resource.RLIM_INFINITY:
        return True
    return value != resource.RLIM_INFINITY and value <= limit


def _pidfd_pid(pidfd: int) -> int:
    for line in _read(f"/proc/self/fdinfo/{pidfd}").splitlines():
        if line.startswith("Pid:"):
            return int(line.split()[1])
    return -1


def _status(proc: str) -> dict[str, str]:
    fields = {}
    for line in _read(proc + "/status").splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _signals(mask: str) -> frozenset[int]:
    bits = int(mask, 16)
    return frozenset(sig for sig in range(1, 65) if bits & (1 << (sig - 1)))


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")
