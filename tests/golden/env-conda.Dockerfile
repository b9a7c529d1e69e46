# dockrun environment image (conda, installed with py-rattler from PyPI) -- rendered from templates/env-conda.Dockerfile.j2
FROM python:3.12-slim AS install
COPY dockrun-ca.pem /tmp/dockrun/ca.pem
ENV SSL_CERT_FILE=/tmp/dockrun/ca.pem \
    PIP_CERT=/tmp/dockrun/ca.pem \
    REQUESTS_CA_BUNDLE=/tmp/dockrun/ca.pem \
    CURL_CA_BUNDLE=/tmp/dockrun/ca.pem
ARG PIP_INDEX_URL
ARG UV_DEFAULT_INDEX

USER root
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN command -v python3 >/dev/null 2>&1 || { echo "dockrun-check: the image python:3.12-slim has no python3, \
which installs the conda environment; use a base image with python3 >= 3.10 and venv (--base-image)"; exit 1; } \
 && python3 -c "import platform, sys; sys.exit(0 if sys.version_info >= (3, 10) else \
'dockrun-check: the image python:3.12-slim has Python ' + platform.python_version() + \
', the conda installer (py-rattler) needs 3.10 or later; use another base image (--base-image)')"
RUN python3 -m venv /tmp/dockrun/tools \
 && /tmp/dockrun/tools/bin/pip install --quiet py-rattler==0.28.0
COPY conda_install.py environment.json /tmp/dockrun/
RUN /tmp/dockrun/tools/bin/python /tmp/dockrun/conda_install.py /tmp/dockrun/environment.json /opt/dockrun/conda \
    /opt/dockrun/installed.json

FROM debian:bookworm-slim
USER root
COPY --from=install /opt/dockrun/conda /opt/dockrun/conda
COPY --from=install /opt/dockrun/installed.json /opt/dockrun/installed.json
ENV CONDA_PREFIX=/opt/dockrun/conda \
    PATH=/opt/dockrun/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1
