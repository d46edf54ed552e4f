#!/bin/sh
# Container entrypoint: migrate the database, then serve. With arguments, run those instead
# (e.g. `hejie users create ...`), with the same environment.
set -eu

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

# Stops here (set -e) when settings are refused, e.g. HEJIE_SECRET_KEY missing in prod.
hejie db upgrade
exec hejie serve --host 0.0.0.0 --port 8000 --workers "${WORKERS:-2}"
