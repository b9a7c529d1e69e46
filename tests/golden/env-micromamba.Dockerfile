# dockrun environment image (micromamba) -- rendered from templates/env-micromamba.Dockerfile.j2
FROM mambaorg/micromamba:1.5.10-bookworm-slim AS micromamba

FROM debian:bookworm-slim AS install
COPY dockrun-ca.pem /tmp/dockrun/ca.pem
ENV SSL_CERT_FILE=/tmp/dockrun/ca.pem \
    PIP_CERT=/tmp/dockrun/ca.pem \
    REQUESTS_CA_BUNDLE=/tmp/dockrun/ca.pem \
    CURL_CA_BUNDLE=/tmp/dockrun/ca.pem

USER root
COPY --from=micromamba /bin/micromamba /usr/local/bin/micromamba
COPY environment.yml /tmp/dockrun/environment.yml
ENV MAMBA_ROOT_PREFIX=/opt/dockrun/mamba
RUN micromamba create --yes --prefix /opt/dockrun/conda --file /tmp/dockrun/environment.yml \
 && micromamba clean --all --yes \
 && rm -rf /opt/dockrun/mamba/pkgs

FROM debian:bookworm-slim
USER root
COPY --from=install /opt/dockrun/conda /opt/dockrun/conda
ENV CONDA_PREFIX=/opt/dockrun/conda \
    PATH=/opt/dockrun/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1
