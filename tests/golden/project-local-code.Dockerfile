# dockrun project image -- rendered from templates/project.Dockerfile.j2
# The code layer sits on top of the environment image, so a code change never reinstalls the
# environment. Files are world-writable so the run, as the calling user, can write beside them.
FROM dockrun-env:7d5d1fcc7932d1b2ea8a6f8384a362ab AS install
COPY dockrun-ca.pem /tmp/dockrun/ca.pem
ENV SSL_CERT_FILE=/tmp/dockrun/ca.pem \
    PIP_CERT=/tmp/dockrun/ca.pem \
    REQUESTS_CA_BUNDLE=/tmp/dockrun/ca.pem \
    CURL_CA_BUNDLE=/tmp/dockrun/ca.pem
ARG PIP_INDEX_URL
ARG UV_DEFAULT_INDEX

COPY project/ /project/
RUN cd /project && /opt/dockrun/venv/bin/python -m pip install --quiet --no-cache-dir --disable-pip-version-check \
    -e . \
    ./libs/helper

FROM dockrun-env:7d5d1fcc7932d1b2ea8a6f8384a362ab
COPY --from=install /opt/dockrun/venv /opt/dockrun/venv
COPY project/ /project/
WORKDIR /project
ENV PYTHONUNBUFFERED=1
