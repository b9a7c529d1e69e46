"""Git URIs: resolution, the clone cache, credentials, and local work-tree info (real git, no mocks)."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dockrun.errors import SourceError
from dockrun.project.git import dockrun_home, redact, resolve_git
from dockrun.project.resolve import resolve_source
from dockrun.project.worktree import local_git_info
from git_fixtures import *  # noqa: F403  (the fixtures git_home, project_remote, git_http_server)
from git_fixtures import (
    GitHttpServer,
    RemoteRepo,
    add_submodule,
    commit,
    fake_ssh,
    files_containing,
    free_port,
    git,
    new_remote,
    serve_remote,
    temp_leftovers,
)

REPO = Path(__file__).resolve().parent.parent
PLAIN = {"MLproject": "name: plain\nentry_points:\n  main:\n    command: echo hi\n", "code.py": "v = 1\n"}


def key_of(commit_sha: str, sub: str = "") -> str:
    return hashlib.sha256(f"git:{commit_sha}:{sub}".encode()).hexdigest()


def has_git_metadata(root: Path) -> bool:
    return any(".git" in dirs + files for _, dirs, files in os.walk(root))


# --- file:// remotes: versions -------------------------------------------------------------------

def test_default_branch_is_the_remotes_head(project_remote: RemoteRepo, git_home: Path) -> None:
    src = resolve_git(project_remote.url, None, git_home)
    sha = project_remote.commits["second"]
    assert (src.commit, src.dirty, src.subdirectory, src.uri) == (sha, False, "", project_remote.url)
    assert src.key == key_of(sha)
    assert src.root == git_home / "git" / "trees" / sha
    assert (src.root / "train.py").read_text() == "print('second')\n"


@pytest.mark.parametrize("version, label", [
    ("feature", "feature"), ("main", "second"), ("v1", "first"), ("light", "first"),
    ("refs/heads/feature", "feature"), ("HEAD", "second"),
])
def test_branch_or_tag(project_remote: RemoteRepo, git_home: Path, version: str, label: str) -> None:
    src = resolve_git(project_remote.url, version, git_home)
    assert src.commit == project_remote.commits[label]


def test_full_and_short_sha(project_remote: RemoteRepo, git_home: Path) -> None:
    first = project_remote.commits["first"]
    # Short SHA with no mirror yet: not found locally, so fetch, then retry.
    assert resolve_git(project_remote.url, first[:7], git_home).commit == first
    assert resolve_git(project_remote.url, first.upper(), git_home).commit == first
    feature = project_remote.commits["feature"]
    assert resolve_git(project_remote.url, feature[:10], git_home).commit == feature  # now local
    assert resolve_git(project_remote.url, feature[:9].upper(), git_home).commit == feature


def test_unknown_version(project_remote: RemoteRepo, git_home: Path) -> None:
    for version in ("v9", "0" * 40, "abcdef1"):
        with pytest.raises(SourceError) as e:
            resolve_git(project_remote.url, version, git_home)
        assert str(e.value) == f"{project_remote.url}: no branch, tag or commit named '{version}'"
    assert temp_leftovers(git_home) == []


def test_option_like_version_is_rejected(project_remote: RemoteRepo, git_home: Path) -> None:
    with pytest.raises(SourceError, match="not a valid branch, tag or commit"):
        resolve_git(project_remote.url, "--upload-pack=touch /tmp/x", git_home)


# --- subdirectories and submodules ---------------------------------------------------------------

def test_subdirectory(project_remote: RemoteRepo, git_home: Path) -> None:
    src = resolve_git(project_remote.url + "#sub/", "v1", git_home)
    sha = project_remote.commits["first"]
    assert (src.root, src.subdirectory) == (git_home / "git" / "trees" / sha / "sub", "sub")
    assert src.key == key_of(sha, "sub") != key_of(sha)
    assert src.uri == project_remote.url + "#sub/"
    assert (src.root / "run.py").is_file()


def test_missing_subdirectory(project_remote: RemoteRepo, git_home: Path) -> None:
    with pytest.raises(SourceError) as e:
        resolve_git(project_remote.url + "#nope", None, git_home)
    message = str(e.value)
    assert message.startswith(project_remote.url + ":") and "'nope' does not exist" in message


@pytest.mark.parametrize("sub", ["../x", "a/../../x", "/etc"])
def test_subdirectory_escaping_the_repo_is_rejected(project_remote: RemoteRepo, git_home: Path,
                                                     sub: str) -> None:
    with pytest.raises(SourceError, match=r"must be a relative path without '\.\.'"):
        resolve_git(f"{project_remote.url}#{sub}", None, git_home)
    assert not (git_home / "git").exists()  # rejected before any git work


def test_submodules_are_checked_out_recursively(project_remote: RemoteRepo, git_home: Path) -> None:
    src = resolve_git(project_remote.url, "main", git_home)
    assert (src.root / "lib" / "lib.txt").read_text() == "lib\n"
    assert (src.root / "lib" / "inner" / "inner.txt").read_text() == "inner\n"
    assert not has_git_metadata(src.root)  # plain files: no .git dir, no submodule gitfiles


def test_broken_submodule_leaves_no_tree(tmp_path: Path, git_home: Path) -> None:
    gone = new_remote(tmp_path, "gone", {"x": "x\n"})
    proj = new_remote(tmp_path, "broken", PLAIN)
    sha = add_submodule(proj, gone.url, "dep", "with-dep")
    shutil.rmtree(gone.bare)
    with pytest.raises(SourceError, match=f"submodules of commit {sha[:12]} failed"):
        resolve_git(proj.url, None, git_home)
    assert not (git_home / "git" / "trees" / sha).exists()
    assert temp_leftovers(git_home) == []


# --- the cache -----------------------------------------------------------------------------------

def test_cache_layout_and_reuse(project_remote: RemoteRepo, git_home: Path) -> None:
    a = resolve_git(project_remote.url, "feature", git_home)
    b = resolve_git(project_remote.url, project_remote.commits["feature"], git_home)
    assert a == b
    cache = git_home / "git"
    mirrors = list((cache / "mirrors").iterdir())
    assert [m.name for m in mirrors] == [hashlib.sha256(project_remote.url.encode()).hexdigest()[:24]]
    assert git("rev-parse", "--is-bare-repository", cwd=mirrors[0]) == "true"
    assert [t.name for t in (cache / "trees").iterdir()] == [a.commit]
    assert temp_leftovers(git_home) == []


def test_concurrent_processes_share_one_mirror_and_tree(project_remote: RemoteRepo, git_home: Path) -> None:
    code = textwrap.dedent(f"""
        from pathlib import Path
        from dockrun.project.git import resolve_git
        print(resolve_git({project_remote.url!r}, "feature", Path({str(git_home)!r})).root)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    roots = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert [p.returncode for p in procs] == [0] * 4
    assert roots == {str(git_home / "git" / "trees" / project_remote.commits["feature"])}
    assert len(list((git_home / "git" / "mirrors").iterdir())) == 1
    assert temp_leftovers(git_home) == []


def test_stale_temp_dirs_of_a_dead_process_are_swept(project_remote: RemoteRepo, git_home: Path) -> None:
    key = hashlib.sha256(project_remote.url.encode()).hexdigest()[:24]
    stale = [git_home / "git" / sub / f".tmp-{key}-dead" for sub in ("mirrors", "trees")]
    for path in stale:
        (path / "objects").mkdir(parents=True)
    resolve_git(project_remote.url, None, git_home)
    assert temp_leftovers(git_home) == []


def test_resolve_source_routes_git_uris_here(project_remote: RemoteRepo, git_home: Path) -> None:
    src = resolve_source(project_remote.url + "#sub", "v1", git_home)
    assert (src.commit, src.subdirectory) == (project_remote.commits["first"], "sub")


def test_unreachable_repository(tmp_path: Path, git_home: Path) -> None:
    url = (tmp_path / "missing.git").as_uri()
    with pytest.raises(SourceError, match="repository not found"):
        resolve_git(url, None, git_home)
    assert temp_leftovers(git_home) == []


@pytest.mark.parametrize("form", ["ssh://git@{host}{path}", "git@{host}:{path}"])
def test_ssh_uris_use_git_ssh_command(project_remote: RemoteRepo, tmp_path: Path, git_home: Path,
                                      monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    ssh = fake_ssh(tmp_path / "ssh")
    monkeypatch.setenv("GIT_SSH_COMMAND", str(ssh))
    uri = form.format(host="repo-host", path=project_remote.bare) + "#sub"
    src = resolve_git(uri, "v1", git_home)
    assert (src.uri, src.commit, src.subdirectory) == (uri, project_remote.commits["first"], "sub")
    assert "git@repo-host" in Path(f"{ssh}.log").read_text()  # the user name went to ssh


# --- smart HTTP with basic auth ------------------------------------------------------------------

@pytest.fixture
def served(git_http_server: GitHttpServer, tmp_path: Path) -> RemoteRepo:
    return serve_remote(git_http_server, tmp_path, "plain", PLAIN)


def test_http_credentials_from_dockrun_env(served: RemoteRepo, git_http_server: GitHttpServer,
                                           git_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKRUN_GIT_USERNAME", git_http_server.username)
    monkeypatch.setenv("DOCKRUN_GIT_PASSWORD", git_http_server.password)
    src = resolve_git(served.url, None, git_home)
    assert src.commit == served.commits["first"] and (src.root / "code.py").is_file()
    assert files_containing(git_home, git_http_server.password) == []
    mirror_config = next((git_home / "git" / "mirrors").iterdir()) / "config"
    assert f"url = {served.url}\n" in mirror_config.read_text()  # the clean URL, nothing more
    askpass = git_home / "git" / "askpass.sh"
    assert askpass.stat().st_mode & 0o777 == 0o700


def test_http_credentials_from_mlflow_env(served: RemoteRepo, git_http_server: GitHttpServer,
                                          git_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_GIT_USERNAME", git_http_server.username)
    monkeypatch.setenv("MLFLOW_GIT_PASSWORD", git_http_server.password)
    assert resolve_git(served.url, "main", git_home).commit == served.commits["first"]


def test_http_credentials_in_the_uri(served: RemoteRepo, git_http_server: GitHttpServer,
                                     git_home: Path) -> None:
    s = git_http_server
    uri = s.url("plain.git", f"{s.username}:{s.password}") + "#"
    src = resolve_git(uri, None, git_home)
    assert src.uri == s.url("plain.git", "***") + "#"
    assert src.commit == served.commits["first"]
    assert files_containing(git_home, s.password) == []


@pytest.mark.parametrize("how", ["wrong-password", "in-uri", "none"])
def test_http_authentication_failure(served: RemoteRepo, git_http_server: GitHttpServer, git_home: Path,
                                     monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    s, bad = git_http_server, "not-" + git_http_server.password
    uri = s.url("plain.git")
    if how == "wrong-password":
        monkeypatch.setenv("DOCKRUN_GIT_USERNAME", s.username)
        monkeypatch.setenv("DOCKRUN_GIT_PASSWORD", bad)
    elif how == "in-uri":
        uri = s.url("plain.git", f"{s.username}:{bad}")
    with pytest.raises(SourceError) as e:
        resolve_git(uri, None, git_home)
    message = str(e.value)
    assert message.startswith(f"{redact(uri)}: authentication failed") and "\n" not in message
    assert bad not in message and s.password not in message
    assert temp_leftovers(git_home) == [] and not any((git_home / "git" / "mirrors").iterdir())
    assert files_containing(git_home, bad) == []


def test_unreachable_port_leaves_no_temp_dirs(git_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKRUN_GIT_PASSWORD", "pw")
    uri = f"http://127.0.0.1:{free_port()}/plain.git"
    with pytest.raises(SourceError, match="cannot reach the host"):
        resolve_git(uri, None, git_home)
    with pytest.raises(SourceError, match="cannot reach the host"):
        resolve_git(uri, "a" * 40, git_home)  # a full SHA not in the cache must be fetched
    assert temp_leftovers(git_home) == [] and not any((git_home / "git" / "mirrors").iterdir())


def test_ctrl_c_during_clone_leaves_nothing(served: RemoteRepo, git_http_server: GitHttpServer,
                                            git_home: Path) -> None:
    git_http_server.hold_transfers()
    # A full SHA: no ls-remote first, so the first request to stall is the new mirror's fetch.
    code = f"import dockrun.project.git as g; g.resolve_git({served.url!r}, {served.commits['first']!r}, None)"
    env = {**os.environ, "DOCKRUN_GIT_USERNAME": git_http_server.username,
           "DOCKRUN_GIT_PASSWORD": git_http_server.password}
    # Its own session, SIGINT at default (may be ignored in ours): then killpg is a terminal's Ctrl-C.
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(200):  # wait until git is stuck in the transfer, with its temp mirror made
            if any(method == "POST" for method, _, _ in git_http_server.log) and temp_leftovers(git_home):
                break
            proc.poll()
            assert proc.returncode is None, proc.stderr and proc.stderr.read()
            time.sleep(0.05)
        else:
            pytest.fail("the clone never reached the server")
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "KeyboardInterrupt" in err
    assert temp_leftovers(git_home) == [] and not any((git_home / "git" / "mirrors").iterdir())


def test_pinned_commit_needs_no_network(served: RemoteRepo, git_http_server: GitHttpServer, git_home: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKRUN_GIT_USERNAME", git_http_server.username)
    monkeypatch.setenv("DOCKRUN_GIT_PASSWORD", git_http_server.password)
    sha = served.commits["first"]
    first = resolve_git(served.url + "#", sha, git_home)
    git_http_server.stop()
    assert resolve_git(served.url + "#", sha, git_home) == first  # tree cached
    shutil.rmtree(first.root)
    assert resolve_git(served.url + "#", sha, git_home) == first  # commit in the mirror
    assert resolve_git(served.url, sha[:8], git_home).commit == sha  # short SHA found locally
    with pytest.raises(SourceError, match="cannot reach the host"):
        resolve_git(served.url, "main", git_home)  # a branch must ask the remote


def test_branch_picks_up_new_commits(served: RemoteRepo, git_http_server: GitHttpServer, git_home: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKRUN_GIT_USERNAME", git_http_server.username)
    monkeypatch.setenv("DOCKRUN_GIT_PASSWORD", git_http_server.password)
    assert resolve_git(served.url, "main", git_home).commit == served.commits["first"]
    mark = len(git_http_server.log)
    assert resolve_git(served.url, "main", git_home).commit == served.commits["first"]
    assert git_http_server.git_commands_since(mark) == 1  # ls-remote only: nothing new to fetch
    newer = served.push_commit("second", {"code.py": "v = 2\n"})
    src = resolve_git(served.url, "main", git_home)
    assert src.commit == newer and (src.root / "code.py").read_text() == "v = 2\n"
    assert len(list((git_home / "git" / "mirrors").iterdir())) == 1


def test_http_submodule_with_relative_url(git_http_server: GitHttpServer, tmp_path: Path, git_home: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKRUN_GIT_USERNAME", git_http_server.username)
    monkeypatch.setenv("DOCKRUN_GIT_PASSWORD", git_http_server.password)
    lib = serve_remote(git_http_server, tmp_path, "lib", {"lib.txt": "lib\n"})
    proj = serve_remote(git_http_server, tmp_path, "app", PLAIN)
    git("submodule", "add", "-q", str(lib.bare), "lib", cwd=proj.work)
    git("config", "-f", ".gitmodules", "submodule.lib.url", "../lib.git", cwd=proj.work)
    sha = proj.push_commit("with-lib", {})
    src = resolve_git(proj.url, None, git_home)
    assert src.commit == sha and (src.root / "lib" / "lib.txt").read_text() == "lib\n"
    assert files_containing(git_home, git_http_server.password) == []


# --- local_git_info ------------------------------------------------------------------------------

@pytest.fixture
def work(tmp_path: Path, git_home: Path) -> tuple[Path, str]:
    repo = tmp_path / "work"
    git("init", "-q", str(repo))
    (repo / ".gitignore").write_text("*.log\n")
    return repo, commit(repo, {"a.py": "a\n", "pkg/b.py": "b\n"}, "init")


def test_local_git_info_clean(work: tuple[Path, str]) -> None:
    repo, sha = work
    (repo / "out.log").write_text("ignored files do not count\n")
    assert local_git_info(repo) == (sha, False)


@pytest.mark.parametrize("change", ["modified", "staged", "untracked", "deleted"])
def test_local_git_info_dirty(work: tuple[Path, str], change: str) -> None:
    repo, sha = work
    if change == "deleted":
        (repo / "a.py").unlink()
    else:
        (repo / ("new.py" if change != "modified" else "a.py")).write_text("changed\n")
    if change == "staged":
        git("add", "new.py", cwd=repo)
    assert local_git_info(repo) == (sha, True)


def test_local_git_info_outside_any_repository_starts_no_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dockrun.project.git as git_module

    folder = tmp_path / "plain" / "project"
    folder.mkdir(parents=True)
    started: list[object] = []
    real_run = git_module.subprocess.run
    monkeypatch.setattr(git_module.subprocess, "run", lambda *a, **k: started.append(a) or real_run(*a, **k))
    assert local_git_info(folder) is None and started == []
    # In a work tree (found through a .git file, as in a linked worktree or submodule), git runs.
    (tmp_path / "plain" / ".git").write_text("gitdir: /nowhere\n")
    assert local_git_info(folder) is None and len(started) == 1


def test_local_git_info_in_a_subfolder_of_a_work_tree(work: tuple[Path, str]) -> None:
    repo, sha = work
    assert local_git_info(repo / "pkg") == (sha, False)


def test_local_git_info_only_counts_the_folder(work: tuple[Path, str]) -> None:
    repo, sha = work
    (repo / "a.py").write_text("changed outside pkg/\n")
    assert local_git_info(repo / "pkg") == (sha, False)
    (repo / "pkg" / "b.py").write_text("changed\n")
    assert local_git_info(repo / "pkg") == (sha, True)


def test_local_git_info_without_repo_or_commit(tmp_path: Path, git_home: Path) -> None:
    (tmp_path / "plain").mkdir()
    assert local_git_info(tmp_path / "plain") is None
    git("init", "-q", str(tmp_path / "empty"))
    assert local_git_info(tmp_path / "empty") is None
    assert local_git_info(tmp_path / "no-such-dir") is None


# --- redact and home -----------------------------------------------------------------------------

@pytest.mark.parametrize("uri, shown", [
    ("https://user:pw@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
    ("https://ghp_token@github.com/org/repo#sub/dir", "https://***@github.com/org/repo#sub/dir"),
    ("http://u:p@ss@127.0.0.1:8080/r.git", "http://***@127.0.0.1:8080/r.git"),
    ("git+https://u:p@host/r", "git+https://***@host/r"),
    ("HTTPS://u:p@host/x", "HTTPS://***@host/x"),
    ("ssh://u:p@host/x", "ssh://***@host/x"),
    ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
    ("ssh://git@github.com/org/repo.git", "ssh://git@github.com/org/repo.git"),
    ("https://github.com/org/repo@v1", "https://github.com/org/repo@v1"),
    ("file:///tmp/repo#sub", "file:///tmp/repo#sub"),
])
def test_redact(uri: str, shown: str) -> None:
    assert redact(uri) == shown


def test_dockrun_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKRUN_HOME", str(tmp_path / "h"))
    assert dockrun_home() == tmp_path / "h"
    monkeypatch.delenv("DOCKRUN_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert dockrun_home() == tmp_path / "xdg" / "dockrun"


def test_ssh_password_in_uri_is_refused(git_home: Path) -> None:
    with pytest.raises(SourceError, match=r"^ssh://\*\*\*@example.invalid/r.git: a password"):
        resolve_git("ssh://u:secret@example.invalid/r.git", None, git_home)


def test_askpass_answers_only_for_the_projects_own_host(tmp_path: Path) -> None:
    """Git asks every host that answers 401 (a submodule elsewhere, a redirect): the password goes
    to the project's host only."""
    import dockrun.project.git as g

    script = tmp_path / "askpass.sh"
    script.write_text(g._ASKPASS)
    script.chmod(0o700)
    env = {"PATH": os.environ["PATH"], "DOCKRUN_GIT_ASKPASS_ORIGIN": g._origin("http://127.0.0.1:8080/team.git"),
           "DOCKRUN_GIT_ASKPASS_USERNAME": "bob", "DOCKRUN_GIT_ASKPASS_PASSWORD": "s3cret"}

    def ask(prompt: str) -> tuple[int, str]:
        r = subprocess.run([str(script), prompt], env=env, capture_output=True, text=True)
        return r.returncode, r.stdout

    assert ask("Username for 'http://127.0.0.1:8080': ") == (0, "bob\n")
    assert ask("Password for 'http://bob@127.0.0.1:8080': ") == (0, "s3cret\n")
    for other in ("Password for 'http://bob@127.0.0.2:8080': ", "Password for 'http://bob@127.0.0.1:8081': ",
                  "Password for 'https://bob@127.0.0.1:8080': ", "Password for 'http://evil.example': ",
                  "Password for 'http://127.0.0.1:8080@evil.example': "):
        assert ask(other) == (1, ""), other


def test_uris_that_would_store_a_secret_are_refused(tmp_path: Path) -> None:
    for uri, msg in [("bob:s3cret@git.example.com:team/repo.git", "password in an scp-like URI"),
                     ("https://git.example.com/team/repo.git?private_token=s3cret", "query string")]:
        with pytest.raises(SourceError, match=msg) as e:
            resolve_git(uri, None, tmp_path)
        assert "s3cret" not in str(e.value)
    assert redact("https://h.example/r.git?private_token=s3cret") == "https://h.example/r.git?***"
