# syntax=docker/dockerfile:1
# Hejie 和解: the web application, for PostgreSQL in production.
#
#   docker build -t hejie .
#   docker run -p 8000:8000 -v hejie-data:/data \
#     -e HEJIE_SECRET_KEY="$(openssl rand -base64 48)" \
#     -e HEJIE_DATABASE_URL=postgresql://hejie:PASSWORD@db:5432/hejie \
#     hejie
#
# The entrypoint brings the schema to the latest revision, then serves. Any other command runs
# instead, e.g. `docker run --rm -it ... hejie hejie users create --role admin --username ops`.
# Behind a reverse proxy, set FORWARDED_ALLOW_IPS to its address so client IPs are trusted.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HEJIE_ENV=prod \
    HEJIE_DATA_DIR=/data \
    WORKERS=2

RUN groupadd --system --gid 10001 hejie \
    && useradd --system --uid 10001 --gid hejie --create-home --home-dir /home/hejie \
        --shell /usr/sbin/nologin hejie

WORKDIR /app

# The code finds frontend/, migrations/ and alembic.ini next to app/, so the project is
# installed in place (editable), not copied into site-packages. Dependencies come first, in
# their own layer, from pyproject.toml alone: they change far less often than the code.
COPY pyproject.toml ./
RUN mkdir app && touch app/__init__.py \
    && pip install --editable . \
    && rm -rf app

COPY app/ app/
COPY migrations/ migrations/
COPY frontend/ frontend/
COPY alembic.ini ./
# Compiled now, as root: at run time the code is read-only to the app's user.
RUN python -m compileall -q app migrations
COPY --chmod=0755 docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

# Uploaded documents (and SQLite, if no database URL is given) live in the data volume; a
# bind-mounted directory must be writable by uid 10001.
RUN mkdir -p /data && chown hejie:hejie /data
VOLUME ["/data"]

USER 10001:10001
EXPOSE 8000

# No curl in the slim image; urlopen raises on anything but 2xx, which fails the check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["docker-entrypoint.sh"]
