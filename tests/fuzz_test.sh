#!/usr/bin/env bash
# Builds the libFuzzer targets with Debian's clang-14 (ASan+UBSan) and runs each
# for a short time from its seed corpus. A crash fails the test and leaves the
# reproducer in the work dir (printed); add it to tests/fuzz/corpus/<target>/ as
# a regression input. Inputs in tests/fuzz/known/<target>/ reproduce bugs that
# are still open: each is run with COFFER_FUZZ_STRICT=1 and reported (not failed)
# while it still crashes; once it passes, move it into the corpus.
# Usage: fuzz_test.sh [SECONDS_PER_TARGET] [TARGET...]   (default: every target)
#
# Adding a target is one line in TARGETS: its name (tests/fuzz/fuzz_<name>.cc)
# and the library sources it links, as names of the source lists below. Seeds
# come from tests/fuzz/corpus/<name>/ (checked in) plus, for the chunkstore
# structures, valid instances made by make_seeds (fresh nonces each run).
set -euo pipefail
SECS=${1:-20}
shift || true
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
W=$(mktemp -d /tmp/coffer-fuzz-XXXXXX)
KEEP=0
trap '((KEEP)) || rm -rf "$W"' EXIT
CXX=clang++-14
command -v $CXX >/dev/null || { echo "FAIL: clang++-14 missing (scripts/install-deps.sh installs it)"; exit 1; }

# Library sources, by group.
CS="$ROOT/chunkstore/src"
REG="$ROOT/registry/src"
declare -A SOURCES=(
  [chunkstore]="$CS/format.cc $CS/crypto.cc $CS/secret.cc $CS/tree.cc $CS/roots.cc $CS/status.cc"
  [names]="$REG/names.cc $CS/status.cc"
  [manifest]="$REG/manifest.cc $REG/names.cc $CS/status.cc $HERE/fuzz/boost_json_src.cc"
  [tar]="$ROOT/fs/layer/tar.cc $CS/status.cc"
  [tokens]="$ROOT/fs/layer/tokens.cc $CS/status.cc"
  # every registry source but the sockets (server.cc) and tests, so the list
  # follows the registry as it grows
  [handler]="$(ls "$REG"/*.cc | grep -v -e '_test\.cc$' -e '/server\.cc$' | tr '\n' ' ')
             $CS/status.cc $HERE/fuzz/boost_json_src.cc"
)

# name      source lists        max input bytes
TARGETS=(
  "record   chunkstore          65536"
  "tree     chunkstore          65536"
  "roots    chunkstore          65536"
  "names    names               4096"
  "manifest manifest            65536"
  "http     handler             65536"
  "tar      tar                 65536"
  "tokens   tokens              65536"
)

FLAGS=(-std=c++20 -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
       -DBOOST_ASIO_NO_DEPRECATED -I"$ROOT/chunkstore/include" -I"$CS" -I"$REG" -I"$ROOT/registry/include" -I"$ROOT/fs/layer")
LIBS=(-lzstd -lxxhash -lcrypto -lcrypt -lz)

# obj SRC: compiles SRC once (instrumented) and prints the object's path.
obj() {
  local o
  o="$W/obj/$(echo "$1" | sed "s|^$ROOT/||; s|/|_|g").o"
  if [[ ! -f $o ]]; then
    mkdir -p "$W/obj"
    $CXX "${FLAGS[@]}" -c "$1" -o "$o" || { echo "FAIL: compiling $1 for the fuzzers" >&2; exit 1; }
  fi
  echo "$o"
}

# Seeds for the chunkstore structures: valid instances with good checksums.
clang++-14 -std=c++20 -O1 -I"$ROOT/chunkstore/include" -I"$CS" "$HERE/fuzz/make_seeds.cc" \
  ${SOURCES[chunkstore]} "${LIBS[@]}" -o "$W/make_seeds"
"$W/make_seeds" "$W/corpus"

WANT=("$@")
for line in "${TARGETS[@]}"; do
  read -r t lists max <<<"$line"
  if ((${#WANT[@]} > 0)) && [[ " ${WANT[*]} " != *" $t "* ]]; then continue; fi
  objs=()
  for l in ${lists//,/ }; do
    for s in ${SOURCES[$l]}; do objs+=("$(obj "$s")"); done
  done
  $CXX "${FLAGS[@]}" -fsanitize=fuzzer "$HERE/fuzz/fuzz_$t.cc" "${objs[@]}" "${LIBS[@]}" -o "$W/fuzz_$t"
  for k in "$HERE/fuzz/known/$t"/*; do
    [[ -f $k ]] || continue
    if COFFER_FUZZ_STRICT=1 "$W/fuzz_$t" "$k" >"$W/known.log" 2>&1; then
      echo "fuzz_$t: known bug $(basename "$k") no longer reproduces: move it to tests/fuzz/corpus/$t/"
    else
      echo "fuzz_$t: KNOWN OPEN BUG still reproduces: tests/fuzz/known/$t/$(basename "$k")"
    fi
  done
  mkdir -p "$W/corpus/$t"
  if [[ -d $HERE/fuzz/corpus/$t ]]; then cp "$HERE/fuzz/corpus/$t"/* "$W/corpus/$t/" 2>/dev/null || true; fi
  if ! (cd "$W" && ./fuzz_"$t" -max_total_time="$SECS" -max_len="$max" -print_final_stats=0 \
    "corpus/$t" >"$W/$t.log" 2>&1); then
    KEEP=1
    echo "FAIL: fuzz_$t found a crash (work dir $W kept; reproducer: $(ls "$W"/crash-* "$W"/leak-* "$W"/timeout-* 2>/dev/null | tr '\n' ' ')):"
    tail -40 "$W/$t.log"
    exit 1
  fi
  echo "fuzz_$t: $(grep -o 'Done [0-9]* runs' "$W/$t.log" || echo ran) in ${SECS}s, no crash"
done
