"""Runs on Databricks compute (a workspace file in the submitting user's home; a spark_python_task):
read the project archive once, check those bytes against its SHA-256, unpack them safely, run the
rendered command with bash, relay its output, exit with its status.

    python launcher.py dbfs:/dockrun/projects/SHA.tar.gz "COMMAND" RUN_ID dbfs:/dockrun/runs/ID/outputs SHA [K=V ...]
    python launcher.py /Volumes/main/ml/dockrun/USER/projects/SHA.tar.gz "COMMAND" RUN_ID /Volumes/.../outputs SHA

``K=V``: variables for the command (MLflow's run and experiment when the run is tracked; never a
secret: task parameters show on the run's page).

On the runtime, a task's output is what its Python process writes to ``sys.stdout`` and
``sys.stderr`` (runs/get-output's ``logs``), which the driver captures at the Python level: a child
writing to the inherited descriptors would be lost there. So the command's output (stdout and
stderr, one stream, in order) is read from a pipe and written to ``sys.stdout`` as it comes. The
command finds the task's Python first on PATH (the folder of ``sys.executable``, where the cluster
libraries or the serverless environment are installed), so ``python train.py`` sees them. A non-zero
exit ends the launcher with the same code (a signal as 128+N, as shells say it), after a last line
naming it that dockrun reads back into the run's record.

Standard library only, and Python 3.8 or later: the cluster has whatever Python its runtime ships
and nothing of dockrun's.
"""
import base64
import codecs
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile

REFUSED = 2  # the archive is not one dockrun would have made: nothing is run
# The last line of a failed command's output; dockrun reads the code back from the task's logs.
EXITED = "dockrun launcher: the command exited with code "
CHUNK = 1 << 16
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
    """dbfs:/x -> /dbfs/x, where clusters mount DBFS; a volume's /Volumes/... is a path already."""
    if path.startswith("/Volumes/"):
        return path
    if path.startswith("dbfs:"):
        path = path[len("dbfs:"):]
    elif path.startswith("/dbfs/"):
        path = path[len("/dbfs"):]
    return "/dbfs/" + path.lstrip("/")


def read_once(path):
    """The file's bytes, read through one open: what is checked is what is unpacked, whatever is
    put under that name meanwhile (anyone who can write the folder can replace it)."""
    with open(path, "rb") as f:
        return f.read()


def _inside(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _plain_name(name, what):
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or os.path.isabs(name) or ".." in parts:
        raise Refused(f"{what} {name!r} points outside the project")
    return name


def unpack(archive, work):
    """Files, folders and hard links first, symbolic links last: no member is ever written through
    a link, and every link must resolve inside ``work`` once all are in place. ``archive``: the
    archive's bytes (or a path)."""
    work = os.path.realpath(work)
    source = {"fileobj": io.BytesIO(archive)} if isinstance(archive, bytes) else {"name": archive}
    with tarfile.open(**source) as tar:
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


def child_env(run_id, out_dir, extra, environ=None, executable=None):
    """The command's environment: the task's, the task's Python first on PATH, dockrun's variables."""
    env = dict(os.environ if environ is None else environ)
    python_dir = os.path.dirname(os.path.abspath(executable or sys.executable))
    rest = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and p != python_dir]
    env["PATH"] = os.pathsep.join([python_dir] + rest)
    for item in extra:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise Refused(f"parameter {item!r} is not NAME=VALUE")
        env[name] = value
    env.update(DOCKRUN_RUN_ID=run_id, DOCKRUN_OUTPUT_DIR=out_dir, PYTHONUNBUFFERED="1")
    return env


def relay(source, sink):
    """Copy a pipe to a text stream as it comes (decoded as UTF-8, bad bytes replaced), flushing
    each piece so the driver's capture has it even if the task is killed."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while True:
        data = os.read(source, CHUNK)
        text = decoder.decode(data, final=not data)
        if text:
            sink.write(text)
            sink.flush()
        if not data:
            return


def run_command(command, cwd, env, out=None):
    """Run ``command`` with bash, its output relayed to ``out`` (sys.stdout); its exit code (a signal
    as 128+N). SIGTERM and SIGINT to the launcher are passed on to the command."""
    out = out or sys.stdout
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def forward(signum, frame):
        try:
            proc.send_signal(signum)
        except OSError:
            pass

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, forward)
        except (ValueError, OSError):  # not the main thread (a test): nothing to pass on
            pass
    try:
        relay(proc.stdout.fileno(), out)
        code = proc.wait()
    finally:
        proc.stdout.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def main():
    archive, command, run_id, outputs, expected = sys.argv[1:6]
    command = decode_command(command)
    try:
        data = read_once(fuse(archive))
    except OSError as e:
        hint = ""
        if archive.startswith("dbfs:"):
            hint = ("; clusters in standard access mode, serverless compute and workspaces without a DBFS root "
                    "cannot read the DBFS root: give a \"volume\" in --backend-config")
        print(f"dockrun launcher: {archive} cannot be read: {e}{hint}", file=sys.stderr)
        return REFUSED
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        print(f"dockrun launcher: {archive} was changed after the run was submitted, or is corrupt "
              f"(SHA-256 {got}, expected {expected}): nothing was run; run dockrun again to upload it anew",
              file=sys.stderr)
        return REFUSED
    work = tempfile.mkdtemp(prefix="dockrun-")
    try:
        try:
            unpack(data, work)
            out_dir = fuse(outputs)
            env = child_env(run_id, out_dir, sys.argv[6:])
        except (Refused, tarfile.TarError, OSError) as e:
            print(f"dockrun launcher: {archive} refused: {e}", file=sys.stderr)
            return REFUSED
        os.makedirs(out_dir, exist_ok=True)
        sys.stdout.flush()
        code = run_command(command, work, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if code:
        sys.stdout.flush()
        print(f"{EXITED}{code}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
