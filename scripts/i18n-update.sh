#!/usr/bin/env bash
# Re-extract translatable text and merge it into the zh_CN catalog (then translate the new entries).
# Domain errors and validation messages are extracted by their constructor names.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pybabel extract -F babel.cfg --no-location --omit-header \
  -k _ -k N_ -k Invalid -k Conflict -k NotFound -k Forbidden -k Unauthenticated \
  -k RateLimited -k PayloadTooLarge -k CsrfFailed -k ValueError \
  -o frontend/locale/messages.pot .
.venv/bin/pybabel update -i frontend/locale/messages.pot -d frontend/locale -l zh_CN --no-fuzzy-matching
