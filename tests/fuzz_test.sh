#!/usr/bin/env bash
# Builds the libFuzzer targets with Debian's clang-14 (ASan+UBSan) and runs each
# for a short time from the checked-in seed corpus. A crash fails the test and
# leaves the reproducer in the work dir; add it to tests/fuzz/corpus/<target>/ as
# a regression input. Usage: fuzz_test.sh [SECONDS_PER_TARGET]
set -euo pipefail
SECS=${1:-20}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
W=$(mktemp -d /tmp/coffer-fuzz-XXXXXX); trap 'rm -rf "$W"' EXIT
CXX=clang++-14
command -v $CXX >/dev/null || { echo "FAIL: clang++-14 missing (scripts/install-deps.sh installs it)"; exit 1; }
SRC="$ROOT/chunkstore/src"
LIB=("$SRC/format.cc" "$SRC/crypto.cc" "$SRC/secret.cc" "$SRC/tree.cc" "$SRC/roots.cc"
     "$ROOT/chunkstore/src/status.cc")
FLAGS=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -I"$ROOT/chunkstore/include" -I"$SRC")
LIBS=(-lzstd -lxxhash -lcrypto)
# Seeds: valid structures made by make_seeds (fresh nonces each run), plus the
# checked-in regression inputs.
clang++-14 -std=c++20 -O1 -I"$ROOT/chunkstore/include" -I"$SRC" "$HERE/fuzz/make_seeds.cc" "${LIB[@]}" \
  "${LIBS[@]}" -o "$W/make_seeds"
"$W/make_seeds" "$W/corpus"
for t in record tree roots; do
  $CXX "${FLAGS[@]}" "$HERE/fuzz/fuzz_$t.cc" "${LIB[@]}" "${LIBS[@]}" -o "$W/fuzz_$t"
  mkdir -p "$W/corpus/$t"
  [[ -d $HERE/fuzz/corpus/$t ]] && cp "$HERE/fuzz/corpus/$t"/* "$W/corpus/$t/" 2>/dev/null || true
  (cd "$W" && ./fuzz_"$t" -max_total_time="$SECS" -max_len=65536 -print_final_stats=0 \
     "corpus/$t" >"$W/$t.log" 2>&1) || { echo "FAIL: fuzz_$t found a crash:"; tail -30 "$W/$t.log"; exit 1; }
  echo "fuzz_$t: $(grep -o 'Done [0-9]* runs' "$W/$t.log" || echo ran) in ${SECS}s, no crash"
done
