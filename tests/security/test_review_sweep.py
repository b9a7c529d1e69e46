"""`dockrun sweep`'s table shows what each run wrote in metrics.json: the run's file, written (on a
local engine) straight into a folder of this machine. A link the run made there is not followed (it
read any JSON or CSV file of the user's and put its numbers in the table), and the names of the
metrics reach the terminal escaped like every other name not dockrun's own. Through the real CLI
on the real engine."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_project

pytestmark = pytest.mark.usefixtures("no_leaks")

SCRIPT = """
if [ "$1" = 1 ]; then
  echo '{"\\u001b]0;owned\\u0007\\u001b[2Kacc": 1, "loss": 0.5}' > "$DOCKRUN_OUTPUT_DIR/metrics.json"
else
  ln -s "$2" "$DOCKRUN_OUTPUT_DIR/metrics.json"
fi
"""


def test_the_sweep_table_reads_only_the_runs_own_file_and_shows_its_names_escaped(
        cli, tmp_path: Path, base_image: str) -> None:
    secret = tmp_path / "users-own.json"  # a file of the user's the container never sees
    secret.write_text('{"secret_pin": 4242}')
    root = write_project(tmp_path / "proj", {"m.sh": SCRIPT, "MLproject": (
        f"name: swept\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        "    parameters:\n      a: string\n      target: string\n    command: \"sh m.sh {a} {target}\"\n")})
    r = cli("sweep", "-q", str(root), "-P", "a=1,2", "-P", f"target={secret}")
    assert r.code == 0, r.err
    assert "\x1b" not in r.out + r.err and "\x07" not in r.out
    assert "\\x1b]0;owned\\x07\\x1b[2Kacc" in r.out and "loss" in r.out, r.out
    assert "secret_pin" not in r.out and "4242" not in r.out, r.out


def test_a_sweeps_record_keeps_no_tracking_password_and_resume_asks_for_it(
        cli, tmp_path: Path, base_image: str, home: Path) -> None:
    """`--tracking-uri http://user:password@...`: the sweep's record (which `--resume` reads) keeps
    the URI without them; a resume needs them from MLflow's variables, and says so in one line."""
    from conftest import free_port

    root = write_project(tmp_path / "proj", {"MLproject": (
        f"name: swept\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        "    parameters:\n      a: string\n    command: \"echo {a}\"\n")})
    server = f"http://alice:hunter2@127.0.0.1:{free_port()}"  # nothing answers: no run starts
    r = cli("sweep", "-q", str(root), "-P", "a=1,2", "--tracking-uri", server)
    assert r.code == 1, r.err
    sweep_id = r.out.split()[1]
    kept = (home / "sweeps" / f"{sweep_id}.json").read_text()
    assert "hunter2" not in kept and "alice" not in kept and "127.0.0.1" in kept
    again = cli("sweep", "--resume", sweep_id, env={"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": ""})
    assert again.code == 2 and again.err.strip().splitlines() == [
        f"dockrun: error: --resume {sweep_id}: its --tracking-uri carried a user and password, which the sweep's "
        "record does not keep; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"], again.err
    given = cli("sweep", "--resume", sweep_id, env={"MLFLOW_TRACKING_USERNAME": "alice",
                                                     "MLFLOW_TRACKING_PASSWORD": "hunter2"})
    assert given.code == 1 and "cannot reach the MLflow tracking server" in given.out + given.err, given.err
    assert "hunter2" not in given.out + given.err


def test_a_sweeps_record_keeps_no_url_credentials_or_docker_variable_values(
        cli, tmp_path: Path, base_image: str, home: Path) -> None:
    """A grid value that is a URL with credentials, and `-A e=NAME=VALUE`, reach the runs but not the
    sweep's record; `--resume` of a point that needs such a value says in one line that it cannot."""
    root = write_project(tmp_path / "proj", {"MLproject": (
        f"name: swept\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        "    parameters:\n      src: string\n    command: \"test \\\"$TOKEN\\\" = hunter2 && test {src} = plain\"\n")})
    url = "http://bob:s3cret@127.0.0.1:1/data.csv"
    r = cli("sweep", "-q", str(root), "-P", f"src={url},plain", "-A", "e=TOKEN=hunter2")
    assert r.code == 1, r.err  # the URL point fails (its test), the plain one finishes: the token reached it
    lines = r.out.strip().splitlines()
    assert [line.split()[1] for line in lines[2:]] == ["FAILED", "FINISHED"], r.out
    sweep_id = lines[0].split()[1]
    kept = (home / "sweeps" / f"{sweep_id}.json").read_text()
    assert "s3cret" not in kept and "hunter2" not in kept and "127.0.0.1:1/data.csv" in kept and "TOKEN" in kept
    again = cli("sweep", "--resume", sweep_id)
    assert again.code == 2 and again.err.strip().splitlines() == [
        f"dockrun: error: --resume {sweep_id}: a point still to run has a URL with credentials (src), which the "
        "sweep's record does not keep; run the sweep again"], again.err
