"""Local runs: submit, look up, follow, wait for and cancel runs, from any process.

The run's record (records.py) is the truth; its supervisor process (supervisor.py) owns the
container. Whoever looks at a run whose supervisor is gone finishes the run for it (reconcile), so
no run is left RUNNING forever and no container is left behind.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from ...engine.client import ContainerSpec, Docker
from ...errors import Interrupted
from ...store.liveness import alive, start_token
from ...store.records import ACTIVE, RunRecord, RunStore, new_run_id
from ...tracking.compat import schema_matters
from ...tracking.runs import ProjectRun, Tracked, start_project_run
from ..handle import RunHandle, follow_logs, new_record, shielded
from ..outcome import record_end
from .container import RunContext, check_project_container, container_spec, files_plan
from .files import finish_files, make_run_dir, save_plan
from .launch import start_owner
from .wake import Listener, listen

if TYPE_CHECKING:
    from ...request import PreparedRun

POLL_S = 0.025
# Waiting for RUNNING with a wake line: the supervisor writes at RUNNING and its exit closes the
# line, so the timeout is only the fallback (a wake never sent); the driver leaves the CPU to the
# engine and the supervisor meanwhile.
WOKEN_POLL_S = 0.5


class LocalRun(RunHandle):
    """A submitted local run (the API's SubmittedRun); usable from any process that knows the ID."""

    poll_s = POLL_S
    cancel_summary = "cancelled and its container removed"

    def __init__(self, store: RunStore, run_id: str, docker: Docker | None = None, wake: Listener | None = None):
        super().__init__(store, run_id)
        self._docker = docker
        # The submitting process hears the supervisor's wakes; any other just polls.
        self._wake = wake or Listener(None, None)

    @property
    def docker(self) -> Docker:
        if self._docker is None:
            from ...engine.lean import connect  # here: `runs list` needs no engine client

            self._docker = connect()
        return self._docker

    def record(self) -> RunRecord:
        rec = reconcile(self._store, self._stored(), lambda: self.docker)
        if rec.over:
            self._wake.close()  # nothing more to wake us for
        return rec

    def cancel(self) -> None:
        """Stop the container (SIGTERM, grace, SIGKILL), remove it, record KILLED. Returns when
        the run is over."""
        rec = self.record()
        if rec.over:
            return
        self._store.transition(self.run_id, "KILLED", ACTIVE, reason="cancelled")
        if rec.container_id:
            container = self.docker.get_container(rec.container_id)
            if container is not None:
                with shielded():
                    self.docker.stop(container)
        self.wait()

    def wait_started(self) -> None:
        """Until the run is past SCHEDULED: woken by the supervisor at RUNNING (or the end)."""
        while self.get_status() == "SCHEDULED":
            self._wake.wait(WOKEN_POLL_S if self._wake.listening else POLL_S)

    def stop_listening(self) -> None:
        """Close this process's end of the wake line: from now on it polls, holding no descriptor."""
        self._wake.close()

    def follow(self, out: IO[bytes], err: IO[bytes], follow: bool = True) -> RunRecord:
        """Copy the run's output to ``out``/``err`` as it is written, until the run is over."""
        return follow_logs(self, self._store.run_dir(self.run_id), (out, err), follow,
                           lambda: self._wake.wait(POLL_S))


def reconcile(store: RunStore, rec: RunRecord, docker: Callable[[], Docker]) -> RunRecord:
    """If the process that owns an unfinished run is gone, finish the run for it: collect what the
    container left, remove it, and record why. Returns the current record."""
    if rec.over or rec.backend != "local":  # remote runs are followed by their own handle
        return rec
    if rec.supervisor_pid:
        if alive(rec.supervisor_pid, rec.supervisor_start):
            return rec
        owner = "supervisor"
    elif alive(rec.driver_pid, rec.driver_start):
        return rec  # still being submitted
    else:
        owner = "submitting process"
    d = docker()
    container = d.get_container(rec.container_id) if rec.container_id else None
    run_dir = store.run_dir(rec.run_id)
    if container is None:
        finish_files(d, None, run_dir, ok=False)  # what the run wrote, into place, as the supervisor would
        record_end(store, rec.run_id, "FAILED", None, f"the {owner} and the container vanished")
    else:
        state = container.attrs.get("State", {})
        if state.get("Running"):
            d.stop_and_remove(container)
            finish_files(d, None, run_dir, ok=False)
            record_end(store, rec.run_id, "FAILED", None, f"the {owner} vanished; the container was stopped")
        else:
            _save_logs(run_dir, container)
            code = state.get("ExitCode") if state.get("Status") == "exited" else None
            lost = finish_files(d, container, run_dir, ok=code == 0)
            d.stop_and_remove(container)
            status = "FINISHED" if code == 0 and not lost else "FAILED"
            reason = None if status == "FINISHED" else lost or f"the {owner} vanished; exit code {code}"
            record_end(store, rec.run_id, status, code, reason)
    return store.get(rec.run_id) or rec


def _save_logs(run_dir: Path, container: Any) -> None:
    """Keep what the container printed, where the supervisor had not written it yet."""
    for name, kwargs in (("stdout.log", {"stdout": True, "stderr": False}),
                         ("stderr.log", {"stdout": False, "stderr": True})):
        path = run_dir / name
        if not path.exists() or path.stat().st_size == 0:
            try:
                path.write_bytes(container.logs(**kwargs))
            except Exception:  # noqa: BLE001 - logs are best effort; the outcome is what matters
                pass


def submit_local_run(prepared: PreparedRun, log: Callable[[str], None]) -> LocalRun:
    """Build what is missing, start the MLflow run if tracked, plan the container, record the run,
    create the container and hand it to a supervisor; return once it runs. ``prepared`` has been
    validated (a local store the engine cannot reach was refused there) and its inputs fetched."""
    from ...engine.lean import connect

    docker = connect()
    check_project_container(prepared.project.docker_env, docker.remote, os.environ)  # nothing built yet
    image_ref, image_id = run_image(prepared, docker, log)
    check_image_mlflow(prepared, docker, image_id)  # before an MLflow run is started for nothing
    store, run_id = RunStore(prepared.settings.home), new_run_id()
    tracked = start_project_run(prepared.tracking, ProjectRun(
        run_id, prepared.source, prepared.entry_point, prepared.request.parameters, prepared.env.mlflow_env, "local",
        image_ref, image_id), os.environ)
    ctx = run_context(prepared, store.run_dir(run_id), image_id, docker.remote, tracked)
    spec = container_spec(ctx)  # the one plan: everything it could refuse was checked above
    run = record_scheduled(store, prepared, ctx, (image_ref, image_id), tracked, docker)
    start_container(store, run, docker, spec, prepared.request.synchronous, log)
    return until_running(run, prepared.request.synchronous)


def check_image_mlflow(prepared: PreparedRun, docker: Docker, image_id: str) -> None:
    """Can the image's MLflow open the host's sqlite store? An unpinned MLflow is known only now,
    from what the image installed (a pinned one was checked in prepare)."""
    if not schema_matters(prepared.tracking):
        return
    from ...images.installed import image_installed
    from ...tracking.compat import check_store_mlflow, host_mlflow, installed_mlflow

    installed = installed_mlflow(image_installed(docker, image_id, prepared.settings.home))
    check_store_mlflow(prepared.tracking, installed, host_mlflow())


def run_context(prepared: PreparedRun, run_dir: Path, image_id: str, remote: bool, tracked: Tracked) -> RunContext:
    """What the run's container is made from: the prepared run, its image, where its files go and
    its MLflow run's variables and mounts."""
    request = prepared.request
    return RunContext(
        run_id=run_dir.name,
        project=prepared.project.name,
        image=image_id,
        outputs=run_dir / "outputs",
        rendered=prepared.rendered,
        docker_env=prepared.project.docker_env,
        docker_args=request.docker_args,
        extra_env=tracked.env,
        extra_mounts=tracked.mounts,
        host_network=bool(prepared.tracking and prepared.tracking.host_network),
        dev_root=prepared.source.root if request.dev else None,
        remote=remote,
    )


def record_scheduled(store: RunStore, prepared: PreparedRun, ctx: RunContext, image: tuple[str, str],
                     tracked: Tracked, docker: Docker) -> LocalRun:
    """The run's folder (its files plan, kept there: never read back from the engine) and its
    SCHEDULED record; its handle, listening for the supervisor's wakes before the supervisor starts."""
    run_dir = ctx.outputs.parent
    make_run_dir(run_dir)
    ctx.outputs.mkdir(exist_ok=True)
    save_plan(run_dir, files_plan(ctx))
    store.insert(dataclasses.replace(
        new_record(prepared, ctx.run_id, str(ctx.outputs)), image=image[0], image_id=image[1],
        dev=prepared.request.dev, driver_pid=os.getpid(), driver_start=start_token(os.getpid()), **tracked.record))
    return LocalRun(store, ctx.run_id, docker, listen(run_dir))


def start_container(store: RunStore, run: LocalRun, docker: Docker, spec: ContainerSpec, synchronous: bool,
                    log: Callable[[str], None]) -> None:
    """Create the container (and on a remote engine copy the run's files in), then start its
    supervisor. Whatever stops this (Ctrl-C included) ends the run and removes the container."""
    run_id = run.run_id
    run_dir = store.run_dir(run_id)
    container = None
    try:
        with shielded():
            container = docker.create(spec)
            store.update(run_id, container_id=container.id)
        if spec.copies:  # a remote engine: the run's files go in before it starts (Ctrl-C may stop it)
            from .transfer import copy_in, save_sent

            save_sent(run_dir, copy_in(docker, container, spec.copies, log))
        with shielded():
            pid = _start_supervisor(store.home, run_id, synchronous, run_dir)
            store.update(run_id, supervisor_pid=pid, supervisor_start=start_token(pid))
    except BaseException as e:
        with shielded():
            if container is not None:
                docker.stop_and_remove(container)
            interrupted = isinstance(e, KeyboardInterrupt)
            record_end(store, run_id, "KILLED" if interrupted else "FAILED", None,
                       "interrupted before it started" if interrupted else f"could not start: {e}".splitlines()[0])
            run.stop_listening()
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(f"interrupted; run {run_id} was not started and its container was removed") from None
        raise


def until_running(run: LocalRun, synchronous: bool) -> LocalRun:
    """Wait until the supervisor has the run RUNNING (or over); Ctrl-C meanwhile cancels it."""
    try:
        run.wait_started()
        if not synchronous:
            # Nobody may follow a detached run from here: a driver holding many of them must not
            # hold a descriptor for each.
            run.stop_listening()
    except KeyboardInterrupt:
        with shielded():
            run.cancel()
        raise Interrupted(f"interrupted; run {run.run_id} was {run.cancel_summary}") from None
    return run


def run_image(prepared: PreparedRun, docker: Docker, log: Callable[[str], None]) -> tuple[str, str]:
    """The image a run (or a shell) uses, made sure of: its reference and ID. The project image
    (environment + code), built if missing; under --dev the environment image alone, since the code
    is mounted, so an edit never builds anything."""
    if prepared.request.image_id:  # a rerun: the very image the run used, if it can be had
        from .pinned import compare_rebuilt, pinned_image

        pinned = pinned_image(prepared, docker, log)
        if pinned:
            return pinned
        ref, built = _made_sure_of(prepared, docker, log)
        compare_rebuilt(prepared, docker, built, log)
        return ref, built
    return _made_sure_of(prepared, docker, log)


def _made_sure_of(prepared: PreparedRun, docker: Docker, log: Callable[[str], None]) -> tuple[str, str]:
    plan, settings, rebuild = prepared.plan, prepared.settings, prepared.request.rebuild
    if not rebuild and not prepared.request.dev:
        # A warm run: the image is here (one inspect), and the build stack is not even imported.
        found = docker.image_id(plan.project_image)
        if found:
            return plan.project_image, found
    from ...images.build import ensure_env_image, ensure_images  # the build stack: only when building

    if prepared.request.dev:
        return plan.env_image, ensure_env_image(plan, settings, docker, rebuild, log)[0]
    return plan.project_image, ensure_images(plan, prepared.source.root, settings, docker, rebuild, log)


def _start_supervisor(home: Path, run_id: str, attached: bool, run_dir: Path) -> int:
    """Start the run's owner (``launch.start_owner``) and return its pid."""
    return start_owner("local", home, run_id, attached, run_dir)
