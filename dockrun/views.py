"""What `dockrun runs list` and `show` print."""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from .backends.local.runs import reconcile
from .config import load_settings
from .engine.client import Docker
from .store.records import RunRecord, RunStore
from .terminal import printable


def list_table(limit: int) -> str:
    store = RunStore(load_settings().home)
    docker: list[Docker] = []

    def lazy_docker() -> Docker:  # only if some run needs reconciling
        if not docker:
            from .engine.lean import connect  # here: `runs list` needs no engine client

            docker.append(connect())
        return docker[0]

    records = [reconcile(store, r, lazy_docker) for r in store.list(limit if limit > 0 else -1)]
    rows = [("RUN ID", "STATUS", "EXIT", "PROJECT", "ENTRY", "CREATED", "DURATION")]
    for r in records:
        end = r.ended or time.time()
        duration = f"{end - (r.started or r.created):.1f}s"
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))
        rows.append((r.run_id, r.status, "" if r.exit_code is None else str(r.exit_code), printable(r.project),
                     printable(r.entry_point), created, duration))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
    if len(records) == limit and limit > 0:
        total = store.count()
        if total > limit:
            text += f"\n({limit} of {total} runs; -n {total} or --all for every one)"
    return text


def show_json(run_id: str) -> str:
    from .api import get_run  # not at the top: `runs list` must not pay for the build stack's imports

    rec = get_run(run_id).record()
    data = dataclasses.asdict(rec)
    run_dir = RunStore(load_settings().home).run_dir(rec.run_id)
    data["logs"] = {"stdout": str(run_dir / "stdout.log"), "stderr": str(run_dir / "stderr.log")}
    data["environment"] = _environment(rec)
    return json.dumps(data, indent=2, sort_keys=True)


def _environment(rec: RunRecord) -> dict[str, Any]:
    """What the run's image installed (read from the image once, then from the cache)."""
    if rec.backend == "databricks":
        return {"recorded": False, "why": "not recorded: the run used the cluster's environment, not an image"}
    from .engine.lean import connect
    from .images.installed import run_installed, summary  # the image stack only for `show`

    # By content ID where the record has one: the tag may name a rebuilt image by now.
    return summary(run_installed(load_settings().home, rec.run_id, rec.image_id or rec.image, connect))
