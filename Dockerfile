# The worker image: `voicelive-worker run` as a non-root user, with only the locked runtime
# dependencies (uv.lock, --frozen; no dev/devstack groups). Built by `azd deploy` in ACR (remote build).

# ---- build: resolve nothing, install exactly what uv.lock pins into /app/.venv ----------------------
FROM python:3.11-slim-bookworm AS build
# uv from PyPI, pinned to the version that wrote uv.lock.
RUN pip install --no-cache-dir --disable-pip-version-check uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first (cached layer while only the code changes).
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-group devstack --no-install-project
# Then the project itself, installed as a wheel (not editable) so the runtime needs no source tree.
COPY worker ./worker
COPY devstack ./devstack
RUN uv sync --frozen --no-dev --no-group devstack --no-editable

# ---- runtime: the venv only, owned by root and run as an unprivileged user -------------------------
FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 worker \
    && useradd --system --uid 10001 --gid worker --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin worker
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTH_PORT=8080
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
# /healthz answers while the event loop is alive (Container Apps uses its own probes from the Bicep;
# this one serves `docker run` and other hosts). No curl in the slim image: use the venv's Python.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HEALTH_PORT', '8080') + '/healthz', timeout=4)"]
ENTRYPOINT ["voicelive-worker"]
CMD ["run"]
