#!/usr/bin/env bash
# Damage is found and named: one flipped byte in a pack makes check fail naming
# the pack, and check --read-data name the blob or file it belongs to; a deleted
# index is rebuilt from the packs by repair --rebuild-index; a truncated pack or
# a damaged root file is named too.
source "$(dirname "$0")/lib.sh"

R=$T/repo
new_repo "$R"
rand_file "$T/blob" $((4 * 1024 * 1024))
expect_ok "put" cf "$R" put "$T/blob"
dg=$OUT
packs_of_blob=$(cd "$R" && find packs -type f | sort)
[[ $(wc -l <<<"$packs_of_blob") == 1 ]] || fail "setup: want the blob in one pack, got: $packs_of_blob"
PB=$packs_of_blob
S=$T/src
mkdir -p "$S/sub"
rand_file "$S/sub/victim" $((3 * 1024 * 1024))
for i in $(seq 1 50); do echo "small $i" >"$S/f$i"; done
expect_ok "backup" cf "$R" --json backup --set s "$S"
sid=$(jq -r .id <<<"$OUT")
PT=$(cd "$R" && find packs -type f | sort | grep -vxF "$PB")
[[ $(wc -l <<<"$PT") == 1 ]] || fail "setup: want the backup in one pack, got: $PT"
expect_ok "check of the healthy repository" cf "$R" check
expect_ok "check --read-data of the healthy repository" cf "$R" check --read-data

# flip FILE OFFSET: inverts one byte; prints the original byte's octal for unflip.
flip() {
  local orig
  orig=$(dd if="$1" bs=1 skip="$2" count=1 status=none | od -An -tu1 | tr -d ' ')
  printf "\\$(printf '%03o' $((orig ^ 0xff)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# --- a flipped byte in the blob's pack ---------------------------------------------
size=$(stat -c %s "$R/$PB")
off=$((size / 2))
cp "$R/$PB" "$T/pack.orig"
flip "$R/$PB" "$off"
cmp -s "$R/$PB" "$T/pack.orig" && fail "setup: the flip changed nothing"

expect_rc 1 "check with a flipped byte in $PB" cf "$R" check
[[ $OUT == *"$PB"* ]] || fail "check does not name the damaged pack $PB: $OUT"
[[ $OUT == *"ERRORS FOUND"* ]] || fail "check output lacks 'ERRORS FOUND': $OUT"
[[ $OUT != *"$PT"* ]] || fail "check also blames the intact pack $PT: $OUT"
expect_rc 1 "check --read-data with a flipped byte" cf "$R" check --read-data
[[ $OUT == *"blob $dg"* ]] || fail "check --read-data does not name the damaged blob $dg: $OUT"
[[ $OUT != *"file \`"* ]] || fail "check --read-data blames a file of the intact snapshot: $OUT"
expect_rc 1 "check --json with a flipped byte" cf "$R" --json check
[[ $(jq -r .ok <<<"$OUT") == false ]] || fail "check --json: ok is $(jq -r .ok <<<"$OUT"), want false"
(( $(jq '.problems | length' <<<"$OUT") > 0 )) || fail "check --json: problems is empty"
jq -r '.problems[]' <<<"$OUT" | grep -qF "$PB" || fail "check --json problems do not name $PB: $OUT"
expect_rc 1 "check --read-data --json with a flipped byte" cf "$R" --json check --read-data
[[ $(jq -r .ok <<<"$OUT") == false ]] || fail "check --read-data --json: ok is not false"
jq -r '.problems[]' <<<"$OUT" | grep -qF "blob $dg" || fail "check --read-data --json problems do not name blob $dg"
# Reading the damaged blob fails (exit 1); the intact snapshot still restores.
cf "$R" cat "$dg" >"$T/cat.out" 2>"$T/cat.err"
rc=$?
((rc == 1)) || fail "cat of the damaged blob: exit $rc, want 1 ($(cat "$T/cat.err"))"
cmp -s "$T/cat.out" "$T/blob" && fail "cat of the damaged blob returned the full original content"
expect_ok "restore of the intact snapshot" cf "$R" restore s "$T/r1"
same_tree "$S" "$(restored_root "$T/r1" "$S")" "restore with a damaged blob pack"
cp "$T/pack.orig" "$R/$PB"
expect_ok "check after undoing the flip" cf "$R" check --read-data

# --- a flipped byte in the snapshot's pack (in the 3 MiB file's data) -------------
size=$(stat -c %s "$R/$PT")
cp "$R/$PT" "$T/pack.orig"
flip "$R/$PT" $((size / 3))
expect_rc 1 "check with a flipped byte in $PT" cf "$R" check
[[ $OUT == *"$PT"* ]] || fail "check does not name the damaged pack $PT: $OUT"
expect_rc 1 "check --read-data with a flipped byte in the snapshot's data" cf "$R" check --read-data
[[ $OUT == *"snapshot s@$sid: file \`${S#/}/sub/victim\` damaged"* ]] ||
  fail "check --read-data does not name the damaged file \`${S#/}/sub/victim\` of s@$sid: $OUT"
[[ $OUT != *"blob $dg"* ]] || fail "check --read-data blames the intact blob: $OUT"
expect_rc 1 "restore of the damaged snapshot" cf "$R" restore s "$T/r2"
# (the damaged record holds the small files too, so the first file it names may be one of them)
[[ $ERR == *"restore \`"* && $ERR == *"$PT"* ]] || fail "restore of the damaged snapshot does not name the file and pack: $ERR"
cmp -s <(cf "$R" cat "$dg") "$T/blob" || fail "the intact blob does not read back while the other pack is damaged"
cp "$T/pack.orig" "$R/$PT"
expect_ok "check after undoing the second flip" cf "$R" check --read-data

# --- the index deleted: repair --rebuild-index ---------------------------------
rm -rf "$R/index"
expect_rc 1 "check without an index" cf "$R" check
[[ $OUT == *"repair --rebuild-index"* ]] || fail "check without an index does not suggest repair --rebuild-index: $OUT"
expect_rc 1 "cat without an index" cf "$R" cat "$dg"
[[ $ERR == *"repair --rebuild-index"* ]] || fail "cat without an index: stderr '$ERR' does not suggest repair"
run "$COFFER" --repo "$R" -q --json repair --rebuild-index
# (a wrong exit code is recorded, and the rebuilt index still checked below)
((RC == 0)) || fail_later "repair --rebuild-index: exit $RC, want 0 (stderr: $ERR; stdout: $OUT)"
[[ -d $R/index ]] || fail "repair --rebuild-index left no index"
[[ $(jq -r .packs <<<"$OUT") == 2 ]] || fail "repair reported $(jq -r .packs <<<"$OUT") packs, want 2"
[[ $(jq -r '.problems | length' <<<"$OUT") == 0 ]] || fail "repair reported problems: $OUT"
(( $(jq -r .chunks <<<"$OUT") > 0 )) || fail "repair indexed no chunks"
expect_ok "check after the rebuild" cf "$R" check
expect_ok "check --read-data after the rebuild" cf "$R" check --read-data
cmp -s <(cf "$R" cat "$dg") "$T/blob" || fail "the blob does not read back after the index rebuild"
expect_ok "restore after the rebuild" cf "$R" restore s "$T/r3"
same_tree "$S" "$(restored_root "$T/r3" "$S")" "restore after the index rebuild"
# and a writer works with the rebuilt index (dedups against it)
expect_ok "put after the rebuild" cf "$R" --json put "$T/blob"
[[ $(jq -r .new_bytes <<<"$OUT") == 0 ]] || fail "re-put after the rebuild stored $(jq -r .new_bytes <<<"$OUT") new bytes, want 0"

# --- a truncated pack ------------------------------------------------------------
cp "$R/$PB" "$T/pack.orig"
truncate -s $(( $(stat -c %s "$R/$PB") / 2 )) "$R/$PB"
expect_rc 1 "check with a truncated pack" cf "$R" check
[[ $OUT == *"$PB"* ]] || fail "check does not name the truncated pack $PB: $OUT"
expect_rc 1 "check --read-data with a truncated pack" cf "$R" check --read-data
[[ $OUT == *"blob $dg"* ]] || fail "check --read-data does not name blob $dg of the truncated pack: $OUT"
cp "$T/pack.orig" "$R/$PB"

# --- a damaged root file ---------------------------------------------------------
root=roots/snapshots/$sid
[[ -f $R/$root ]] || fail "setup: no root file $root"
flip "$R/$root" 20
expect_rc 1 "check with a damaged snapshot root" cf "$R" check
[[ $OUT == *"$root"* ]] || fail "check does not name the damaged root $root: $OUT"
pass
