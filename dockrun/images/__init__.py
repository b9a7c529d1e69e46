"""Images: the environment a project runs in (EnvSpec, its kind from the table in kinds.py, its
environment and image keys), the Dockerfile templates, which images a run needs (the plan), and
building or pulling what is missing."""
