# syntax=docker/dockerfile:1
# letta-exporter image. Checked by `hadolint Dockerfile`, tests/test_dockerfile.py and, built
# and run, by tests/test_image.py.
#
#   docker build -t letta-exporter .
#   docker run -p 9834:9834 -e LETTA_BASE_URL=http://letta:8283 -v letta-exporter:/var/lib/letta-exporter letta-exporter
#
# Both stages use the same base image: the venv copied from the first stage links to that
# image's python3. The base is pinned by digest (the tag alone says which Python and Debian
# it is). To bump it: `docker buildx imagetools inspect python:3.11-slim-bookworm` (or
# `skopeo inspect --raw docker://python:3.11-slim-bookworm | sha256sum`), put the index
# digest below, rebuild and run tests/test_image.py. Where Docker Hub cannot be reached,
# tests/image.py passes `--build-arg PYTHON_IMAGE=` a Debian bookworm stand-in.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# ---- Build stage: the locked dependencies, then the exporter's wheel, into a venv.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# Everything installed comes from the hash-checked locks generated from pyproject.toml
# (`python -m tests.image lock`), as wheels only: nothing is compiled here. The build
# tools (setuptools, wheel, cyclonedx-bom) go to /tools; /venv gets no pip, setuptools or
# wheel, only the exporter and what it imports.
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /tools \
 && /tools/bin/pip install --no-cache-dir --require-hashes --only-binary :all: \
      -r requirements-build.lock \
 && python -m venv --without-pip /venv \
 && /tools/bin/pip --python /venv/bin/python install --no-cache-dir --require-hashes \
      --only-binary :all: --no-deps -r requirements.lock
# Wheels ship their extension modules with symbols: 10 MB of /venv's 35 MB of .so files.
# binutils (Debian's, for strip) stays in this stage.
# hadolint ignore=DL3008 # strip does the same whichever binutils build runs it
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && find /venv -name '*.so' -exec strip --strip-unneeded {} +
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# The SBOM (CycloneDX JSON) lists what /venv holds, so it ships inside it.
RUN /tools/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /dist . \
 && /tools/bin/pip --python /venv/bin/python install --no-cache-dir --no-deps /dist/*.whl \
 && /tools/bin/cyclonedx-py environment --pyproject pyproject.toml --of JSON \
      --output-reproducible --output-file /venv/sbom.cdx.json /venv/bin/python

# ---- Runtime stage: the venv, a numeric non-root user and the state volume.
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="letta-exporter" \
      org.opencontainers.image.description="Prometheus metrics and OpenTelemetry traces for Letta agent runs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/letta-exporter/letta-exporter" \
      org.opencontainers.image.url="https://github.com/letta-exporter/letta-exporter" \
      org.opencontainers.image.documentation="https://github.com/letta-exporter/letta-exporter#readme" \
      org.opencontainers.image.licenses="Apache-2.0"
# A named account for uid 65532 (so `ps` and logs show a name); USER below stays numeric so
# Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 65532 letta-exporter \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin letta-exporter \
 && mkdir -p /var/lib/letta-exporter \
 && chown 65532:65532 /var/lib/letta-exporter
COPY --from=build /venv /venv
# PYTHONDONTWRITEBYTECODE: the root filesystem may be read-only (see deploy/kubernetes/).
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LETTA_EXPORTER_STATE_PATH=/var/lib/letta-exporter/state.sqlite
WORKDIR /var/lib/letta-exporter
USER 65532:65532
# The state file (counters, positions, unsent spans) must outlive the container.
VOLUME ["/var/lib/letta-exporter"]
EXPOSE 9834
# No curl/wget in the image: Python asks /healthz itself, on the port of
# LETTA_EXPORTER_WEB_LISTEN_ADDRESS, over HTTP, else over HTTPS when --web.config.file
# turned TLS on (the certificate is not checked: it is our own process on loopback). Any
# failure of both raises, so exit code 1. With mutual TLS it cannot pass: turn it off.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, ssl, urllib.request\nport = os.environ.get('LETTA_EXPORTER_WEB_LISTEN_ADDRESS', ':9834').rpartition(':')[2]\ntry:\n    urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)\nexcept Exception:\n    urllib.request.urlopen(f'https://127.0.0.1:{port}/healthz', timeout=2, context=ssl._create_unverified_context())\n"]
ENTRYPOINT ["/venv/bin/letta-exporter"]
