# PixelTracking image: the API (default command) and the ingestion worker (`pixeltrack worker`).
#
#   docker build -t pixeltracking .
#   docker compose up -d          # the whole stack, see docker-compose.yml and README.md
#
# Two stages: the builder installs the dependencies and the `pixeltrack` console script
# into /opt/venv; the runtime stage is python:slim with that venv, the code and no
# compiler, running as an unprivileged user (uid 10001).
#
# The code lives in /app next to alembic/, alembic.ini and sample.json: app/migrations.py
# finds them in the parent directory of the `app` package. The package is installed in
# editable mode pointing at /app/app, so the same paths are used in both stages.

ARG PYTHON_VERSION=3.11

# --- builder ------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /app

# Dependencies first, from pyproject.toml alone: this layer is reused while only code changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && pip install -r /tmp/requirements.txt

# The project itself: the `pixeltrack` console script, importing `app` from /app/app.
COPY README.md ./
COPY app/ ./app/
RUN pip install --no-deps -e . \
 && pixeltrack --help >/dev/null

# --- runtime ------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="PixelTracking" \
      org.opencontainers.image.description="Self-hosted email open and click tracking API"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# uvicorn trusts X-Forwarded-For only from FORWARDED_ALLOW_IPS: by default from nobody
# (its own default would trust 127.0.0.1). See .env.example.
ENV FORWARDED_ALLOW_IPS=""

# Fixed uid/gid so volumes and Kubernetes' runAsNonRoot see the same numeric user.
# /data is the working directory: relative paths from .env (SQLITE_PATH, SECRETS_FILE)
# land there, the only place besides /tmp this user can write.
RUN groupadd --system --gid 10001 pixeltrack \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin pixeltrack \
 && install -d -o 10001 -g 10001 -m 0750 /data \
 && install -d -o 10001 -g 10001 -m 0700 /tmp/prometheus-multiproc

COPY --from=builder /opt/venv /opt/venv

# Code, migrations and seed data side by side (root-owned, read-only for the app user).
WORKDIR /app
COPY app/ /app/app/
COPY alembic/ /app/alembic/
COPY alembic.ini sample.json /app/
RUN python -m compileall -q /app/app /app/alembic \
 && pixeltrack --help >/dev/null

WORKDIR /data
USER 10001:10001

EXPOSE 8000

# The api's probe; the worker service in docker-compose.yml replaces it with its metrics port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status == 200 else 1)"]

# Migrate, then serve the app behind the tracking fast path with several workers
# (no --reload). The same line as `command:` of the api service in docker-compose.yml.
# `exec` makes uvicorn PID 1 so it receives SIGTERM and shuts its workers down cleanly.
CMD ["sh", "-c", "pixeltrack migrate && exec uvicorn app.main:create_asgi --factory --host 0.0.0.0 --port 8000 --workers 4 --no-server-header"]
