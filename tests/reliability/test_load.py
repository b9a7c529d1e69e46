"""Load, bounded: 50 runs from 10 processes at once against the real engine: 50 consistent records,
one build per image, no "database is locked" reaching a user, drivers of bounded memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from conftest import write_project

DRIVER = textwrap.dedent("""
    import json, sys, dockrun
    project, n, me = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    runs = [dockrun.execute(project, parameters={"i": f"{me}-{k}"}, synchronous=False, log=print)
            for k in range(n)]
    ok = [r.wait(timeout=300) for r in runs]
    # VmHWM, not getrusage's ru_maxrss: that one keeps the peak of the process before exec, i.e.
    # of the (large, late in a session) test process this driver was forked from.
    peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    loaded = sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names))
    print(json.dumps({"ids": [r.run_id for r in runs], "ok": ok, "peak_kb": peak_kb, "modules": loaded}))
""")


@pytest.mark.usefixtures("no_leaks")
def test_fifty_runs_from_ten_processes(tmp_path: Path, home: Path, base_image: str) -> None:
    # A fresh token: the first build happens here, under load, and must happen once.
    project = write_project(tmp_path / "load", {
        "MLproject": "name: load\nentry_points:\n  main:\n    parameters: {i: string}\n"
                     "    command: \"python -c 'import sys; print(sys.argv[1])' {i}\"\n",
        "token.txt": uuid.uuid4().hex,
    })
    env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}
    procs = [subprocess.Popen([sys.executable, "-c", DRIVER, str(project), "5", str(p)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in range(10)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 10, [err[-500:] for _, err in results]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    everything = "".join(out + err for out, err in results)
    assert "database is locked" not in everything
    assert everything.count("building project image") == 1  # ten processes, one build
    assert all(all(r["ok"]) for r in reports)
    heaviest = max(reports, key=lambda r: r["peak_kb"])
    assert heaviest["peak_kb"] < 300_000, " ".join(heaviest["modules"])  # a driver stays well under 300 MB

    from dockrun.store.records import RunStore

    records = RunStore(home).list(100)
    ids = {i for r in reports for i in r["ids"]}
    assert len(records) == 50 and {r.run_id for r in records} == ids
    assert all(r.status == "FINISHED" and r.exit_code == 0 and r.ended for r in records)
    seen = sorted((RunStore(home).run_dir(r.run_id) / "stdout.log").read_text().strip() for r in records)
    assert seen == sorted(f"{p}-{k}" for p in range(10) for k in range(5))
