#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, then runs lint, types and tests.
# Uses the services this machine kind provides: PostgreSQL on 127.0.0.1:5432 (database test)
# and Mosquitto on 127.0.0.1:1883. Tests that need them say so and fail if they are down.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
# torch/torchvision are pinned and installed from this machine's local files.
.venv/bin/pip install -q -e ".[all]"

# Debian's Chromium for the dashboard's browser tests.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

.venv/bin/ruff check src tests
.venv/bin/mypy
.venv/bin/pytest -q "$@"
