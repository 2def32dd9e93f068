#!/usr/bin/env bash
# A wrong passphrase or key file: exit 2, one line on stderr that says so, and the
# repository is not touched (byte-identical before and after), for readers and
# writers alike. The other ways to give the secret work: COFFER_PASSPHRASE,
# --key-file; no secret and no terminal is a clear error, exit 1.
source "$(dirname "$0")/lib.sh"

R=$T/repo
new_repo "$R"
rand_file "$T/data" 300000
expect_ok "put" cf "$R" put "$T/data"
d=$OUT
expect_ok "backup" cf "$R" backup --set s "$T/data"
printf 'definitely not it\n' >"$T/wrong"
before=$(repo_fingerprint "$R")

# wrong_secret WHAT ARGS...: the command must fail with exit 2, one line on stderr.
wrong_secret() {
  local what=$1
  shift
  expect_rc 2 "$what with a wrong secret" "$@"
  [[ $(wc -l <"$T/.run.err") == 1 ]] || fail "$what with a wrong secret: want exactly one line on stderr, got: $ERR"
  [[ $ERR == *"wrong passphrase"* ]] || fail "$what with a wrong secret: stderr '$ERR' does not mention 'wrong passphrase'"
}
W=(--repo "$R" --passphrase-file "$T/wrong" -q)
wrong_secret "cat" "$COFFER" "${W[@]}" cat "$d"
[[ -z $OUT ]] || fail "cat with a wrong passphrase wrote to stdout"
wrong_secret "put" "$COFFER" "${W[@]}" put "$T/data"
wrong_secret "backup" "$COFFER" "${W[@]}" backup --set s "$T/data"
wrong_secret "snapshots" "$COFFER" "${W[@]}" snapshots
wrong_secret "restore" "$COFFER" "${W[@]}" restore s "$T/never"
[[ ! -e $T/never ]] || fail "restore with a wrong passphrase created its target directory"
wrong_secret "gc" "$COFFER" "${W[@]}" gc
wrong_secret "forget" "$COFFER" "${W[@]}" forget s@latest
wrong_secret "check --read-data" "$COFFER" "${W[@]}" check --read-data
wrong_secret "key add" "$COFFER" "${W[@]}" key add --new-passphrase-file "$T/wrong" --kdf-memory 8192 --kdf-iterations 4
wrong_secret "COFFER_PASSPHRASE=wrong put" env COFFER_PASSPHRASE=wrong "$COFFER" --repo "$R" -q put "$T/data"
wrong_secret "--key-file (wrong) cat" "$COFFER" --repo "$R" --key-file "$T/data" -q cat "$d"
# A passphrase file with the right passphrase plus extra bytes is wrong, too.
{ cat "$R.pass"; echo extra; } >"$T/longer"
wrong_secret "a longer passphrase" "$COFFER" --repo "$R" --passphrase-file "$T/longer" -q cat "$d"
# --json: the error is also a JSON object on stdout.
expect_rc 2 "--json cat with a wrong secret" "$COFFER" "${W[@]}" --json cat "$d"
[[ $(jq -r .exit_code <<<"$OUT") == 2 ]] || fail "--json error object: '$OUT', want exit_code 2"
[[ $(jq -r .error <<<"$OUT") == *"wrong passphrase"* ]] || fail "--json error object: '$OUT'"

after=$(repo_fingerprint "$R")
[[ $after == "$before" ]] || fail "the repository changed after wrong-passphrase attempts:
$(diff <(echo "$before") <(echo "$after"))"

# The right passphrase, from the environment.
pp=$(head -n1 "$R.pass")
expect_ok "cat with COFFER_PASSPHRASE" env COFFER_PASSPHRASE="$pp" "$COFFER" --repo "$R" -q cat "$d"
env COFFER_PASSPHRASE="$pp" "$COFFER" --repo "$R" -q cat "$d" | cmp -s - "$T/data" || fail "cat with COFFER_PASSPHRASE gave other bytes"
# and COFFER_REPO for the directory
expect_ok "snapshots with COFFER_REPO and COFFER_PASSPHRASE" env COFFER_REPO="$R" COFFER_PASSPHRASE="$pp" "$COFFER" -q --json snapshots
[[ $(jq length <<<"$OUT") == 1 ]] || fail "snapshots via the environment lists $(jq length <<<"$OUT") snapshots"
# --passphrase-file wins over a wrong COFFER_PASSPHRASE
expect_ok "--passphrase-file over COFFER_PASSPHRASE" env COFFER_PASSPHRASE=wrong "$COFFER" --repo "$R" --passphrase-file "$R.pass" -q cat "$d"

# A key file: add one, then unlock with it (and only with its exact bytes).
expect_ok "key add --new-key-file" cf "$R" key add --new-key-file "$T/key" --kdf-memory 8192 --kdf-iterations 4
expect_ok "cat with --key-file" "$COFFER" --repo "$R" --key-file "$T/key" -q cat "$d"
"$COFFER" --repo "$R" --key-file "$T/key" -q cat "$d" | cmp -s - "$T/data" || fail "cat with --key-file gave other bytes"
head -c 63 "$T/key" >"$T/key.short"
wrong_secret "a truncated key file" "$COFFER" --repo "$R" --key-file "$T/key.short" -q cat "$d"
# A repository created with a key file.
expect_ok "init --key-file" "$COFFER" --repo "$T/repo2" --key-file "$T/key2" -q init --kdf-memory 8192 --kdf-iterations 4
[[ -s $T/key2 ]] || fail "init --key-file did not generate the key file"
expect_ok "put with the generated key file" "$COFFER" --repo "$T/repo2" --key-file "$T/key2" -q put "$T/data"
[[ $OUT == "$d" ]] || fail "put into the key-file repository printed '$OUT', want $d"
wrong_secret "the other repository's key file" "$COFFER" --repo "$T/repo2" --key-file "$T/key" -q cat "$d"

# No secret at all and no terminal to prompt on: exit 1 and a clear message.
before=$(repo_fingerprint "$R")
expect_rc 1 "no passphrase and no tty" setsid -w "$COFFER" --repo "$R" -q cat "$d" </dev/null
[[ $ERR == *"no passphrase"* && $ERR == *"--passphrase-file"* ]] ||
  fail "no passphrase and no tty: stderr '$ERR' does not explain how to give one"
expect_rc 1 "put, no passphrase and no tty" setsid -w "$COFFER" --repo "$R" -q put "$T/data" </dev/null
[[ $ERR == *"no passphrase"* ]] || fail "put without a passphrase: stderr '$ERR'"
# An empty COFFER_PASSPHRASE counts as none.
expect_rc 1 "empty COFFER_PASSPHRASE and no tty" env COFFER_PASSPHRASE= setsid -w "$COFFER" --repo "$R" -q cat "$d" </dev/null
[[ $ERR == *"no passphrase"* ]] || fail "empty COFFER_PASSPHRASE: stderr '$ERR'"
# A missing or empty passphrase file: exit 1, names the file.
expect_rc 1 "missing passphrase file" "$COFFER" --repo "$R" --passphrase-file "$T/absent" -q cat "$d"
[[ $ERR == *"$T/absent"* ]] || fail "missing passphrase file: stderr '$ERR' does not name it"
: >"$T/emptypass"
expect_rc 1 "empty passphrase file" "$COFFER" --repo "$R" --passphrase-file "$T/emptypass" -q cat "$d"
[[ $ERR == *"empty"* ]] || fail "empty passphrase file: stderr '$ERR'"
after=$(repo_fingerprint "$R")
[[ $after == "$before" ]] || fail "the repository changed after attempts without a passphrase"
pass
