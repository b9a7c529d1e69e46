"""The only code that talks to the Docker engine (docker-py, imported lazily): builds, images,
containers. Both image builds and the local backend go through it."""
