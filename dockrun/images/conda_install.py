"""The conda installer of the environment image's install stage (templates/env-conda.Dockerfile.j2).

Runs inside the build, with only the standard library and py-rattler (installed from PyPI by the
template, pinned there), so the conda path needs no micromamba image and no conda channel other
than the project's own. Never imported by dockrun on the host.

    python conda_install.py ENVIRONMENT_JSON PREFIX RECORD [LOCK]   install (a build)
    python conda_install.py --lock ENVIRONMENT_JSON                 resolve only (`dockrun lock`)

ENVIRONMENT_JSON is dockrun's canonical environment file as JSON ({"channels": [...],
"dependencies": ["spec", ..., {"pip": [...]}]}, channels already renamed by
DOCKRUN_CONDA_CHANNEL_MAP). With LOCK (conda's explicit format, ``URL#MD5`` lines, as `--lock`
prints them) exactly those packages are installed, nothing is solved, and a package whose MD5
differs from its channel's is refused. RECORD gets what was installed (dockrun's installed.json:
Python, every package, the explicit list). Failures print one ``dockrun-check:`` line, which
dockrun reports.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile

# conda's meaning of a bare name: a channel on anaconda.org; `defaults` is Anaconda's own pair.
CHANNEL_ALIAS = "https://conda.anaconda.org/"
DEFAULTS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")


def channel_urls(name: str) -> list[str]:
    if "://" in name:
        return [name.rstrip("/")]
    if name == "defaults":
        return list(DEFAULTS)
    return [CHANNEL_ALIAS + name.strip("/")]


def fail(message: str) -> None:
    # Only the last dockrun-check line is shown: keep it one line.
    print("dockrun-check: " + " ".join(message.split())[:600], flush=True)
    sys.stderr.flush()
    os._exit(1)  # not sys.exit: see the end of this file


def _client():
    import rattler

    # The host's CA bundle arrives as SSL_CERT_FILE; "system" roots read it (and only it, when set).
    # Proxies are read from HTTP(S)_PROXY by the HTTP client itself.
    try:
        return rattler.Client.from_config(rattler.Config.from_toml('tls-root-certs = "system"'))
    except ValueError as e:
        fail(f"conda environment: no usable CA certificates (SSL_CERT_FILE={os.environ.get('SSL_CERT_FILE')}): {e}")


async def solve(specs: list[str], channels: list[str], client, cache: str) -> list:
    import rattler

    matchspecs = []
    for text in specs:
        try:
            matchspecs.append(rattler.MatchSpec(text))
        except Exception as e:  # noqa: BLE001 - rattler raises its own family; all mean "bad spec"
            fail(f"conda environment: dependencies: {text!r} is not a conda package spec ({e})")
    sources: list[str] = []
    for name in channels:
        sources += [u for u in channel_urls(name) if u not in sources]
    for spec in matchspecs:  # `channel::pkg` names a channel the list may not have, as conda allows
        if spec.channel is not None and spec.channel.base_url.rstrip("/") not in sources:
            sources.append(spec.channel.base_url.rstrip("/"))
    if not sources:
        fail("conda environment: channels: no channel given (conda.yaml needs e.g. channels: [conda-forge])")
    gateway = rattler.Gateway(cache_dir=os.path.join(cache, "repodata"), client=client)
    try:
        records = await rattler.solve(
            sources=sources,
            specs=matchspecs,
            gateway=gateway,
            virtual_packages=rattler.VirtualPackage.detect(),
            add_pip_as_python_dependency=True,  # as conda does: an env with python has pip
        )
    except Exception as e:  # noqa: BLE001 - solver and network errors alike end the build
        fail(f"conda environment: cannot install {', '.join(specs)} from {', '.join(sources)}: {e}")
    return records


def read_lock(path: str) -> tuple[str | None, list[tuple[str, str]]]:
    """A conda explicit file: its ``# platform:`` and its (URL, MD5) lines."""
    platform, lines = None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("# platform:"):
                platform = line.split(":", 1)[1].strip()
            elif line and not line.startswith(("#", "@")):
                url, _, md5 = line.partition("#")
                lines.append((url, md5))
    return platform, lines


async def locked_records(path: str, client, cache: str) -> list:
    """The channel's records of exactly the lock's packages (nothing solved)."""
    import rattler

    platform, lines = read_lock(path)
    here = str(rattler.Platform.current())
    if platform and platform != here:
        fail(f"conda-lock.txt was written for {platform}; this build installs for {here} (run `dockrun lock` "
             "on a machine whose engine is that platform)")
    gateway = rattler.Gateway(cache_dir=os.path.join(cache, "repodata"), client=client)
    records = []
    for url, md5 in lines:
        channel, subdir, file_name = url.rsplit("/", 2)
        name = file_name.removesuffix(".conda").removesuffix(".tar.bz2").rsplit("-", 2)[0]
        try:
            found = await gateway.query([channel], [subdir], [name], recursive=False)
        except Exception as e:  # noqa: BLE001 - network and channel errors alike end the build
            fail(f"conda-lock.txt: cannot read the channel {channel} for {file_name}: {e}")
        match = [r for group in found for r in group if r.file_name == file_name]
        if not match:
            fail(f"conda-lock.txt: {url} is not in its channel any more")
        if md5 and (match[0].md5 or b"").hex() != md5:
            fail(f"conda-lock.txt: {file_name}: MD5 {md5} in the lock, {(match[0].md5 or b'').hex()} in the channel")
        records.append(match[0])
    return records


def explicit(records: list) -> str:
    """conda's explicit format (as `conda list --explicit --md5` prints it), in install order."""
    import rattler

    by_id = {(r.name.normalized, str(r.version), str(r.build)): r for r in records}
    ordered = [by_id[(p.name.normalized, str(p.version), str(p.build))]  # the sort returns PackageRecords
               for p in rattler.RepoDataRecord.sort_topologically(records)]
    urls = [f"{r.url}#{(r.md5 or b'').hex()}" for r in ordered]
    return "".join(line + "\n" for line in [f"# platform: {rattler.Platform.current()}", "@EXPLICIT", *urls])


async def install(records: list, prefix: str, client, cache: str) -> None:
    import rattler

    # Post-link scripts run as under conda; the build container is their sandbox.
    await rattler.install(records, target_prefix=prefix, cache_dir=os.path.join(cache, "pkgs"),
                          execute_link_scripts=True, show_progress=False, client=client)
    for r in sorted(records, key=lambda r: r.name.normalized):
        print(f"installed {r.name.normalized} {r.version} {r.build} ({r.channel})", flush=True)


async def solve_and_install(specs: list[str], channels: list[str], prefix: str, lock: str | None,
                            cache: str) -> list:
    client = _client()
    records = await (locked_records(lock, client, cache) if lock else solve(specs, channels, client, cache))
    await install(records, prefix, client, cache)
    return records


# Run by the environment's own python: every distribution it sees, and its version.
_PYPI = """import importlib.metadata as m, json, platform
print(json.dumps({"python": platform.python_version(), "dists": sorted(
    [d.metadata["Name"], d.version, (d.read_text("INSTALLER") or "").strip()]
    for d in m.distributions() if d.metadata["Name"])}))"""


def write_record(records: list, prefix: str, path: str) -> None:
    """What the prefix holds, for dockrun (installed.json): the conda packages (URL and hashes)
    and what pip added on top."""
    conda = [{"name": r.name.normalized, "version": str(r.version), "build": str(r.build),
              "channel": str(r.channel or ""), "url": str(r.url), "md5": (r.md5 or b"").hex(),
              "sha256": (r.sha256 or b"").hex(), "source": "conda"} for r in records]
    python = next((p["version"] for p in conda if p["name"] == "python"), None)
    pypi = []
    interpreter = os.path.join(prefix, "bin", "python")
    if python and os.path.exists(interpreter):
        seen = {p["name"] for p in conda}
        out = subprocess.run([interpreter, "-c", _PYPI], capture_output=True, text=True)
        if out.returncode == 0:
            for name, version, installer in json.loads(out.stdout)["dists"]:
                key = name.lower().replace("_", "-").replace(".", "-")
                if installer != "conda" and key not in seen:
                    pypi.append({"name": key, "version": version, "source": "pypi"})
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"schema": 1, "installer": "conda", "python": python,
                   "packages": sorted(conda + pypi, key=lambda p: (p["name"], p["source"])),
                   "explicit": explicit(records) if records else ""}, f, indent=1, sort_keys=True)


def install_pip(requirements: list[str], prefix: str) -> None:
    python = os.path.join(prefix, "bin", "python")
    if not os.path.exists(python):
        fail("conda environment: a pip: section needs python in the conda dependencies "
             "(add python to dependencies, or move the packages out of pip:)")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("".join(r + "\n" for r in requirements))
    # pip's cache: PIP_CACHE_DIR (dockrun's build container) or none (PIP_NO_CACHE_DIR, the classic build).
    r = subprocess.run([python, "-m", "pip", "install", "--requirement", f.name])
    if r.returncode:
        fail(f"conda environment: pip: installing {', '.join(requirements)} failed (see the output above)")


def main(argv: list[str]) -> None:
    lock_only = argv[:1] == ["--lock"]
    if not (lock_only and len(argv) == 2) and len(argv) not in (3, 4):
        fail("usage: conda_install.py ENVIRONMENT_JSON PREFIX RECORD [LOCK] | --lock ENVIRONMENT_JSON")
    with open(argv[1] if lock_only else argv[0], encoding="utf-8") as f:
        env = json.load(f)
    specs = [d for d in env.get("dependencies", []) if isinstance(d, str)]
    pip = [r for d in env.get("dependencies", []) if isinstance(d, dict) for r in d.get("pip", [])]
    # DOCKRUN_CONDA_CACHE: the package cache that dockrun's build container keeps on the engine
    # (repodata and package archives, shared by builds); else a fresh folder, gone with the stage.
    cache = os.environ.get("DOCKRUN_CONDA_CACHE") or tempfile.mkdtemp(prefix="dockrun-conda-")
    if lock_only:  # the explicit list on stdout, and nothing else there
        records = asyncio.run(solve(specs, list(env.get("channels", [])), _client(), cache)) if specs else []
        sys.stdout.write(explicit(records))
        return
    prefix, record = argv[1], argv[2]
    os.makedirs(prefix, exist_ok=True)  # an environment with no packages is still a prefix to copy
    records: list = []
    if len(argv) == 4 or specs:
        records = asyncio.run(solve_and_install(specs, list(env.get("channels", [])), prefix,
                                                argv[3] if len(argv) == 4 else None, cache))
    if pip:
        install_pip(pip, prefix)
    write_record(records, prefix, record)


if __name__ == "__main__":
    main(sys.argv[1:])
    # rattler's native runtime can abort the interpreter's own shutdown ("PyGILState_Release ...
    # finalizing", exit 134) after everything was installed: the work is done, so leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
