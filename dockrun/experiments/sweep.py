"""`dockrun sweep` and `dockrun.sweep()`: one project over a grid of parameter values, at most N runs
at once, on any backend. One build (the first runs to need an image wait for it under its lock),
one record per run, and a sweep record under ``$DOCKRUN_HOME/sweeps/`` that ``--resume`` reads to
run only what did not finish. A failed run does not stop the others; Ctrl-C cancels every run
started and starts no more. The end is a table of each run's parameters, status and its metrics:
what it logged to MLflow when tracked, and what it wrote (``metrics.json`` or ``metrics.csv`` in
``$DOCKRUN_OUTPUT_DIR``)."""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import stat
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api import submit_prepared
from ..backends import get_backend
from ..backends.handle import RunHandle, shielded
from ..config import load_settings
from ..errors import BuildError, ConfigError, Interrupted, TrustRequired
from ..locks import make_private_dir, write_atomic
from ..options import from_kept, kept_options, key_values, label
from ..prepare import prepare
from ..request import RunRequest
from ..store.records import RunStore

METRIC_FILES = ("metrics.json", "metrics.csv")
MAX_METRICS = 1 << 20  # bytes of a metrics file read


@dataclass(frozen=True)
class SweepRow:
    index: int
    parameters: Mapping[str, str]
    run_id: str | None
    status: str  # FINISHED, FAILED, KILLED, or NOT STARTED
    metrics: Mapping[str, float]
    note: str | None = None  # why it did not start, or why its MLflow metrics are missing


@dataclass(frozen=True)
class SweepResult:
    sweep_id: str
    rows: tuple[SweepRow, ...]

    @property
    def ok(self) -> bool:
        return all(r.status == "FINISHED" for r in self.rows)


def grid_points(axes: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """Every combination of the axes' values, the first axis varying slowest."""
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def parse_axes(pairs: Sequence[str]) -> dict[str, list[str]]:
    """``-P alpha=0.1,0.3 -P l1=0,1`` -> {"alpha": ["0.1", "0.3"], "l1": ["0", "1"]}."""
    pairs = key_values(pairs, "-P", "KEY=V1,V2,...", "; list its values after one =, comma-separated")
    return {key: values.split(",") for key, values in pairs.items()}


def read_points(path: str) -> list[dict[str, str]]:
    """A list of points from a file: JSON (a list of objects) or CSV (a header of parameter names)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--grid {path}: no such file") from None
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"--grid {path}: not valid JSON ({e})") from None
        if not isinstance(data, list) or not all(isinstance(p, dict) for p in data):
            raise ConfigError(f"--grid {path}: expected a JSON list of objects (parameter -> value)")
        return [{str(k): str(v) for k, v in p.items()} for p in data]
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise ConfigError(f"--grid {path}: expected a CSV file with a header of parameter names and a row per run")
    return [{k: v for k, v in r.items() if k} for r in rows]


def sweep(template: RunRequest, points: Sequence[Mapping[str, str]], parallel: int = 4,
          resume: str | None = None, log: Any = None) -> SweepResult:
    """Run ``template`` once per point (its parameters updated by the point), at most ``parallel``
    at once. With ``resume``, the points and template come from that sweep's record, and only
    points whose run did not finish run again."""
    if parallel < 1:
        raise ConfigError(f"--parallel {parallel}: expected at least 1")
    home = load_settings().home
    if resume:
        record = _load(home, resume)
        template = _resumed(record, template, points)
        points = record["points"]
    else:
        if not points:
            raise ConfigError("a sweep needs at least one point: -P NAME=V1,V2 or --grid FILE")
        record = {"sweep_id": uuid.uuid4().hex[:12], "created": time.time(), **_points_data(points),
                  "request": _template_data(template), "runs": {}}
    store = RunStore(home)
    todo = [i for i in range(len(points)) if not _finished(store, record["runs"].get(str(i)))]
    if resume:
        _check_kept(record, todo)
    backend = get_backend(template.backend)
    # Every point is checked before any runs: a bad value in the grid is one line, nothing started.
    prepared = {i: prepare(dataclasses.replace(template, parameters={**template.parameters, **points[i]},
                                               synchronous=False), backend) for i in todo}
    record.pop("errors", None)
    _save(home, record)
    # A backend whose runs share more than the image (Kubernetes: one push, one owner process
    # following every Job of the sweep) gives a backend for this sweep's runs.
    with backend.batch(record["sweep_id"], home) as runner:
        refused = _pool(runner, prepared, parallel, record, home, log)
    if refused is not None and not record["runs"]:
        # Refused before any point started (a setting every point's build would be given): the
        # sweep's input was wrong, as a bad value in the grid is; no record of runs that never were.
        if resume:
            record.pop("errors", None)
            _save(home, record)
        else:
            _path(home, record["sweep_id"]).unlink(missing_ok=True)
        raise refused
    readers: dict[str, Any] = {}  # tracking URI -> its metrics reader (or why there is none), made once
    return SweepResult(record["sweep_id"], tuple(_row(store, record, i, p, readers) for i, p in enumerate(points)))


def _pool(backend: Any, prepared: Mapping[int, Any], parallel: int, record: dict[str, Any], home: Path,
          log: Any) -> TrustRequired | None:
    """Submit the prepared points, at most ``parallel`` at once, and wait for them; Ctrl-C cancels
    every run started (all at once) and starts no more. A failed build of the image every point
    needs, or its refusal for want of --trust, starts no more points; the refusal is returned."""
    started: dict[int, RunHandle] = {}
    lock, stop = threading.Lock(), threading.Event()
    refused: list[TrustRequired] = []

    def one(i: int) -> None:
        if stop.is_set():
            return
        try:
            handle = submit_prepared(prepared[i], backend, log or (lambda line: None))
        except Exception as e:  # noqa: BLE001 - one point's failure to start is its row, not the sweep's end
            with lock:
                record.setdefault("errors", {})[str(i)] = str(e).splitlines()[0]
                _save(home, record)
            if isinstance(e, (BuildError, TrustRequired)):  # the image every point needs: no point trying again
                stop.set()
            if isinstance(e, TrustRequired):
                with lock:
                    refused.append(e)
            return
        with lock:
            started[i] = handle
            record["runs"][str(i)] = handle.run_id
            _save(home, record)
        if stop.is_set():  # Ctrl-C came while this one was starting
            with shielded():
                handle.cancel()
            return
        handle.wait()

    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="dockrun-sweep")
    futures = [pool.submit(one, i) for i in prepared]
    try:
        for f in futures:
            while not f.done():
                time.sleep(0.05)  # in the main thread, so that Ctrl-C reaches it
    except KeyboardInterrupt:
        stop.set()
        with shielded():
            for f in futures:
                f.cancel()
            with lock:
                live = [h for h in started.values() if h.record().ended is None]
            if live:  # at once: each cancel may wait out its run's grace period
                with ThreadPoolExecutor(max_workers=len(live)) as cancels:
                    list(cancels.map(lambda h: h.cancel(), live))
            pool.shutdown(wait=True)
        raise Interrupted(f"interrupted; sweep {record['sweep_id']}'s runs were cancelled "
                          f"(dockrun sweep --resume {record['sweep_id']} runs what did not finish)") from None
    pool.shutdown(wait=True)
    return refused[0] if refused else None


def _finished(store: RunStore, run_id: str | None) -> bool:
    rec = store.get(run_id) if run_id else None
    return rec is not None and rec.status == "FINISHED"


def _row(store: RunStore, record: Mapping[str, Any], i: int, point: Mapping[str, str],
         readers: dict[str, Any]) -> SweepRow:
    run_id = record["runs"].get(str(i))
    rec = store.get(run_id) if run_id else None
    error = record.get("errors", {}).get(str(i))
    status = rec.status if rec else ("FAILED" if error else "NOT STARTED")
    note = f"did not start: {error}" if error and not rec else None
    metrics = read_metrics(Path(rec.outputs)) if rec and rec.outputs else {}
    if rec and rec.tracking_uri and rec.mlflow_run_id:
        try:  # what MLflow has is what the user will look up: it wins over a file's same name
            metrics.update(_reader(readers, rec.tracking_uri)(rec.mlflow_run_id))
        except ConfigError as e:  # the table still shows the rest; the note says why these are missing
            note = f"its MLflow metrics were not read: {e}"
    return SweepRow(i, dict(point), run_id, status, metrics, note)


def _reader(readers: dict[str, Any], uri: str) -> Any:
    """The metrics reader of ``uri``, made once for all the sweep's rows (a failure to make it, once
    too: every row tracked there says why)."""
    from ..tracking.metrics import metrics_reader

    if uri not in readers:
        try:
            readers[uri] = metrics_reader(uri, os.environ)
        except ConfigError as e:
            readers[uri] = e
    if isinstance(readers[uri], ConfigError):
        raise readers[uri]
    return readers[uri]


def read_metrics(outputs: Path) -> dict[str, float]:
    """What a run wrote in ``$DOCKRUN_OUTPUT_DIR``: metrics.json (an object of numbers) or
    metrics.csv (a header and one row, the last row if several); numbers only."""
    out: dict[str, float] = {}
    try:
        if (text := _run_file(outputs / "metrics.json")) is not None:
            data = json.loads(text)
            items = data.items() if isinstance(data, dict) else ()
        elif (text := _run_file(outputs / "metrics.csv")) is not None:
            rows = list(csv.DictReader(text.splitlines()))
            items = rows[-1].items() if rows else ()
        else:
            return out
    except (OSError, ValueError):
        return out
    for k, v in items:
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _run_file(path: Path) -> str | None:
    """A file the run wrote, as text; None if there is none. The run made it (on a local engine,
    straight into this folder): a link there, which would read a file of this machine's, is not
    followed, and no more than MAX_METRICS bytes are read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # none, or a link (ELOOP)
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read(MAX_METRICS).decode("utf-8")


def table(result: SweepResult, sort: str | None = None) -> str:
    """The sweep's table; ``sort``: a metric (ascending) or ``-metric`` (descending); rows without
    it last."""
    from ..errors import printable

    rows = list(result.rows)
    if sort:
        key, reverse = sort.lstrip("-"), sort.startswith("-")
        if not any(key in r.metrics for r in rows):
            raise ConfigError(f"--sort {sort}: no run wrote a metric {key!r} "
                              f"(found: {', '.join(sorted({m for r in rows for m in r.metrics})) or 'none'})")
        have = sorted((r for r in rows if key in r.metrics), key=lambda r: r.metrics[key], reverse=reverse)
        rows = have + [r for r in rows if key not in r.metrics]
    params = list(dict.fromkeys(k for r in rows for k in r.parameters))
    # A metric named as a parameter is the run echoing its input (metrics.csv often starts so).
    metrics = list(dict.fromkeys(k for r in rows for k in r.metrics if k not in params))
    lines = [["RUN ID", "STATUS", *(printable(n) for n in params + metrics)]]  # names a run chose
    for r in rows:
        lines.append([r.run_id or "-", r.status, *(printable(r.parameters.get(p, "")) for p in params),
                      *(f"{r.metrics[m]:.6g}" if m in r.metrics else "" for m in metrics)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


# ---- the sweep record ------------------------------------------------------------------------

def _template_data(request: RunRequest) -> dict[str, Any]:
    """What the sweep's record keeps of its template (the option table says which), for --resume;
    not a tracking server's password nor a docker variable's value (a record may be shown or copied)."""
    from ..backends.local.docker_args import without_values
    from ..tracking.target import split_userinfo

    data = {"uri": request.uri, **kept_options(request, "sweep")}
    if data.get("docker_args"):
        data["docker_args"] = without_values(data["docker_args"])
    if data.get("tracking_uri"):
        data["tracking_uri"], pair = split_userinfo(data["tracking_uri"])
        if pair:
            data["tracking_credentials"] = "not kept"
    return data


def _points_data(points: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """The points as the sweep's record keeps them: a URL value's credentials (user:password@, a
    query such as a pre-signed URL's token) are not kept; which values lost them is."""
    from ..httpauth import redact

    kept, hidden = [], {}
    for i, point in enumerate(points):
        kept.append({k: redact(v) if "://" in v and redact(v) != v else v for k, v in point.items()})
        if names := sorted(k for k, v in point.items() if kept[i][k] != v):
            hidden[str(i)] = names
    return {"points": kept, "credentials_not_kept": hidden} if hidden else {"points": kept}


def _check_kept(record: Mapping[str, Any], todo: Sequence[int]) -> None:
    """--resume can run again only what its record holds whole."""
    hidden = record.get("credentials_not_kept", {})
    for i in todo:
        if str(i) in hidden:
            names = ", ".join(hidden[str(i)])
            raise ConfigError(f"--resume {record['sweep_id']}: a point still to run has a URL with credentials "
                              f"({names}), which the sweep's record does not keep; run the sweep again")


def _resumed(record: Mapping[str, Any], given: RunRequest, points: Sequence[Mapping[str, str]]) -> RunRequest:
    """The template of a resumed sweep: its record's. The URI, points and options given with
    --resume must be the record's (one line names those that differ, rather than running with
    other options than asked); --trust given now is the user's word, as on `runs rerun`."""
    kept = record["request"]
    now = json.loads(json.dumps(_template_data(given), default=str))  # as the record would keep them
    differ = [label(name) for name, value in now.items()
              if name not in ("uri", "cwd", "trust", "tracking_credentials") and value != kept.get(name)]
    if given.uri and given.uri != kept["uri"]:
        differ.insert(0, "URI")
    if points and json.loads(json.dumps(_points_data(points)))["points"] != record["points"]:
        differ.append("-P/--grid")
    if differ:
        raise ConfigError(f"--resume {record['sweep_id']}: {', '.join(differ)}: not the sweep's own (--resume runs "
                          "its URI, points and options as they were, and takes --trust; for others, start a new sweep)")
    template = _template_from(record)
    return dataclasses.replace(template, trust=template.trust or given.trust)


def _template_from(record: Mapping[str, Any]) -> RunRequest:
    data = record["request"]
    if data.get("tracking_credentials") and not (os.environ.get("MLFLOW_TRACKING_USERNAME")
                                                 and os.environ.get("MLFLOW_TRACKING_PASSWORD")):
        raise ConfigError(f"--resume {record['sweep_id']}: its --tracking-uri carried a user and password, which the "
                          "sweep's record does not keep; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    return RunRequest(uri=data["uri"], **from_kept(data, "sweep"))


def _path(home: Path, sweep_id: str) -> Path:
    if not sweep_id.isalnum():
        raise ConfigError(f"--resume {sweep_id}: not a sweep ID")
    return home / "sweeps" / f"{sweep_id}.json"


def _save(home: Path, record: Mapping[str, Any]) -> None:
    make_private_dir(home)
    write_atomic(_path(home, record["sweep_id"]), json.dumps(record, indent=1, sort_keys=True, default=str))


def _load(home: Path, sweep_id: str) -> dict[str, Any]:
    try:
        return json.loads(_path(home, sweep_id).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--resume {sweep_id}: no such sweep in {home / 'sweeps'}") from None
