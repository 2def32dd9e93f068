#!/usr/bin/env bash
# Installs what is missing, builds (warnings are errors) and runs every test with
# ctest. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCOFFER_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"
cd build && ctest --output-on-failure --timeout 900 -j"$(nproc)"
