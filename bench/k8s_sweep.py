"""A sweep on the test cluster: N runs of a trivial entry point with `dockrun sweep -b kubernetes
--parallel 8`, against the same N Jobs made from the filled-in manifest with `kubectl create` and
waited for with `kubectl wait`, at most 8 at once. Reports each arm's wall time, the peak number of
its host processes and their peak memory (summed RSS), and dockrun's overhead.

    python bench/k8s_sweep.py [--runs 200] [--parallel 8] [--out bench/results/2026-12-05-k8s-sweep.md]

The cluster is the tests' (../shared/tools/k8s-up.sh, needs root; torn down with --purge first and
at the end) with a loopback docker-registry the node pulls from. The image is built and pushed by
an uncounted one-run sweep first, so both arms run the same image already on the node. The kubectl
arm reads no output; dockrun's keeps every run's output in its log and records every run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from conftest import free_port, start_registry  # noqa: E402 - the tests' registry
from kube_cluster import kubectl_binary, tools_dir  # noqa: E402 - and cluster helpers

TEMPLATE = """
apiVersion: batch/v1
kind: Job
metadata:
  name: "{replaced with MLflow Project name}"
  namespace: bench
spec:
  backoffLimit: 0
  template:
    spec:
      containers:
      - name: "{replaced with MLflow Project name}"
        image: "{replaced with URI of Docker image created during Project execution}"
        command: ["{replaced with MLflow Project entry point command}"]
        resources: {requests: {cpu: 10m, memory: 16Mi}}
      restartPolicy: Never
"""

MLPROJECT = """
name: k8s-bench
entry_points:
  main:
    parameters: {i: int}
    command: "echo run {i}"
"""


class Sampler:
    """Every 0.1 s: the processes ``match`` picks, their count and summed RSS; the peaks kept."""

    def __init__(self, match):  # noqa: ANN001
        self.match, self.peak_n, self.peak_kb, self._stop = match, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            n = kb = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if not self.match(pid, cmd):
                        continue
                    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                               if line.startswith("VmRSS:"))
                except (OSError, StopIteration):
                    continue
                n, kb = n + 1, kb + rss
            self.peak_n, self.peak_kb = max(self.peak_n, n), max(self.peak_kb, kb)


def _environ_has(pid: str, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def dockrun_arm(work: Path, env: dict[str, str], runs: int, parallel: int) -> dict:
    marker = f"DOCKRUN_HOME={env['DOCKRUN_HOME']}".encode()
    values = ",".join(str(i) for i in range(runs))
    args = [sys.executable, "-m", "dockrun", "sweep", str(work / "project"), "-b", "kubernetes", "-c",
            "kubernetes_config.json", "-P", f"i={values}", "--parallel", str(parallel), "-q"]
    with Sampler(lambda pid, cmd: b"dockrun" in cmd and _environ_has(pid, marker)) as s:
        t0 = time.monotonic()
        p = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
        wall = time.monotonic() - t0
    finished = p.stdout.count("FINISHED")
    if p.returncode != 0 or finished != runs:
        raise SystemExit(f"dockrun sweep failed ({p.returncode}, {finished}/{runs} FINISHED): {p.stderr[-2000:]}")
    return {"wall": wall, "procs": s.peak_n, "rss_mb": s.peak_kb / 1024}


def kubectl_arm(work: Path, kubeconfig: str, manifest: dict, runs: int, parallel: int) -> dict:
    kubectl = kubectl_binary()
    files = []
    for i in range(runs):
        job = json.loads(json.dumps(manifest))
        job["metadata"] = {"name": f"kubectl-bench-{i}", "namespace": manifest["metadata"]["namespace"]}
        job["spec"]["template"]["spec"]["containers"][0]["command"] = ["sh", "-c", f"echo run {i}"]
        path = work / f"job-{i}.json"
        path.write_text(json.dumps(job))
        files.append(path)

    def one(i: int) -> None:
        base = [kubectl, "--kubeconfig", kubeconfig, "-n", manifest["metadata"]["namespace"]]
        subprocess.run([*base, "create", "-f", str(files[i])], check=True, capture_output=True)
        subprocess.run([*base, "wait", "--for=condition=complete", "--timeout=600s", f"job/kubectl-bench-{i}"],
                       check=True, capture_output=True)

    with Sampler(lambda pid, cmd: cmd.split(b"\0")[0].endswith(b"kubectl")) as s:
        t0 = time.monotonic()
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(one, range(runs)))
        wall = time.monotonic() - t0
    return {"wall": wall, "procs": s.peak_n, "rss_mb": s.peak_kb / 1024}


def filled_manifest(kubeconfig: str, namespace: str) -> dict:
    """One of dockrun's Jobs as the cluster has it, without what the cluster added."""
    out = subprocess.run([kubectl_binary(), "--kubeconfig", kubeconfig, "-n", namespace, "get", "jobs", "-o", "json"],
                         check=True, capture_output=True, text=True).stdout
    job = json.loads(out)["items"][0]
    job.pop("status", None)
    job["spec"].pop("selector", None)
    job["spec"]["template"]["metadata"] = {}
    return job


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "2026-12-05-k8s-sweep.md"))
    args = ap.parse_args()
    tools = tools_dir()
    if tools is None or os.geteuid() != 0:
        raise SystemExit("needs ../shared/tools/k8s-up.sh and root")
    work = Path(tempfile.mkdtemp(prefix="dockrun-k8s-bench-"))
    port = free_port()
    registry = start_registry(work, port)
    cluster_env = {**os.environ, "DOCKRUN_K8S_REGISTRIES": f"127.0.0.1:{port}",
                   "KUBELET_KERNEL_TUNABLES_WARN_ONLY": "1"}
    subprocess.run(["bash", str(tools / "k8s-down.sh"), "--purge"], env=cluster_env, capture_output=True)
    up = subprocess.run(["bash", str(tools / "k8s-up.sh")], env=cluster_env, capture_output=True, text=True, check=True)
    kubeconfig = up.stdout.strip().splitlines()[-1]
    try:
        subprocess.run([kubectl_binary(), "--kubeconfig", kubeconfig, "create", "namespace", "bench"], check=True,
                       capture_output=True)
        (work / "project").mkdir()
        (work / "project" / "MLproject").write_text(textwrap.dedent(MLPROJECT))
        (work / "template.yaml").write_text(textwrap.dedent(TEMPLATE))
        (work / "kubernetes_config.json").write_text(json.dumps({
            "kube-context": "dockrun-k8s", "repository-uri": f"127.0.0.1:{port}/bench/k8s-bench",
            "kube-job-template-path": "template.yaml"}))
        env = {**os.environ, "KUBECONFIG": kubeconfig, "DOCKRUN_HOME": str(work / "home"), "PYTHONPATH": str(REPO),
               "DOCKRUN_BASE_IMAGE": os.environ.get("DOCKRUN_BASE_IMAGE", "dockrun-base:bookworm")}
        dockrun_arm(work, env, 1, 1)  # uncounted: builds, pushes, and the node pulls the image once
        manifest = filled_manifest(kubeconfig, "bench")
        kubectl_arm(work, kubeconfig, manifest, 1, 1)  # uncounted: kubectl's first start
        subprocess.run([kubectl_binary(), "--kubeconfig", kubeconfig, "-n", "bench", "delete", "jobs", "--all",
                        "--wait=true"], check=True, capture_output=True)
        load0 = os.getloadavg()[0]
        k = kubectl_arm(work, kubeconfig, manifest, args.runs, args.parallel)
        subprocess.run([kubectl_binary(), "--kubeconfig", kubeconfig, "-n", "bench", "delete", "jobs", "--all",
                        "--wait=true"], check=True, capture_output=True)
        d = dockrun_arm(work, env, args.runs, args.parallel)
        load1 = os.getloadavg()[0]
    finally:
        subprocess.run(["bash", str(tools / "k8s-down.sh"), "--purge"], env=cluster_env, capture_output=True)
        registry.terminate()
    report(Path(args.out), args, d, k, (load0, load1))


def report(out: Path, args: argparse.Namespace, d: dict, k: dict, load: tuple[float, float]) -> None:
    text = f"""# Kubernetes sweep: dockrun against kubectl ({datetime.date.today()})

`python bench/k8s_sweep.py --runs {args.runs} --parallel {args.parallel}` on the tests' single-node
cluster (Kubernetes v1.20.2, k8s-up.sh), {os.cpu_count()} cores shared with other sessions
(load average {load[0]:.1f} before, {load[1]:.1f} after). One round each, kubectl first; the image
was built, pushed and pulled by the node before either arm (an uncounted one-run sweep).

- dockrun: `dockrun sweep -b kubernetes -P i=0,...,{args.runs - 1} --parallel {args.parallel}`: one
  push check, one owner process following every Job from one watch of the sweep's label, each
  run's output kept in its log, one record per run.
- kubectl: the same filled-in Job (taken from the cluster) created {args.runs} times with `kubectl
  create -f`, each waited for with `kubectl wait --for=condition=complete`, at most
  {args.parallel} at once (two kubectl processes per Job, no output read, nothing recorded).

| | wall time | peak host processes | peak memory (summed RSS) |
| --- | --- | --- | --- |
| dockrun | {d['wall']:.1f} s | {d['procs']} | {d['rss_mb']:.0f} MB |
| kubectl | {k['wall']:.1f} s | {k['procs']} | {k['rss_mb']:.0f} MB |

dockrun's overhead: {d['wall'] - k['wall']:+.1f} s over {args.runs} runs
({(d['wall'] - k['wall']) / args.runs * 1000:+.0f} ms a run, {d['wall'] / k['wall']:.2f}x kubectl's wall time).
Processes are those whose command line names dockrun and whose environment has the sweep's
DOCKRUN_HOME (the driver, its fork server and the sweep's owner), resp. kubectl processes,
sampled every 0.1 s.
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
