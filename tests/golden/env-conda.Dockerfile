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
ENV PIP_NO_CACHE_DIR=1
COPY tools.sh /tmp/dockrun/in/tools.sh
RUN sh /tmp/dockrun/in/tools.sh
COPY env.sh conda_install.py environment.json /tmp/dockrun/in/
RUN sh /tmp/dockrun/in/env.sh

FROM debian:bookworm-slim
USER root
RUN set -e; wanted='libgomp1'; required=''; missing=''; \
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then \
  if [ -n "$required" ]; then echo "dockrun-check: apt.txt asks for $required, but the base image has no apt-get; use a Debian or Ubuntu based image (--base-image)"; exit 1; fi; \
  echo "dockrun: no apt-get in the base image; OS packages ($wanted) not checked"; exit 0; \
fi; \
for p in $wanted; do dpkg-query -W -f='${Status}' "${p%%=*}" 2>/dev/null | grep -q ' installed$' || missing="$missing $p"; done; \
if [ -n "$missing" ]; then \
  opts=''; lock=''; \
  if [ -n "${DOCKRUN_APT_CACHE:-}" ]; then mkdir -p "$DOCKRUN_APT_CACHE/cache/archives/partial" "$DOCKRUN_APT_CACHE/lists/partial"; \
    opts="-o Dir::Cache=$DOCKRUN_APT_CACHE/cache -o Dir::State::Lists=$DOCKRUN_APT_CACHE/lists"; \
    if command -v flock >/dev/null 2>&1; then lock="flock $DOCKRUN_APT_CACHE/.lock"; fi; fi; \
  if [ -n "${SSL_CERT_FILE:-}" ]; then opts="$opts -o Acquire::https::CAInfo=$SSL_CERT_FILE"; fi; \
  echo "dockrun: installing OS packages:$missing"; \
  DEBIAN_FRONTEND=noninteractive $lock sh -c "apt-get $opts update -qq && apt-get $opts install -y -qq --no-install-recommends $missing" \
  || { echo "dockrun-check: installing the OS packages$missing with apt-get failed (see the lines above)"; exit 1; }; \
  if [ -z "${DOCKRUN_APT_CACHE:-}" ]; then apt-get clean; rm -rf /var/lib/apt/lists/*; fi; \
fi
COPY --from=install /opt/dockrun/conda /opt/dockrun/conda
COPY --from=install /opt/dockrun/installed.json /opt/dockrun/installed.json
ENV CONDA_PREFIX=/opt/dockrun/conda \
    PATH=/opt/dockrun/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1
