"""An MLproject's command is a format string, rendered on this machine: a format spec's width
(``{a:>2000000000}``) made dockrun allocate 2 GB per field for a project from a Git URI, before
anything was built. Widths and precisions are bounded; such a command is one line, exit 2. Through
the real CLI, its memory measured (test_archive_limits' harness: a data limit as a safety net)."""
from __future__ import annotations

from pathlib import Path

from git_fixtures import new_remote
from security.test_archive_limits import MAX_RSS, dockrun


def test_a_commands_format_width_cannot_exhaust_memory(tmp_path: Path, base_image: str) -> None:
    command = "echo {a:>2000000000}{a:>2000000000}"
    remote = new_remote(tmp_path / "remotes", "wide", {"MLproject": (
        f"name: wide\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        f"    parameters:\n      a: {{type: string, default: x}}\n    command: \"{command}\"\n")})
    r = dockrun(tmp_path / "home", "run", "-q", remote.url)
    assert r.code == 2, r.err[-2000:]
    assert r.err.count("\n") == 1 and r.err.startswith("dockrun: error: "), r.err[-2000:]
    assert "entry point 'main'" in r.err and "width" in r.err, r.err
    assert r.max_rss < MAX_RSS, r.max_rss
