# dockrun environment image (uv) -- rendered from templates/env-uv.Dockerfile.j2
# The classic builder's path (no package cache): dockrun's build container runs the same scripts
# with a cache (images/cached_build.py) wherever the engine allows it.
FROM python:3.11-slim AS install
COPY dockrun-ca.pem /tmp/dockrun/ca.pem
ENV SSL_CERT_FILE=/tmp/dockrun/ca.pem \
    PIP_CERT=/tmp/dockrun/ca.pem \
    REQUESTS_CA_BUNDLE=/tmp/dockrun/ca.pem \
    CURL_CA_BUNDLE=/tmp/dockrun/ca.pem
ARG PIP_INDEX_URL
ARG UV_DEFAULT_INDEX

ENV UV_NO_CACHE=1 \
    PIP_NO_CACHE_DIR=1
COPY tools.sh /tmp/dockrun/in/tools.sh
RUN sh /tmp/dockrun/in/tools.sh
COPY env.sh requirements.txt /tmp/dockrun/in/
RUN sh /tmp/dockrun/in/env.sh

FROM python:3.11-slim
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
COPY --from=install /opt/dockrun/venv /opt/dockrun/venv
COPY --from=install /opt/dockrun/installed.json /opt/dockrun/installed.json
ENV VIRTUAL_ENV=/opt/dockrun/venv \
    PATH=/opt/dockrun/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1
