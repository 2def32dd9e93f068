#!/usr/bin/env bash
# A repository straight from `coffer init` (nothing written yet) is a valid,
# empty repository for every reading command: no snapshots, no blobs, zero
# stats, a clean check; restore of anything is "not found". And it stays usable
# for writers afterwards.
source "$(dirname "$0")/lib.sh"

R=$T/repo
new_repo "$R"
# Each reading command is tried; failures are collected so one report lists all.
fresh() {  # fresh WHAT JQ_TEST ARGS...
  local what=$1 test=$2
  shift 2
  run cf "$R" --json "$@"
  if ((RC != 0)); then
    fail_later "$what on a fresh repository: exit $RC, want 0 (stderr: $ERR)"
  elif ! jq -e "$test" <<<"$OUT" >/dev/null 2>&1; then
    fail_later "$what on a fresh repository printed '$OUT'; want $test"
  fi
}
fresh "snapshots" '. == []' snapshots
fresh "blobs" '. == []' blobs
fresh "stats" '.blobs == 0 and .snapshots == 0 and .chunks == 0 and .packs == 0 and .logical_bytes == 0' stats
fresh "check" '.ok == true and .problems == []' check
fresh "check --read-data" '.ok == true and .problems == []' check --read-data
run cf "$R" restore s "$T/out"
[[ $RC == 1 && $ERR == *"not found"* ]] ||
  fail_later "restore on a fresh repository: exit $RC, stderr '$ERR'; want exit 1 and 'snapshot ... not found'"
run cf "$R" cat "sha256:$(printf x | sha256sum | cut -d' ' -f1)"
[[ $RC == 1 && $ERR == *"not found"* ]] ||
  fail_later "cat on a fresh repository: exit $RC, stderr '$ERR'; want exit 1 and 'blob ... not found'"
# gc on an empty repository is a no-op.
expect_ok "gc on a fresh repository" cf "$R" --json gc
[[ $(jq -r '.live_chunks + .dead_chunks + .packs_deleted' <<<"$OUT") == 0 ]] || fail "gc on an empty repository: $OUT"
# After the first write everything works.
echo data >"$T/f"
expect_ok "put" cf "$R" put "$T/f"
expect_ok "snapshots after a put" cf "$R" --json snapshots
[[ $OUT == "[]" ]] || fail "snapshots after a put: $OUT"
expect_ok "check after a put" cf "$R" check --read-data
pass
