"""What a run may write on the host, decided when it is submitted and kept in the run's own folder.

An output parameter (a path that does not exist yet) is not reached through its host folder: the
run gets a fresh, empty folder of its own under ``runs/<id>/staged/N``, mounted (or, on a remote
engine, copied) where the command expects the output's folder, so the files beside the output are
neither visible nor writable from the run. When the run ends (whatever the end), what it wrote at
an output's path is moved into place (a file renamed over the old one, a folder renamed into
place), and nothing else: a sibling it wrote stays behind and goes with the staging folder, and an
output the run did not write leaves the host's path as it is. Links in an output that lead out of
it (absolute, or climbing out) are not created.

The plan (``files.json``: the staging folders, and for a remote engine what to copy back and the
size limit) is written by the submitting process into the run's folder (mode 0700) and read by
whoever ends the run: nothing here is ever read back from the engine, whose labels an image
controls.
"""
from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...engine.client import Docker
from .landing import DEFAULT_COPY_BACK_LIMIT, Dropped, leads_out, write_file

PLAN_FILE = "files.json"
STAGED = "staged"  # under the run's folder: one folder per output folder


@dataclass(frozen=True)
class Staged:
    """Outputs ``names`` of host folder ``folder``, written by the run into ``stage``."""

    stage: str
    folder: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class FilesPlan:
    staged: tuple[Staged, ...] = ()
    # A remote engine only: the container's writable folders to copy back, (host, inside).
    copy_back: tuple[tuple[str, str], ...] = ()
    copy_back_limit: int = DEFAULT_COPY_BACK_LIMIT


def stage_outputs(outputs: Sequence[str], run_dir: Path, writable: Sequence[str] = ()) -> tuple[Staged, ...]:
    """One staging folder per distinct output folder (pure). An output whose folder the run may
    write anyway (``writable``: a local MLflow store's folder) is written there directly."""
    folders = sorted({os.path.dirname(o) for o in outputs} - set(writable))
    return tuple(Staged(str(run_dir / STAGED / str(i)), folder,
                        tuple(sorted({os.path.basename(o) for o in outputs if os.path.dirname(o) == folder})))
                 for i, folder in enumerate(folders))


def make_run_dir(run_dir: Path) -> None:
    """The run's folder, private to the user: its plan decides what is written where."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(run_dir, 0o700)  # mkdir's mode passes through the umask


def save_plan(run_dir: Path, plan: FilesPlan) -> None:
    """Make the staging folders (mount sources must exist) and write the plan, before the
    container is created. A plan with nothing to do is not written (a run without outputs on the
    local engine)."""
    if not (plan.staged or plan.copy_back):
        return
    for s in plan.staged:
        os.makedirs(s.stage, exist_ok=True)
    data = {"staged": [[s.stage, s.folder, list(s.names)] for s in plan.staged],
            "copy_back": [list(c) for c in plan.copy_back], "copy_back_limit": plan.copy_back_limit}
    tmp = run_dir / f".{PLAN_FILE}.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, run_dir / PLAN_FILE)


def load_plan(run_dir: Path) -> FilesPlan | None:
    try:
        data = json.loads((run_dir / PLAN_FILE).read_text())
    except FileNotFoundError:
        return None  # a run from before plans were kept: nothing to bring back or place
    return FilesPlan(tuple(Staged(stage, folder, tuple(names)) for stage, folder, names in data["staged"]),
                     tuple((host, inside) for host, inside in data["copy_back"]), int(data["copy_back_limit"]))


@contextmanager
def run_log(run_dir: Path) -> Iterator[Callable[[str], None]]:
    """Lines for the run's stderr.log, which its driver shows."""
    with open(run_dir / "stderr.log", "a") as err:
        def log(line: str) -> None:
            err.write(f"dockrun: {line}\n")
            err.flush()

        yield log


def finish_files(docker: Docker, container: Any, run_dir: Path, ok: bool,
                 log: Callable[[str], None] | None = None) -> str | None:
    """At the run's end: a remote run's writable folders come back (when ``container`` is still
    there), then its outputs are moved into place. ``ok``: the run is finishing well (a line says
    so when a run that did not still put an output in place). None, or why not everything came
    back or into place, for the caller to record and show."""
    plan = load_plan(run_dir)
    _drop_output_dir_links(run_dir, log, plan)
    if plan is None or not (plan.staged or plan.copy_back):
        return None
    if log is None:
        with run_log(run_dir) as say:
            return finish_files(docker, container, run_dir, ok, say)
    lost = None
    if plan.copy_back and container is not None:
        try:
            from .transfer import copy_back, load_sent  # a remote engine's run

            copy_back(docker, container, plan.copy_back, log, load_sent(run_dir), run_dir, plan.copy_back_limit)
        except Exception as e:  # noqa: BLE001 - any failure here means lost outputs: say so, never hide it
            lost = f"its outputs could not be copied back from the engine: {e}".splitlines()[0]
    lost = place_outputs(plan.staged, log, ok and not lost) or lost
    try:
        os.rmdir(run_dir / STAGED)  # empty once every output is in place
    except OSError:
        pass
    return lost


def _drop_output_dir_links(run_dir: Path, log: Callable[[str], None] | None, plan: FilesPlan | None) -> None:
    """``$DOCKRUN_OUTPUT_DIR`` on a local engine is the run's folder itself, mounted: links the run
    left there that lead out of it (to a file of the user's) go, as they do from a copy-back."""
    outputs = run_dir / "outputs"
    if plan is not None and plan.copy_back or not outputs.is_dir() or outputs.is_symlink():
        return  # copied back: judged on the way
    dropped = Dropped()
    _drop_links_out(str(outputs), dropped)
    if dropped.count:
        if log is None:
            with run_log(run_dir) as say:
                dropped.report(say)
        else:
            dropped.report(log)


def place_outputs(staged: Sequence[Staged], log: Callable[[str], None], ok: bool = True) -> str | None:
    """Move what the run wrote at each output's path into place; None, or why one could not be
    (it is then kept in its staging folder, and the reason says where)."""
    dropped = Dropped()
    lost = None
    for s in staged:
        kept = False
        for name in s.names:
            src, dest = os.path.join(s.stage, name), os.path.join(s.folder, name)
            if not os.path.lexists(src):
                continue  # not written by the run: the host's path stays as it is
            try:
                if not _place(src, dest, dropped):
                    continue
            except OSError as e:
                kept = True
                lost = lost or f"its output {dest} could not be put in place ({e.strerror or e}); it is kept in {src}"
                continue
            if not ok:
                log(f"the run did not finish, but it wrote {dest}: put in place")
        if not kept:
            import shutil  # here: with tempfile, 3 ms a run that stages no output never needs

            shutil.rmtree(s.stage, ignore_errors=True)  # what else the run wrote there goes with it
    dropped.report(log)
    return lost


def _place(src: str, dest: str, dropped: Dropped) -> bool:
    """Move one output into place; False if it was not (a link, or not a file or folder)."""
    if os.path.islink(src):
        dropped.add(os.path.basename(dest), os.readlink(src))
        return False
    if os.path.isfile(src):
        _move_file(src, dest)
        return True
    if not os.path.isdir(src):
        return False  # a fifo or socket: nothing to hand on
    _drop_links_out(src, dropped)
    if os.path.isdir(dest) and not os.path.islink(dest) and not os.listdir(dest):
        os.rmdir(dest)  # an empty folder made meanwhile: the run's takes its place
    if os.path.lexists(dest):
        raise OSError(errno.EEXIST, "something else is there now")
    try:
        os.rename(src, dest)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        import shutil
        import tempfile

        tmp = tempfile.mkdtemp(prefix=".dockrun-", dir=os.path.dirname(dest))
        try:
            shutil.copytree(src, tmp, symlinks=True, dirs_exist_ok=True)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return True


def _move_file(src: str, dest: str) -> None:
    """Rename over ``dest``; across file systems, through a temporary file beside it (a reader
    never sees half a file)."""
    try:
        os.replace(src, dest)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    with open(src, "rb") as f:
        write_file(f, dest, stat.S_IMODE(os.fstat(f.fileno()).st_mode))


def _drop_links_out(top: str, dropped: Dropped) -> None:
    """Remove the links in folder ``top`` that lead out of it (absolute, or climbing out), alone or
    through one another (``a -> .``, ``b -> a/..``): each is judged before any is removed."""
    real_top = os.path.realpath(top)
    out = []
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                target = os.readlink(path)
                rel = os.path.relpath(path, top)
                real = os.path.realpath(path)
                if leads_out(rel, target) or not (real == real_top or real.startswith(real_top + os.sep)):
                    out.append((path, rel, target))
    for path, rel, target in out:
        os.unlink(path)
        dropped.add(os.path.join(os.path.basename(top), rel), target)

