#!/usr/bin/env bash
# Installs what the tests need and runs them all: the TypeScript unit tests, then pytest
# (server, builds, kernels, conda, the Kubernetes stand-in, and the browser tests in Debian's chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q -e ".[test]"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
(cd labextension && jlpm install --immutable >/dev/null && jlpm test)
sh tests/kubernetes_real/get_binaries.sh >/dev/null  # a real control plane: built once (~5-20 min), then cached
python3 -m pytest -q "$@"
