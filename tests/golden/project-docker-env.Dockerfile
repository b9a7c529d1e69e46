# dockrun project image -- rendered from templates/project.Dockerfile.j2
# The code layer sits on top of the environment image, so a code change never reinstalls the
# environment. Files are world-writable so the run, as the calling user, can write beside them.
FROM ghcr.io/org/img:1.2
COPY project/ /project/
WORKDIR /project
ENV PYTHONUNBUFFERED=1
