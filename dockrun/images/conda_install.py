"""The conda installer of the environment image's install stage (templates/env-conda.Dockerfile.j2).

Runs inside the build, with only the standard library and py-rattler (installed from PyPI by the
template, pinned there), so the conda path needs no micromamba image and no conda channel other
than the project's own. Never imported by dockrun on the host.

    python conda_install.py ENVIRONMENT_JSON PREFIX

ENVIRONMENT_JSON is dockrun's canonical environment file as JSON ({"channels": [...],
"dependencies": ["spec", ..., {"pip": [...]}]}, channels already renamed by
DOCKRUN_CONDA_CHANNEL_MAP). Failures print one ``dockrun-check:`` line, which dockrun reports.
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


async def install(specs: list[str], channels: list[str], prefix: str) -> None:
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
    # The host's CA bundle arrives as SSL_CERT_FILE; "system" roots read it (and only it, when set).
    # Proxies are read from HTTP(S)_PROXY by the HTTP client itself.
    try:
        client = rattler.Client.from_config(rattler.Config.from_toml('tls-root-certs = "system"'))
    except ValueError as e:
        fail(f"conda environment: no usable CA certificates (SSL_CERT_FILE={os.environ.get('SSL_CERT_FILE')}): {e}")
    cache = tempfile.mkdtemp(prefix="dockrun-conda-")
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
    # Post-link scripts run as under conda; the build container is their sandbox.
    await rattler.install(records, target_prefix=prefix, cache_dir=os.path.join(cache, "pkgs"),
                          execute_link_scripts=True, show_progress=False, client=client)
    for r in sorted(records, key=lambda r: r.name.normalized):
        print(f"installed {r.name.normalized} {r.version} {r.build} ({r.channel})", flush=True)


def install_pip(requirements: list[str], prefix: str) -> None:
    python = os.path.join(prefix, "bin", "python")
    if not os.path.exists(python):
        fail("conda environment: a pip: section needs python in the conda dependencies "
             "(add python to dependencies, or move the packages out of pip:)")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("".join(r + "\n" for r in requirements))
    r = subprocess.run([python, "-m", "pip", "install", "--no-cache-dir", "--requirement", f.name])
    if r.returncode:
        fail(f"conda environment: pip: installing {', '.join(requirements)} failed (see the output above)")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        fail("usage: conda_install.py ENVIRONMENT_JSON PREFIX")
    with open(argv[0], encoding="utf-8") as f:
        env = json.load(f)
    specs = [d for d in env.get("dependencies", []) if isinstance(d, str)]
    pip = [r for d in env.get("dependencies", []) if isinstance(d, dict) for r in d.get("pip", [])]
    os.makedirs(argv[1], exist_ok=True)  # an environment with no packages is still a prefix to copy
    if specs:
        asyncio.run(install(specs, list(env.get("channels", [])), argv[1]))
    if pip:
        install_pip(pip, argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
    # rattler's native runtime can abort the interpreter's own shutdown ("PyGILState_Release ...
    # finalizing", exit 134) after everything was installed: the work is done, so leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
