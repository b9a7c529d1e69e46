"""Git project sources: a clone cache of bare mirrors and one exported tree per commit.

Layout under ``$DOCKRUN_HOME/git``::

    mirrors/<urlkey>/     bare mirror of one remote (branches, tags), updated with ``git fetch``
    trees/<commit>/       the files of one commit, submodules included, no ``.git`` anywhere
    locks/<urlkey>.lock   fcntl lock: one process at a time works on a mirror
    askpass.sh            prints credentials from its own environment; holds no secret

``urlkey`` is the first 24 hex digits of SHA-256 over the credential-free URL. Mirrors and trees
appear only by ``os.rename`` of a complete ``.tmp-<urlkey>-*`` sibling, so a reader never sees a
half-written entry, and a failure (or Ctrl-C) removes the temporary directory.

Git is run as a subprocess rather than through GitPython: secrets must go only into the child's
environment and git's stderr must be turned into one safe line, and both are simplest with the
plain command (which also spares the slow GitPython import).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from ..errors import SourceError
from ..locks import make_private_dir
from .source import Source, clean_subdirectory
from .worktree import base_env

# scheme://userinfo@ ; the userinfo runs to the last "@" before the path (passwords may hold "@").
_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/?#]*)@", re.IGNORECASE)
# scp-like user:password@host:path (a bare user name, as in git@host:, is no secret).
_SCP_PASSWORD = re.compile(r"^[^/@:]+:[^/@]*@")
_URL_USERINFO_ANYWHERE = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@", re.IGNORECASE)
_HEX = re.compile(r"[0-9a-f]{4,64}", re.IGNORECASE)
_FULL_SHA_LENGTHS = (40, 64)  # SHA-1 and SHA-256 object names
_HTTP_SCHEMES = ("http://", "https://")
# The transports a project URI may name (after ``git+``); anything else (``ext::``, ``fd::``, a
# remote helper ``name::address``) would run a program of the URI's choosing.
_URL_SCHEMES = ("https", "http", "ssh", "git", "file", "git+ssh", "ssh+git")
# scp-like [user@]host:path (no "/" before the colon, else it is a local path).
_SCP = re.compile(r"^(?:(?P<user>[^@/]*)@)?(?P<host>[^:/]+):(?P<path>.*)$", re.S)
log = logging.getLogger("dockrun")

_ASKPASS = """#!/bin/sh
# Written by dockrun. Git runs this to ask for credentials; dockrun passes the values only in the
# environment of the git process it starts, so no secret is ever stored here. Git asks for every
# host that answers 401 (a submodule elsewhere, a redirect): answer only for the project's own.
url=${1#*\\'}
url=${url%\\'*}
scheme=${url%%://*}
rest=${url#*://}
rest=${rest##*@}
[ "$scheme://$rest" = "$DOCKRUN_GIT_ASKPASS_ORIGIN" ] || exit 1
case "$1" in
  Username*) printf '%s\\n' "$DOCKRUN_GIT_ASKPASS_USERNAME" ;;
  *) printf '%s\\n' "$DOCKRUN_GIT_ASKPASS_PASSWORD" ;;
esac
"""

# (substrings of git's stderr, lower-cased) -> the short reason shown to the user. First match wins.
_DIAGNOSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("transport 'file' not allowed",),
     "a submodule has a local (file://) URL, which git refuses by default; serve it over https or ssh, "
     "or allow it in your git config (protocol.file.allow=always)"),
    (("fatal: transport '",), "a submodule uses a transport that git does not allow (protocol.<name>.allow)"),
    (("authentication failed", "could not read username", "could not read password",
      "terminal prompts disabled", "access denied", "returned error: 401", "returned error: 403",
      "invalid username or password", "invalid credentials"), "authentication failed"),
    (("permission denied (publickey", "permission denied, please try again"),
     "ssh authentication failed (check your SSH key or agent)"),
    (("host key verification failed",), "ssh host key verification failed"),
    (("ssl certificate problem", "server certificate verification failed", "certificate verify failed"),
     "TLS certificate verification failed (see GIT_SSL_CAINFO / SSL_CERT_FILE)"),
    (("could not resolve host", "could not resolve hostname", "name or service not known",
      "temporary failure in name resolution"), "cannot resolve the host"),
    (("failed to connect", "couldn't connect", "connection refused", "connection timed out",
      "operation timed out", "network is unreachable", "no route to host", "connection reset",
      "empty reply from server"), "cannot reach the host"),
    (("repository not found", "does not appear to be a git repository", "returned error: 404",
      "' not found"), "repository not found"),
    (("transfer closed with", "early eof", "unexpected disconnect", "rpc failed"),
     "the connection dropped during the transfer (nothing was kept; try again)"),
    (("returned error: 5",), "the server answered with an error (5xx); try again later"),
)


def dockrun_home() -> Path:
    """The state directory; delegated to the settings module so runs and the clone cache agree."""
    from ..config import default_home

    return default_home(os.environ)


def redact(uri: str) -> str:
    """The URI as it may be shown, logged or stored: HTTP(S) userinfo (a password or a token used
    as user name) becomes ``***``; an SSH user name (``git@host:``) is kept, it is no secret."""
    m = _USERINFO.match(uri)
    if m:
        is_http = m["scheme"].lower().removeprefix("git+") in _HTTP_SCHEMES
        if is_http or ":" in m["userinfo"]:
            return m["scheme"] + "***@" + _redact_query(uri[m.end():])
        return _redact_query(uri)
    if "://" not in uri and _SCP_PASSWORD.match(uri):
        return "***@" + uri.split("@", 1)[1]
    return _redact_query(uri)


def _redact_query(uri: str) -> str:
    base, q, rest = uri.partition("?")
    if not q:
        return uri
    query, hashmark, fragment = rest.partition("#")
    return base + "?***" + hashmark + fragment


def resolve_git(uri: str, version: str | None, home: Path | None) -> Source:
    """Check out ``uri`` at ``version`` (commit, branch, tag; None: the remote's default branch)
    through the clone cache. A full commit SHA that is already cached never touches the network."""
    remote, sub = _parse_uri(uri)
    version = _clean_version(version, remote)
    cache = _Cache.at(home or dockrun_home())
    tree = _cached_tree(cache, version)
    if tree is None:
        cache.make_dirs()
        git = _Git.for_remote(remote, cache)
        with _locked(cache, remote.key):
            _sweep(cache, remote.key)
            commit = _resolve_commit(git, cache, version)
            tree = _ensure_tree(git, cache, commit)
            if not _is_full_sha(version):
                _remember_resolved(cache, remote, version, commit)
    return _source(uri, remote, tree, sub)


# --- URIs and credentials -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Remote:
    display: str  # the user's URI without #subdirectory, redacted: the only form shown or stored
    url: str  # what git is given: never holds credentials
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()[:24]

    @property
    def has_credentials(self) -> bool:
        return bool(self.username or self.password)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.username, self.password) if s)


def _parse_uri(uri: str) -> tuple[_Remote, str]:
    base, _, sub = uri.partition("#")
    display = redact(base)
    if not base or base.startswith("-"):
        raise SourceError(f"{display or uri!r}: not a Git URI")
    sub = clean_subdirectory(sub, display)
    url = base[4:] if base.lower().startswith("git+") else base
    _check_url(url, display)
    if "?" in url:  # a token in the query would sit in argv and in the mirror's config
        raise SourceError(f"{display}: a query string in a Git URI is not supported; give a token as "
                          "DOCKRUN_GIT_PASSWORD (or MLFLOW_GIT_PASSWORD) instead")
    if "://" not in url and _SCP_PASSWORD.match(url):
        raise SourceError(f"{display}: a password in an scp-like URI is not supported; use an SSH key or agent")
    if not url.lower().startswith(_HTTP_SCHEMES):
        m = _USERINFO.match(url)
        if m and ":" in m["userinfo"]:
            raise SourceError(f"{display}: a password in a {m['scheme']} URI is not supported; "
                              "use an SSH key or agent")
        return _Remote(display, url), sub  # ssh and friends: the user's agent and keys do the work
    user = password = None
    m = _USERINFO.match(url)
    if m:  # credentials in the URI leave the URL and travel like the environment's
        name, colon, secret = m["userinfo"].partition(":")
        user, password = unquote(name) or None, unquote(secret) if colon else None
        url = m["scheme"] + url[m.end():]
    # The URI's user wins; its password, else the environment's, goes with it.
    return _Remote(display, url, user or _env_credential("USERNAME"),
                   password if password is not None else _env_credential("PASSWORD")), sub


def _check_url(url: str, display: str) -> None:
    """Refuse what git would read as an option or as a program to run, after every rewrite of the
    URI: a leading dash in the URL, its user or host (ssh would take them as options), a transport
    other than those dockrun supports, control characters."""
    def bad(why: str) -> SourceError:
        return SourceError(f"{display!r}: not a Git URI ({why})")

    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise bad("control characters")
    if not url or url.startswith("-"):
        raise bad("it must not start with '-'")
    scheme, sep, rest = url.partition("://")
    if sep:
        if scheme.lower() not in _URL_SCHEMES:
            raise bad(f"expected one of {', '.join(s + '://' for s in _URL_SCHEMES)}")
        user, _, host = rest.split("/", 1)[0].rpartition("@")
        port = host.rpartition(":")[2] if ":" in host.rpartition("]")[2] else ""  # [::1]:22
        parts = {"user": user, "host": host, "port": port}
    elif "::" in url:  # transport::address: git runs git-remote-<transport>
        raise bad("a transport::address URL runs a program; give an https, ssh, git or file URL")
    else:
        m = _SCP.match(url)
        parts = {k: m[k] or "" for k in ("user", "host", "path")} if m else {}
    for part, value in parts.items():
        if value.startswith("-"):
            raise bad(f"its {part} must not start with '-'")


def _origin(url: str) -> str:
    """scheme://host[:port], as git names the server when it asks for credentials."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest.split('/', 1)[0].rsplit('@', 1)[-1]}"


def _env_credential(kind: str) -> str | None:
    # MLflow's variables too, so an `mlflow run` user's setup works unchanged.
    return os.environ.get(f"DOCKRUN_GIT_{kind}") or os.environ.get(f"MLFLOW_GIT_{kind}") or None


def _clean_version(version: str | None, remote: _Remote) -> str | None:
    version = (version or "").strip()
    if not version or version == "HEAD":
        return None
    # Versions reach git's command line as ref patterns: nothing may look like an option.
    if version.startswith("-") or any(c.isspace() or ord(c) < 32 for c in version):
        raise SourceError(f"{remote.display}: {version!r} is not a valid branch, tag or commit")
    # A full SHA names its tree directory; shorter hex may be a branch name, so it keeps its case.
    return version.lower() if _is_full_sha(version) else version


# --- running git ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Git:
    """git for one remote: credentials only in the child's environment, errors as one safe line."""

    remote: _Remote
    env: dict[str, str] = field(repr=False)
    config: tuple[str, ...] = ()

    @classmethod
    def for_remote(cls, remote: _Remote, cache: _Cache) -> _Git:
        env = base_env()
        env.pop("GIT_PROTOCOL_FROM_USER", None)  # git's own default: file:// submodules refused
        # Known-dangerous transports stay off whatever the user's config says (git: never by default).
        config: tuple[str, ...] = ("-c", "protocol.ext.allow=never", "-c", "protocol.fd.allow=never")
        if remote.has_credentials:
            env.update(GIT_ASKPASS=str(_askpass(cache)),
                       DOCKRUN_GIT_ASKPASS_ORIGIN=_origin(remote.url),
                       DOCKRUN_GIT_ASKPASS_USERNAME=remote.username or "",
                       DOCKRUN_GIT_ASKPASS_PASSWORD=remote.password or "")
            # No credential helper: it could override our values or store them on disk.
            config += ("-c", "credential.helper=")
        return cls(remote, env, config)

    def probe(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(["git", *self.config, *args], cwd=cwd, env=self.env,
                                  stdin=subprocess.DEVNULL, capture_output=True)
        except FileNotFoundError:
            raise SourceError(f"{self.remote.display}: git is not installed (needed for Git URIs)") from None

    def run(self, *args: str, cwd: Path | None = None, doing: str = "") -> str:
        proc = self.probe(*args, cwd=cwd)
        if proc.returncode != 0:
            reason = _diagnose(proc.stderr.decode("utf-8", "replace"), self.remote)
            raise SourceError(f"{self.remote.display}: {doing + ': ' if doing else ''}{reason}")
        return proc.stdout.decode("utf-8", "replace")


def _diagnose(stderr: str, remote: _Remote) -> str:
    low = stderr.lower()
    for needles, reason in _DIAGNOSES:
        if any(n in low for n in needles):
            if reason == "authentication failed" and not remote.has_credentials:
                return reason + " (no credentials given: set DOCKRUN_GIT_USERNAME and DOCKRUN_GIT_PASSWORD)"
            return reason
    return "git failed: " + _safe_line(stderr, remote)


def _safe_line(stderr: str, remote: _Remote) -> str:
    """git's own first error line, without anything that could be a secret, cut short."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    # The first fatal line says what went wrong; later ones are generic advice.
    first_fatal = (ln for ln in lines if ln.startswith(("fatal:", "error:")))
    line = next(first_fatal, lines[-1] if lines else "no message")
    line = _URL_USERINFO_ANYWHERE.sub(r"\1***@", line.removeprefix("fatal: ").removeprefix("error: "))
    for secret in remote.secrets:
        line = line.replace(secret, "***")
    return line[:200]


def _askpass(cache: _Cache) -> Path:
    """The askpass script, written once (atomically, mode 0700); it holds no secret."""
    path = cache.root / "askpass.sh"
    if path.is_file() and path.read_text() == _ASKPASS and os.access(path, os.X_OK):
        return path
    cache.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".askpass-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "w") as f:
        f.write(_ASKPASS)
    os.rename(tmp, path)
    return path


# --- the cache ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Cache:
    root: Path  # $DOCKRUN_HOME/git, absolute: git would read "a:b/..." as an ssh host

    @classmethod
    def at(cls, home: Path) -> _Cache:
        return cls(Path(home).expanduser().absolute() / "git")

    def mirror(self, key: str) -> Path:
        return self.root / "mirrors" / key

    def tree(self, commit: str) -> Path:
        return self.root / "trees" / commit

    def make_dirs(self) -> None:
        # Mirrors may hold private code: only the user may read the cache.
        make_private_dir(self.root.parent)  # DOCKRUN_HOME itself, when the clone cache comes first
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("mirrors", "trees", "locks"):
            (self.root / sub).mkdir(exist_ok=True)


def _temp_next_to(final: Path, key: str) -> Path:
    return final.parent / f".tmp-{key}-{secrets.token_hex(6)}"


@contextmanager
def _locked(cache: _Cache, key: str) -> Iterator[None]:
    # Closing the file releases the lock, also when the process dies.
    with open(cache.root / "locks" / f"{key}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _sweep(cache: _Cache, key: str) -> None:
    """Remove temp dirs of a process that died mid-way; called under the lock for ``key``, so
    no living process owns them."""
    for folder in (cache.root / "mirrors", cache.root / "trees"):
        for stale in folder.glob(f".tmp-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def _building(tmp: Path) -> Iterator[Path]:
    """Yield a temp dir that vanishes on any failure, Ctrl-C included."""
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, final: Path) -> None:
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
        # Another process (via another mirror of the same commit) was first; its tree is the same.
        shutil.rmtree(tmp, ignore_errors=True)


def _cached_tree(cache: _Cache, version: str | None) -> Path | None:
    if _is_full_sha(version):
        tree = cache.tree(version or "")
        return tree if tree.is_dir() else None
    return None


# --- versions -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _RemoteRefs:
    refs: dict[str, str]  # ref name -> commit (annotated tags already peeled)

    @classmethod
    def parse(cls, out: str) -> _RemoteRefs:
        refs: dict[str, str] = {}
        peeled: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if line.startswith("ref: ") or not name:
                continue  # --symref's "ref: refs/heads/main<TAB>HEAD"
            if name.endswith("^{}"):
                peeled[name[:-3]] = sha
            else:
                refs[name] = sha
        return cls({**refs, **peeled})

    def find(self, version: str | None) -> tuple[str, str] | None:
        """(ref, commit); a branch wins over a tag of the same name, as with ``git checkout``."""
        names = ["HEAD"] if version is None else [f"refs/heads/{version}", f"refs/tags/{version}", version]
        return next(((n, self.refs[n]) for n in names if n in self.refs), None)


def _resolve_commit(git: _Git, cache: _Cache, version: str | None) -> str:
    mirror = cache.mirror(git.remote.key)
    display = git.remote.display
    if _is_full_sha(version):
        return _ensure_commit(git, cache, version, version)
    short_sha = bool(version and _HEX.fullmatch(version))
    if short_sha and mirror.is_dir():
        found = _commit_in(git, mirror, version or "")
        if found:
            return found
    # Patterns let the server list only these refs; "^{}" asks for an annotated tag's commit.
    patterns = ["HEAD"] if version is None else [
        f"refs/heads/{version}", f"refs/tags/{version}", f"refs/tags/{version}^{{}}"]
    if version and version.startswith("refs/"):
        patterns.append(version)
    proc = git.probe("ls-remote", "--symref", "--end-of-options", git.remote.url, *patterns, cwd=cache.root)
    if proc.returncode != 0:
        reason = _diagnose(proc.stderr.decode("utf-8", "replace"), git.remote)
        last = _last_resolved(cache, git.remote, version)
        # Whatever the reason (offline, moved, gone, credentials no longer valid), a name resolved
        # before still names the commit it ran, as a pinned commit runs from the cache.
        if last and cache.tree(last).is_dir():
            log.warning("%s: %s; using commit %s, which %s named when last reached", display, reason,
                        last[:12], version or "the default branch")
            return last
        raise SourceError(f"{display}: {reason}")
    hit = _RemoteRefs.parse(proc.stdout.decode("utf-8", "replace")).find(version)
    if hit:
        ref, commit = hit
        return _ensure_commit(git, cache, commit, version, ref)
    if version is None:
        raise SourceError(f"{display}: the repository has no default branch (is it empty?)")
    if short_sha:
        _update_mirror(git, cache)
        found = _commit_in(git, mirror, version)
        if found:
            return found
    raise SourceError(f"{display}: no branch, tag or commit named {version!r}")


def _resolved_file(cache: _Cache, remote: _Remote, version: str | None) -> Path:
    name = hashlib.sha256(f"{remote.key}\0{version or 'HEAD'}".encode()).hexdigest()[:32]
    return cache.root / "resolved" / name


def _last_resolved(cache: _Cache, remote: _Remote, version: str | None) -> str | None:
    try:
        commit = _resolved_file(cache, remote, version).read_text().strip()
    except OSError:
        return None
    return commit if _is_full_sha(commit) else None


def _remember_resolved(cache: _Cache, remote: _Remote, version: str | None, commit: str) -> None:
    """What a branch or tag named when the remote was last reached: the offline fallback."""
    path = _resolved_file(cache, remote, version)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}-{secrets.token_hex(4)}")
    tmp.write_text(commit + "\n")
    os.replace(tmp, path)


def _is_full_sha(version: str | None) -> bool:
    return bool(version and len(version) in _FULL_SHA_LENGTHS and _HEX.fullmatch(version))


def _commit_in(git: _Git, mirror: Path, sha: str) -> str | None:
    """The commit that ``sha`` (full or unique prefix) names, a tag object peeled, if the mirror has it."""
    if not mirror.is_dir():
        return None
    proc = git.probe("rev-parse", "--verify", "--quiet", "--end-of-options", f"{sha}^{{commit}}", cwd=mirror)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def _ensure_commit(git: _Git, cache: _Cache, sha: str, version: str | None, ref: str | None = None) -> str:
    """Make sure the mirror has ``sha``: fetch only if it is missing."""
    mirror = cache.mirror(git.remote.key)
    found = _commit_in(git, mirror, sha)
    if found:
        return found
    _update_mirror(git, cache)
    found = _commit_in(git, mirror, sha)
    if found:
        return found
    # Not on a branch or tag (e.g. refs/pull/*, or a commit only some servers hand out by SHA):
    # ask for it by name; a keep-ref stops gc from dropping it again.
    git.probe("fetch", "--quiet", "--end-of-options", "origin", f"+{ref or sha}:refs/dockrun/{sha}", cwd=mirror)
    found = _commit_in(git, mirror, sha)
    if found:
        return found
    if version is None:
        raise SourceError(f"{git.remote.display}: cannot fetch the default branch's commit {sha[:12]}")
    raise SourceError(f"{git.remote.display}: no branch, tag or commit named {version!r}")


def _update_mirror(git: _Git, cache: _Cache) -> None:
    """Fetch new branches and tags into the mirror, making it first if there is none."""
    mirror = cache.mirror(git.remote.key)
    if mirror.is_dir():
        git.run("fetch", "--quiet", "--prune", "origin", cwd=mirror, doing="fetch failed")
        return
    with _building(_temp_next_to(mirror, git.remote.key)) as tmp:
        git.run("init", "--quiet", "--bare", "--end-of-options", str(tmp))
        for key, value in (("remote.origin.url", git.remote.url),
                           ("remote.origin.fetch", "+refs/heads/*:refs/heads/*"),
                           ("remote.origin.fetch", "+refs/tags/*:refs/tags/*"),
                           ("gc.autoDetach", "false")):  # no gc outliving our lock
            git.run("config", "--add", "--end-of-options", key, value, cwd=tmp)
        git.run("fetch", "--quiet", "origin", cwd=tmp, doing="clone failed")
        _publish(tmp, mirror)


# --- trees ----------------------------------------------------------------------------------------

def _ensure_tree(git: _Git, cache: _Cache, commit: str) -> Path:
    final = cache.tree(commit)
    if final.is_dir():
        return final
    with _building(_temp_next_to(final, git.remote.key)) as tmp:
        git.run("clone", "--quiet", "--shared", "--no-checkout", "--", str(cache.mirror(git.remote.key)), str(tmp))
        if not _is_full_sha(commit):  # it reaches checkout's argv: an object name and nothing else
            raise SourceError(f"{git.remote.display}: git named no commit ({commit[:40]!r})")
        git.run("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit, cwd=tmp)
        if (tmp / ".gitmodules").is_file():
            _checkout_submodules(git, tmp, commit)
        _strip_git_metadata(tmp)
        _publish(tmp, final)
    return final


def _checkout_submodules(git: _Git, tree: Path, commit: str) -> None:
    # Relative submodule URLs ("../lib.git") resolve against origin: make it the real remote.
    git.run("remote", "set-url", "--end-of-options", "origin", git.remote.url, cwd=tree)
    # As plain git: a submodule's file:// (or local path) URL is refused unless the user's git
    # config allows it (protocol.file.allow), whatever the project's own remote is; a repository
    # someone else wrote must not copy the user's other local repositories into the image.
    git.run("submodule", "update", "--init", "--recursive", "--quiet", cwd=tree,
            doing=f"submodules of commit {commit[:12]} failed")


def _strip_git_metadata(tree: Path) -> None:
    """A tree is plain files: no .git (and so no remote URL) in it or its submodules."""
    for dirpath, dirnames, filenames in os.walk(tree):
        if ".git" in dirnames:
            dirnames.remove(".git")
            shutil.rmtree(os.path.join(dirpath, ".git"))
        if ".git" in filenames:  # a submodule's "gitdir: ..." pointer file
            os.remove(os.path.join(dirpath, ".git"))


def _source(uri: str, remote: _Remote, tree: Path, sub: str) -> Source:
    commit = tree.name
    root = tree / sub if sub else tree
    # A symlink in the commit could point the subdirectory outside the tree.
    if not root.is_dir() or not root.resolve().is_relative_to(tree.resolve()):
        raise SourceError(f"{remote.display}: subdirectory {sub!r} does not exist in commit {commit[:12]}")
    key = hashlib.sha256(f"git:{commit}:{sub}".encode()).hexdigest()
    return Source(uri=redact(uri), root=root, key=key, commit=commit, dirty=False, subdirectory=sub)
