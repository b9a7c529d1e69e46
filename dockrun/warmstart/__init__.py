"""Warm start for `dockrun run`: a per-user helper process that has dockrun imported and forks a
fresh worker for each command, so a run does not pay the interpreter's imports (see client.py)."""
