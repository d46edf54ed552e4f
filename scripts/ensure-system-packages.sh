#!/usr/bin/env bash
# Install the Debian packages Hejie needs, when they are missing (as root; otherwise say what to
# install). `run`: what `make run` needs; `test`: that plus what the test suite needs (the tests
# start their own PostgreSQL and Redis servers from their binaries, and drive Debian's Chromium).
set -euo pipefail
purpose="${1:-test}"
python="${PYTHON:-python3}"

missing=()
if ! "$python" -c "import venv, ensurepip" >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ "$purpose" = "test" ]; then
  if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
  fi
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  # Chinese text in the browser tests' screenshots and layout.
  if ! ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1; then
    missing+=(fonts-noto-cjk)
  fi
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]} — install them (e.g. sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
