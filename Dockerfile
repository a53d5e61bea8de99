# syntax=docker/dockerfile:1
# Build stage: turn the source into a wheel and install it into a venv.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /venv
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN /venv/bin/pip install --no-cache-dir build==1.2.2 \
 && /venv/bin/python -m build --wheel --outdir /dist . \
 && /venv/bin/pip uninstall -y build \
 && /venv/bin/pip install --no-cache-dir /dist/*.whl

# Runtime stage: only the venv, a non-root user and a state volume.
FROM python:3.11-slim
LABEL org.opencontainers.image.title="letta-exporter" \
      org.opencontainers.image.description="Prometheus metrics and OpenTelemetry traces for Letta agent runs" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /venv /venv
RUN mkdir -p /var/lib/letta-exporter && chown 65532:65532 /var/lib/letta-exporter
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LETTA_EXPORTER_STATE_PATH=/var/lib/letta-exporter/state.sqlite
USER 65532:65532
VOLUME ["/var/lib/letta-exporter"]
EXPOSE 9834
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9834/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["letta-exporter"]
