#!/usr/bin/env bash
# The main job on an embedded default: install what is missing, build (Release),
# and run `coffer serve`: a repository under ./var (created on the first run with
# a generated key file, var/coffer.key), mounted at ./var/mnt, and the OCI
# registry on 127.0.0.1:5000. Ctrl-C stops it cleanly (every head saved, unmounted).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
exec build/bin/coffer serve "$@"
