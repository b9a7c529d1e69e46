# dockrun environment image (uv) -- rendered from templates/env-uv.Dockerfile.j2
FROM python:3.12-slim AS install

ENV UV_NO_CACHE=1 \
    UV_PYTHON_PREFERENCE=only-system \
    UV_PYTHON_DOWNLOADS=never \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /tmp/dockrun/tools \
 && /tmp/dockrun/tools/bin/pip install --quiet uv==0.13.9
COPY requirements.txt /tmp/dockrun/requirements.txt
RUN /tmp/dockrun/tools/bin/uv venv --seed --python python3 /opt/dockrun/venv \
 && VIRTUAL_ENV=/opt/dockrun/venv /tmp/dockrun/tools/bin/uv pip install --requirement /tmp/dockrun/requirements.txt
RUN /opt/dockrun/venv/bin/python -c "import importlib.metadata as m, json, platform, re; \
dists = {re.sub('[-_.]+', '-', d.metadata['Name']).lower(): d.version for d in m.distributions() if d.metadata['Name']}; \
json.dump({'schema': 1, 'installer': 'uv', 'python': platform.python_version(), 'packages': \
[{'name': n, 'version': v, 'source': 'pypi'} for n, v in sorted(dists.items())]}, \
open('/opt/dockrun/installed.json', 'w'), indent=1, sort_keys=True)"

FROM python:3.12-slim
COPY --from=install /opt/dockrun/venv /opt/dockrun/venv
COPY --from=install /opt/dockrun/installed.json /opt/dockrun/installed.json
ENV VIRTUAL_ENV=/opt/dockrun/venv \
    PATH=/opt/dockrun/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1
