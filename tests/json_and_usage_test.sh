#!/usr/bin/env bash
# --json: every reporting command prints exactly one valid JSON document on stdout
# (and nothing on stderr), errors included (an object with error and exit_code).
# Usage errors exit 64; a missing repository is a clear error.
source "$(dirname "$0")/lib.sh"

R=$T/repo
printf 'json test passphrase\n' >"$R.pass"
CF=("$COFFER" --repo "$R" --passphrase-file "$R.pass")  # no -q: --json alone must silence progress

# one_json WHAT JQ_TEST CMD...: exit 0, stdout is exactly one JSON document
# (python3 -m json.tool rejects anything after the first), stderr is empty, and
# jq -e JQ_TEST holds for it.
one_json() {
  local what=$1 test=$2
  shift 2
  expect_ok "$what" "$@"
  json_doc "$what" "$test"
  [[ -z $ERR ]] || fail "$what --json wrote to stderr: $ERR"
}
json_doc() {  # json_doc WHAT JQ_TEST: checks $OUT
  [[ -n $OUT ]] || fail "$1 --json printed nothing"
  python3 -m json.tool <"$T/.run.out" >/dev/null 2>"$T/json.err" ||
    fail "$1 --json did not print exactly one JSON document: $(cat "$T/json.err"); stdout: ${OUT:0:1000}"
  [[ $(wc -l <"$T/.run.out") == 1 ]] || fail "$1 --json printed $(wc -l <"$T/.run.out") lines, want one"
  jq -e "$2" <"$T/.run.out" >/dev/null || fail "$1 --json: '$2' does not hold for ${OUT:0:1000}"
}

one_json "init" '.repository == "'"$R"'"' "${CF[@]}" --json init --kdf-memory 8192 --kdf-iterations 4
S=$T/src
mkdir -p "$S/d"
rand_file "$S/d/f" 300000
echo small >"$S/s"
one_json "put" '(.digest | test("^sha256:[0-9a-f]{64}$")) and .size == 300000 and .new_bytes == 300000' "${CF[@]}" --json put "$S/d/f"
d=$(jq -r .digest <<<"$OUT")
one_json "put -" '.size == 6' "${CF[@]}" --json put - <<<"small"
one_json "blobs" 'type == "array" and length == 2 and (map(.digest) | index("'"$d"'")) != null' "${CF[@]}" --json blobs
one_json "backup" '.set == "j" and (.id | test("^[0-9a-f]{16}$")) and .files == 2 and .dirs == 2 and .bytes == 300006 and .files_read == 2 and (.paths == ["'"$S"'"]) and (.host | length > 0) and (.time_ns > 0) and .new_bytes >= 0' \
  "${CF[@]}" --json backup --set j "$S"
id=$(jq -r .id <<<"$OUT")
one_json "snapshots" 'type == "array" and length == 1 and .[0].id == "'"$id"'" and .[0].set == "j"' "${CF[@]}" --json snapshots
one_json "snapshots --set" 'length == 0' "${CF[@]}" --json snapshots --set other
one_json "restore" '.restored == "j@'"$id"'" and .target == "'"$T/out"'" and .files == 2 and .bytes == 300006' "${CF[@]}" --json restore j "$T/out"
one_json "stats" '.blobs == 2 and .snapshots == 1 and .logical_bytes == 600012 and .chunks > 0 and .packs > 0 and .stored_bytes > 0 and .repo_bytes >= .stored_bytes and .dedup_ratio >= 1.9' "${CF[@]}" --json stats
one_json "check" '.ok == true and .problems == [] and .read_data == false and .packs > 0' "${CF[@]}" --json check
one_json "check --read-data" '.ok == true and .problems == [] and .read_data == true and .chunks > 0' "${CF[@]}" --json check --read-data
one_json "key list" 'length == 1 and .[0].slot == 0 and .[0].label == "passphrase" and .[0].kdf == "argon2id"' "${CF[@]}" --json key list
echo "second" >"$T/p2"
one_json "key add" '.slot == 1 and .label == "two"' "${CF[@]}" --json key add --new-passphrase-file "$T/p2" --label two --kdf-memory 8192 --kdf-iterations 4
one_json "key remove" '.removed_slot == 1' "${CF[@]}" --json key remove 1
one_json "key export-header" '.exported_to == "'"$T/hdr"'"' "${CF[@]}" --json key export-header "$T/hdr"
one_json "key restore-header" '.restored_from == "'"$T/hdr"'"' "${CF[@]}" --json key restore-header "$T/hdr"
one_json "forget" '.forgotten == "j@'"$id"'"' "${CF[@]}" --json forget "j@$id"
one_json "gc" '.dead_chunks >= 0 and .live_chunks > 0 and (has("packs_deleted") and has("packs_repacked") and has("bytes_freed"))' "${CF[@]}" --json gc
run "${CF[@]}" --json repair --rebuild-index
# (the exit code is checked separately from the document, so a crash after the
# document was printed is reported without hiding the rest)
((RC == 0)) || fail_later "repair --rebuild-index --json: exit $RC, want 0 (stderr: $ERR)"
json_doc "repair --rebuild-index" '.packs > 0 and .chunks > 0 and .problems == []'

# Errors with --json: a JSON error object on stdout, and the message on stderr.
# json_error WANT_RC WHAT CMD...
json_error() {
  local want=$1 what=$2
  shift 2
  expect_rc "$want" "$what" "$@"
  json_doc "$what" '(.error | type == "string" and length > 0) and .exit_code == '"$want"
  [[ $ERR == "coffer: "* ]] || fail "$what: stderr '$ERR' is not a 'coffer: ' message"
}
json_error 1 "cat of an absent blob" "${CF[@]}" --json cat "sha256:$(printf x | sha256sum | cut -d' ' -f1)"
printf 'wrong\n' >"$T/wrong"
json_error 2 "a wrong passphrase" "$COFFER" --repo "$R" --passphrase-file "$T/wrong" --json blobs
json_error 1 "restore of an absent snapshot" "${CF[@]}" --json restore nosuchset "$T/o2"
json_error 1 "a directory that is no repository" "$COFFER" --repo "$T/nothing" --passphrase-file "$R.pass" --json snapshots
json_error 1 "init over an existing repository" "${CF[@]}" --json init --kdf-memory 8192 --kdf-iterations 4

# Usage errors: exit 64, a message on stderr, nothing done.
usage() {  # usage WHAT ARGS...
  local what=$1
  shift
  expect_rc 64 "$what" "${CF[@]}" "$@"
  [[ -n $ERR ]] || fail "$what: no message on stderr"
}
before=$(repo_fingerprint "$R")
usage "no subcommand"
usage "an unknown subcommand" frobnicate
usage "an unknown subcommand with --json" --json frobnicate
usage "an unknown global option" --frobnicate snapshots
usage "an unknown subcommand option" put --frobnicate "$S/s"
usage "a missing positional" cat
usage "backup without --set" backup "$S"
usage "backup without paths" backup --set j
usage "key without a subcommand" key
usage "key remove without a slot" key remove
usage "repair without --rebuild-index" repair
usage "compression level out of range" init --compression-level 42
usage "a non-number offset" cat --offset abc "$d"
usage "a non-number lock wait" --lock-wait soon snapshots
usage "an extra positional" cat "$d" "$d"
[[ $(repo_fingerprint "$R") == "$before" ]] || fail "a usage error changed the repository"
# A negative --offset (a UINT option) is a usage error, not a silent empty read.
run "${CF[@]}" cat --offset -5 "$d"
((RC == 64)) || fail_later "cat --offset -5: exit $RC with ${#OUT} bytes of output, want 64 (usage: the offset is unsigned)"

expect_ok "--help" "$COFFER" --help
[[ $OUT == *Subcommands:* && $OUT == *backup* && $OUT == *restore* ]] || fail "--help output: $OUT"
expect_ok "put --help" "$COFFER" put --help
[[ $OUT == *"sha256:<hex>"* ]] || fail "put --help output: $OUT"
expect_ok "--version" "$COFFER" --version
[[ $OUT =~ ^coffer\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "--version printed '$OUT'"

# No repository given at all: a clear message naming both ways to give one.
run env -u COFFER_REPO "$COFFER" --passphrase-file "$R.pass" snapshots
((RC == 1 || RC == 64)) || fail "no --repo and no COFFER_REPO: exit $RC, want 1 (or 64)"
[[ $ERR == *"--repo"* && $ERR == *"COFFER_REPO"* ]] || fail "no --repo and no COFFER_REPO: stderr '$ERR' does not say how to give one"
run env -u COFFER_REPO "$COFFER" check
((RC == 1 || RC == 64)) && [[ $ERR == *COFFER_REPO* ]] || fail "check without a repository: exit $RC, stderr '$ERR'"
# COFFER_REPO is used when --repo is absent; --repo wins over it.
expect_ok "COFFER_REPO" env COFFER_REPO="$R" "$COFFER" --passphrase-file "$R.pass" --json blobs
expect_ok "--repo over COFFER_REPO" env COFFER_REPO="$T/nothing" "$COFFER" --repo "$R" --passphrase-file "$R.pass" --json blobs
pass
