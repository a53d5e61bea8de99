# syntax=docker/dockerfile:1
# letta-exporter image. Checked by `hadolint Dockerfile` and tests/test_dockerfile.py.
#
#   docker build -t letta-exporter .
#   docker run -p 9834:9834 -e LETTA_BASE_URL=http://letta:8283 -v letta-exporter:/var/lib/letta-exporter letta-exporter
#
# Both stages use the same base image: the venv copied from the first stage links to that
# image's /usr/local/bin/python3.

# ---- Build stage: turn the source into a wheel and install it into a venv.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# The wheel is built with the image's own pip (build backend fetched in an isolated env),
# so no build tool ends up in /venv, which holds the exporter and its dependencies only.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
 && python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir /dist/*.whl

# ---- Runtime stage: the venv, a numeric non-root user and the state volume.
FROM python:3.11-slim-bookworm
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
