"""`python -m dockrun`: the same entry point as the `dockrun` command."""
from .warmstart.client import main

main()
