"""The command line that starts one of dockrun's helper processes (a Kubernetes run's watcher, the
local fork server): ``python -c BOOTSTRAP`` that runs the module as ``python -m`` would, but with
nothing of the working folder importable.

``python -m`` puts the working folder first on ``sys.path``, and dockrun is run from project folders
someone else may have written: a ``json.py`` there would run in a helper that holds the cluster's and
the tracking server's credentials. ``-P`` (3.11+) is not on every Python dockrun supports, and ``-I``
would drop PYTHONPATH and user site-packages, where dockrun may be installed. So the bootstrap drops
the one entry Python added for ``-c`` (the working folder, ``''``) and takes the ``dockrun`` package
from where this process has it (a checkout it was run from, an editable install, PYTHONPATH), without
putting that folder on the path: the helper runs the caller's own code and only it.
"""
from __future__ import annotations

import os
import sys

# dockrun/__init__.py of this very dockrun (two folders up from this file)
PACKAGE_INIT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "__init__.py")

BOOTSTRAP = (
    "import sys\n"
    "if not getattr(sys.flags, 'safe_path', False): del sys.path[0]\n"  # '' for -c: the working folder
    "import importlib.util, os, runpy\n"
    "init, module = sys.argv[1:3]\n"
    "del sys.argv[1:3]\n"
    "if 'dockrun' not in sys.modules:\n"
    "    spec = importlib.util.spec_from_file_location('dockrun', init,\n"
    "        submodule_search_locations=[os.path.dirname(init)])\n"
    "    package = importlib.util.module_from_spec(spec)\n"
    "    sys.modules['dockrun'] = package\n"
    "    spec.loader.exec_module(package)\n"
    "runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
)


def module_command(module: str) -> list[str]:
    """``[python, ...]`` that runs ``module`` (a ``dockrun.*`` module) as its ``__main__``; append its
    arguments."""
    return [sys.executable, "-c", BOOTSTRAP, PACKAGE_INIT, module]
