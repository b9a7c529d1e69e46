"""Runs on Databricks compute (uploaded by dockrun to DBFS or a volume; a spark_python_task): check the
project archive against its SHA-256, unpack it safely, run the rendered command with bash, exit with
its status.

    python launcher.py dbfs:/dockrun/projects/SHA.tar.gz "COMMAND" RUN_ID dbfs:/dockrun/runs/ID/outputs SHA
    python launcher.py /Volumes/main/ml/dockrun/USER/projects/SHA.tar.gz "COMMAND" RUN_ID /Volumes/.../outputs SHA

Standard library only, and Python 3.8 or later: the cluster has whatever Python its runtime ships
and nothing of dockrun's.
"""
import base64
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile

REFUSED = 2  # the archive is not one dockrun would have made: nothing is run
# Databricks replaces {{...}} in task parameters (dynamic value references) and has no escape for
# them, so a command holding "{{" travels base64-encoded behind this mark (so does one that starts
# with the mark itself); any other command stays readable in the run's page.
ENCODED = "dockrun-base64:"


def encode_command(command):
    if "{{" in command or "}}" in command or command.startswith(ENCODED):
        return ENCODED + base64.b64encode(command.encode("utf-8")).decode("ascii")
    return command


def decode_command(parameter):
    if parameter.startswith(ENCODED):
        return base64.b64decode(parameter[len(ENCODED):]).decode("utf-8")
    return parameter


class Refused(Exception):
    pass


def fuse(path):
    """dbfs:/x -> /dbfs/x, where clusters mount DBFS; a volume's /Volumes/... is a path already
    (DOCKRUN_DBFS_FUSE and DOCKRUN_VOLUMES_ROOT move them, for an emulator)."""
    if path.startswith("/Volumes/"):
        return os.environ.get("DOCKRUN_VOLUMES_ROOT", "").rstrip("/") + path
    root = os.environ.get("DOCKRUN_DBFS_FUSE", "/dbfs")
    if path.startswith("dbfs:"):
        path = path[len("dbfs:"):]
    elif path.startswith("/dbfs/"):
        path = path[len("/dbfs"):]
    return root.rstrip("/") + "/" + path.lstrip("/")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _inside(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _plain_name(name, what):
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or os.path.isabs(name) or ".." in parts:
        raise Refused(f"{what} {name!r} points outside the project")
    return name


def unpack(archive, work):
    """Files, folders and hard links first, symbolic links last: no member is ever written through
    a link, and every link must resolve inside ``work`` once all are in place."""
    work = os.path.realpath(work)
    with tarfile.open(archive) as tar:
        members, links, seen = [], [], set()
        for m in tar.getmembers():
            name = _plain_name(m.name, "member").rstrip("/")
            if name in seen:
                raise Refused(f"member {name!r} appears twice")
            seen.add(name)
            if m.issym():
                if os.path.isabs(m.linkname):
                    raise Refused(f"link {name!r} points outside the project ({m.linkname})")
                links.append(m)
            elif m.islnk():
                _plain_name(m.linkname, "hard link target")
                members.append(m)
            elif m.isfile() or m.isdir():
                members.append(m)
            else:
                raise Refused(f"member {name!r} is neither a file, a folder nor a link")
        if hasattr(tarfile, "data_filter"):  # 3.12+ and the security backports: a second guard
            tar.extractall(work, members=members, filter="data")
        else:
            tar.extractall(work, members=members)  # noqa: S202 - every member checked above
    for m in links:
        path = os.path.join(work, m.name.rstrip("/"))
        parent = os.path.dirname(path)
        if not _inside(os.path.realpath(parent), work):
            raise Refused(f"link {m.name!r} is inside another link")
        os.makedirs(parent, exist_ok=True)
        os.symlink(m.linkname, path)
    for m in links:
        target = os.path.realpath(os.path.join(work, m.name.rstrip("/")))
        if not _inside(target, work):
            raise Refused(f"link {m.name!r} points outside the project ({m.linkname})")


def main():
    archive, command, run_id, outputs, expected = sys.argv[1:6]
    command = decode_command(command)
    local = fuse(archive)
    got = sha256(local)
    if got != expected:
        print(f"dockrun launcher: {archive} is corrupt (SHA-256 {got}, expected {expected}); "
              "run dockrun again to upload it anew", file=sys.stderr)
        return REFUSED
    work = tempfile.mkdtemp(prefix="dockrun-")
    try:
        unpack(local, work)
    except (Refused, tarfile.TarError, OSError) as e:
        print(f"dockrun launcher: {archive} refused: {e}", file=sys.stderr)
        return REFUSED
    out_dir = fuse(outputs)
    os.makedirs(out_dir, exist_ok=True)
    env = dict(os.environ, DOCKRUN_RUN_ID=run_id, DOCKRUN_OUTPUT_DIR=out_dir, PYTHONUNBUFFERED="1")
    sys.stdout.flush()
    return subprocess.run(["bash", "-c", command], cwd=work, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
