#!/usr/bin/env bash
# Installs every Debian 12 package coffer needs to build, test and benchmark.
# Idempotent; runs apt-get update first so a fresh machine works.
set -euo pipefail
[[ $(id -u) == 0 ]] || { echo "install-deps.sh: must run as root" >&2; exit 1; }

BUILD=(build-essential cmake pkg-config git
       libfuse3-dev libcryptsetup-dev libxxhash-dev libzstd-dev librocksdb-dev
       libcurl4-openssl-dev libssl-dev libcli11-dev nlohmann-json3-dev
       libgtest-dev libgmock-dev libbenchmark-dev
       libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev libcrypt-dev zlib1g-dev)
RUNTIME=(fuse3 attr acl xxd jq python3 rsync clang-14 libclang-rt-14-dev busybox-static
         apache2-utils docker.io skopeo podman
         tar-split pigz zstd golang-go)   # tar-split, pigz, golang-go: oracles and encoders in layer tests
BENCH=(restic borgbackup python3-llfuse casync debootstrap docker-registry)   # python3-llfuse: `borg mount`; docker-registry: bench/registry_bench.sh

want=("${BUILD[@]}" "${RUNTIME[@]}")
[[ ${COFFER_WITH_BENCH:-0} == 1 ]] && want+=("${BENCH[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all ${#want[@]} packages present"
