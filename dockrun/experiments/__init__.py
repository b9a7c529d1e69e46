"""The experiment faces: run a recorded run again exactly (rerun.py) and run a project over a grid
of parameter values (sweep.py). A package of its own, not modules beside ``dockrun/__init__``,
whose functions ``dockrun.rerun`` and ``dockrun.sweep`` a same-named submodule would replace on
its first import."""
