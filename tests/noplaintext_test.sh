#!/usr/bin/env bash
# Nothing readable at rest: a marker string in file contents, file and directory
# names, symlink targets, xattr names and values, and in a blob, appears nowhere
# under the repository directory (packs, roots, index, keys, config).
source "$(dirname "$0")/lib.sh"

M="coffer-marker-$RANDOM$RANDOM-$$-plaintext"
R=$T/repo
new_repo "$R"
S=$T/src
mkdir -p "$S/dir-$M/sub"
for i in $(seq 1 100); do echo "line $i: $M" >>"$S/contents"; done
# compressible repetition and a lone occurrence inside random data
yes "$M" | head -n 20000 >"$S/dir-$M/repeated"
{ head -c 100000 /dev/urandom; printf '%s' "$M"; head -c 100000 /dev/urandom; } >"$S/embedded"
echo "name only" >"$S/file-$M.txt"
echo "deep" >"$S/dir-$M/sub/$M"
ln -s "target-$M" "$S/link"
echo "xattrs" >"$S/x"
setfattr -n "user.value" -v "$M" "$S/x" || fail "setfattr failed (no xattr support?)"
setfattr -n "user.name-$M" -v "v" "$S/x"
expect_ok "backup" cf "$R" backup --set "s" "$S"
{ echo "blob: $M"; head -c 50000 /dev/urandom; echo "$M"; } >"$T/blob"
expect_ok "put" cf "$R" put "$T/blob"
expect_ok "put - (stdin)" cf "$R" put - <<<"$M"
# Everything is really in there.
expect_ok "restore" cf "$R" restore s "$T/out"
same_tree "$S" "$(restored_root "$T/out" "$S")" "restore"
[[ $(getfattr --only-values -n user.value "$(restored_root "$T/out" "$S")/x" 2>/dev/null) == "$M" ]] || fail "xattr value not restored"
rm -rf "$T/out"

# The repository's own path must not contain the marker, or the check is void.
[[ $R != *"$M"* ]] || fail "setup: marker in the repository path"
hits=$(grep -r -a -l -F -- "$M" "$R")
[[ -z $hits ]] || fail "plaintext marker found in: $hits"
# Names too (file and directory names in the repository).
names=$(find "$R" -name "*$M*")
[[ -z $names ]] || fail "marker found in repository file names: $names"
# A shorter piece of it (say, split across a boundary) is not there either.
part=${M:0:20}
hits=$(grep -r -a -l -F -- "$part" "$R")
[[ -z $hits ]] || fail "a 20-byte prefix of the marker found in: $hits"
pass
