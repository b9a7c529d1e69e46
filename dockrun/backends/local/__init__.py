"""The local backend: the project's image on this machine's Docker engine, one supervisor process
per run. backend.py is the seam, runs.py submits and follows runs, container.py plans the
container as data, launch.py and supervisor.py start and own it. Kept import-free so that a
supervisor, which imports only what it needs, starts fast."""
