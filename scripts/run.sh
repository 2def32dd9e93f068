#!/usr/bin/env bash
# The main job on an embedded default: install what is missing, build (Release),
# create a repository under ./var with a generated key file (first run only), and
# print its statistics. `coffer serve` replaces the last step once the registry lands.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
mkdir -p var && chmod 700 var
if [[ ! -f var/repo/config ]]; then
  build/bin/coffer init --repo var/repo --key-file var/coffer.key
fi
build/bin/coffer stats --repo var/repo --key-file var/coffer.key
