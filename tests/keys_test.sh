#!/usr/bin/env bash
# Keyslots: add a key file (generated, mode 0400) and a second passphrase, list
# them with labels, unlock with each, remove one (its secret stops working), the
# last one cannot be removed; a header backup brings back a destroyed header.
source "$(dirname "$0")/lib.sh"

R=$T/repo
new_repo "$R"
KDF=(--kdf-memory 8192 --kdf-iterations 4)
rand_file "$T/data" 200000
expect_ok "put" cf "$R" put "$T/data"
d=$OUT

# unlocks_with WHAT ARGS...: cat with these secret options gives the data back.
unlocks_with() {
  local what=$1
  shift
  "$COFFER" --repo "$R" -q "$@" cat "$d" >"$T/cat.out" 2>"$T/cat.err" ||
    fail "unlock with $what failed (exit $?): $(cat "$T/cat.err")"
  cmp -s "$T/cat.out" "$T/data" || fail "unlock with $what: cat gave other bytes"
}
# refused WHAT ARGS...: a wrong-secret refusal (exit 2).
refused() {
  local what=$1
  shift
  expect_rc 2 "unlock with $what" "$COFFER" --repo "$R" -q "$@" cat "$d"
  [[ $ERR == *"wrong passphrase"* ]] || fail "unlock with $what: stderr '$ERR'"
}

K=$T/keyfile
[[ ! -e $K ]] || fail "setup"
expect_ok "key add --new-key-file" cf "$R" --json key add --new-key-file "$K" "${KDF[@]}"
[[ $(jq -r .slot <<<"$OUT") == 1 && $(jq -r .label <<<"$OUT") == key-file ]] || fail "key add --new-key-file reported '$OUT', want slot 1, label key-file"
[[ -f $K ]] || fail "key add --new-key-file did not generate $K"
[[ $(stat -c %a "$K") == 400 ]] || fail "generated key file has mode $(stat -c %a "$K"), want 400"
[[ $(stat -c %s "$K") -ge 32 ]] || fail "generated key file is only $(stat -c %s "$K") bytes"
printf 'second passphrase %s\n' "$RANDOM$RANDOM" >"$T/p2"
expect_ok "key add --new-passphrase-file" cf "$R" --json key add --new-passphrase-file "$T/p2" --label "backup admin" "${KDF[@]}"
[[ $(jq -r .slot <<<"$OUT") == 2 ]] || fail "second key add reported '$OUT', want slot 2"

expect_ok "key list --json" "$COFFER" --repo "$R" --json key list
got=$(jq -r '.[] | "\(.slot)|\(.label)|\(.kdf)"' <<<"$OUT")
want=$'0|passphrase|argon2id\n1|key-file|argon2id\n2|backup admin|argon2id'
[[ $got == "$want" ]] || fail "key list --json:
$got
want
$want"
# plain key list prints one line per slot with the label
expect_ok "key list" "$COFFER" --repo "$R" key list
[[ $(wc -l <<<"$OUT") == 3 && $OUT == *"backup admin"* ]] || fail "key list printed: $OUT"

unlocks_with "the first passphrase" --passphrase-file "$R.pass"
unlocks_with "the key file" --key-file "$K"
unlocks_with "the second passphrase" --passphrase-file "$T/p2"
# A key file's bytes are taken as they are: with a newline appended it is wrong.
{ cat "$K"; echo; } >"$T/key.nl"
refused "the key file plus a newline" --key-file "$T/key.nl"

# Remove slot 0 (authorised by the key file): the first passphrase stops working.
expect_ok "key remove 0" "$COFFER" --repo "$R" --key-file "$K" -q key remove 0
refused "the removed passphrase" --passphrase-file "$R.pass"
unlocks_with "the key file after removing slot 0" --key-file "$K"
unlocks_with "the second passphrase after removing slot 0" --passphrase-file "$T/p2"
expect_ok "key list after remove" "$COFFER" --repo "$R" --json key list
[[ $(jq -c '[.[].slot]' <<<"$OUT") == "[1,2]" ]] || fail "after removing slot 0, key list shows slots $(jq -c '[.[].slot]' <<<"$OUT")"
# The removed passphrase cannot remove anything any more; no such slot: an error.
expect_rc 2 "key remove with the removed passphrase" cf "$R" key remove 1
expect_rc 1 "key remove of an unused slot" "$COFFER" --repo "$R" --key-file "$K" -q key remove 5
[[ $ERR == *"not in use"* ]] || fail "key remove of an unused slot: stderr '$ERR'"

# Down to one: removing the last slot is refused and changes nothing.
expect_ok "key remove 1" "$COFFER" --repo "$R" --passphrase-file "$T/p2" -q key remove 1
refused "the removed key file" --key-file "$K"
hdr_before=$(sha_of "$R/keys/luks2.hdr")
run "$COFFER" --repo "$R" --passphrase-file "$T/p2" -q key remove 2
[[ $RC != 0 ]] || fail "removing the last keyslot succeeded"
[[ $RC == 1 ]] || fail "removing the last keyslot: exit $RC, want 1"
[[ $ERR == *"last"* ]] || fail "removing the last keyslot: stderr '$ERR' does not say it is the last one"
[[ $(sha_of "$R/keys/luks2.hdr") == "$hdr_before" ]] || fail "the refused removal changed the header"
unlocks_with "the only passphrase left" --passphrase-file "$T/p2"

# Header backup and restore.
expect_ok "key export-header" "$COFFER" --repo "$R" key export-header "$T/hdr.bak"
[[ -s $T/hdr.bak ]] || fail "export-header wrote nothing"
expect_rc 1 "export-header over an existing file" "$COFFER" --repo "$R" key export-header "$T/hdr.bak"
[[ $ERR == *"exists"* ]] || fail "export-header over an existing file: stderr '$ERR'"
# Destroy both LUKS2 header copies (at 0 and 16 KiB).
dd if=/dev/zero of="$R/keys/luks2.hdr" bs=1024 count=32 conv=notrunc status=none
for how in "--passphrase-file $T/p2" "--passphrase-file $R.pass"; do
  # shellcheck disable=SC2086
  run "$COFFER" --repo "$R" -q $how cat "$d"
  [[ $RC != 0 ]] || fail "unlock with a destroyed header succeeded"
  [[ $RC != 2 ]] || fail "a destroyed header is reported as a wrong passphrase (exit 2): $ERR"
  [[ $RC == 1 ]] || fail "unlock with a destroyed header: exit $RC, want 1"
  [[ $ERR == *luks2.hdr* && $ERR == *header* ]] || fail "unlock with a destroyed header: stderr '$ERR' does not name the header"
done
expect_rc 1 "key list with a destroyed header" "$COFFER" --repo "$R" key list
[[ $ERR == *luks2.hdr* ]] || fail "key list with a destroyed header: stderr '$ERR'"
# restore-header refuses a file that is not a header.
expect_rc 1 "restore-header from garbage" "$COFFER" --repo "$R" key restore-header "$T/data"
expect_ok "key restore-header" "$COFFER" --repo "$R" key restore-header "$T/hdr.bak"
unlocks_with "the passphrase after restore-header" --passphrase-file "$T/p2"
expect_ok "key list after restore-header" "$COFFER" --repo "$R" --json key list
[[ $(jq -c '[.[] | [.slot, .label]]' <<<"$OUT") == '[[2,"backup admin"]]' ]] || fail "key list after restore-header: $OUT"
expect_ok "check --read-data after restore-header" "$COFFER" --repo "$R" --passphrase-file "$T/p2" -q check --read-data
pass
