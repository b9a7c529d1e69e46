"""Images: the environment a project runs in (EnvSpec and its canonical key), the Dockerfile
templates, which images a run needs (the plan), and building or pulling what is missing."""
