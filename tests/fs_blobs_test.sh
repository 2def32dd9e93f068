#!/usr/bin/env bash
# /uploads and /blobs: uploads are append-only and write-only; rename into
# /blobs/sha256/<hex> publishes only when the sha256 matches (EBADMSG
# otherwise, and the upload stays appendable); published blobs are read-only,
# read back exactly (cat, pread at random offsets, coffer cat after unmount) and
# are listed. A 50 MiB upload works.
source "$(dirname "$0")/fs_lib.sh"

R=$T/repo M=$T/mnt
new_repo "$R"
mount_fg "$R" "$M"
U=$M/uploads B=$M/blobs/sha256

[[ -z $(ls -A "$B") ]] || fail "a new repository lists blobs: $(ls "$B")"
[[ -z $(ls -A "$U") ]] || fail "a new mount lists uploads: $(ls "$U")"

# ---- an upload in several writes ---------------------------------------------------------
rand_file "$T/u1" $((3 * 1024 * 1024 + 12345))
hex=$(sha_of "$T/u1")
dd if="$T/u1" of="$U/u1" bs=1M count=1 status=none || fail "first dd into uploads/u1"
dd if="$T/u1" of="$U/u1" bs=1M skip=1 seek=1 count=1 conv=notrunc oflag=append status=none || fail "second dd (append) into uploads/u1"
dd if="$T/u1" of="$U/u1" bs=1M skip=2 seek=2 conv=notrunc oflag=append status=none || fail "third dd (append) into uploads/u1"
[[ $(stat -c %s "$U/u1") == $(stat -c %s "$T/u1") ]] || fail "upload size $(stat -c %s "$U/u1"), want $(stat -c %s "$T/u1")"
[[ $(ls "$U") == u1 ]] || fail "uploads/ lists '$(ls "$U")'"
# a write that does not append is EINVAL; reading is EACCES; the upload is unchanged
expect_errno EINVAL "pwrite at offset 0 into an upload" \
  'fd = os.open(a[0], os.O_WRONLY); os.pwrite(fd, b"x", 0)' "$U/u1"
expect_errno EINVAL "pwrite past the end of an upload" \
  'fd = os.open(a[0], os.O_WRONLY); os.pwrite(fd, b"x", os.fstat(fd).st_size + 10)' "$U/u1"
expect_errno EACCES "open of an upload for reading" 'os.open(a[0], os.O_RDONLY)' "$U/u1"
expect_err "Permission denied" "cat of an upload" cat "$U/u1"
[[ $(stat -c %s "$U/u1") == $(stat -c %s "$T/u1") ]] || fail "a refused write changed the upload's size"

# ---- the wrong digest: EBADMSG, nothing in /blobs, the upload stays -----------------------
wrong=$(printf '%s' "wrong" | sha256sum | cut -d' ' -f1)
expect_errno EBADMSG "rename to a wrong digest" 'os.rename(a[0], a[1])' "$U/u1" "$B/$wrong"
expect_err "Bad message" "mv to a wrong digest" mv "$U/u1" "$B/$wrong"
[[ -z $(ls -A "$B") ]] || fail "a failed publish left blobs: $(ls "$B")"
[[ ! -e $B/$wrong ]] || fail "blobs/sha256/<wrong digest> exists"
[[ -e $U/u1 ]] || fail "the upload went away after a failed publish"
e=$(errno_of 'os.rename(a[0], a[1])' "$U/u1" "$B/not-a-digest")
[[ $e != OK ]] || fail "rename of an upload to blobs/sha256/not-a-digest succeeded"
[[ -e $U/u1 && -z $(ls -A "$B") ]] || fail "a rename to a bad name published something"
expect_errno EXDEV "rename of an upload into a head" 'os.mkdir(a[1]); os.rename(a[0], a[1] + "/current/x")' "$U/u1" "$M/backups/bl"
[[ -e $U/u1 ]] || fail "the upload went away after a rename to elsewhere"

# ---- the right digest ----------------------------------------------------------------------
expect_errno OK "rename to the right digest" 'os.rename(a[0], a[1])' "$U/u1" "$B/$hex"
[[ ! -e $U/u1 ]] || fail "the upload is still there after publishing"
[[ $(ls "$B") == "$hex" ]] || fail "ls blobs/sha256: '$(ls "$B")', want $hex"
cmp "$T/u1" "$B/$hex" || fail "cat of the published blob differs"
[[ $(stat -c '%s %a %F' "$B/$hex") == "$(stat -c %s "$T/u1") 444 regular file" ]] || fail "blob attributes: $(stat -c '%s %a %F' "$B/$hex")"
out=$(python3 - "$T/u1" "$B/$hex" <<'EOF'
import os, random, sys
a, b = (os.open(p, os.O_RDONLY) for p in sys.argv[1:])
size = os.fstat(a).st_size
for _ in range(100):
    off = random.randrange(0, size + 100)
    n = random.choice([1, 4095, 65536, 1 << 20, random.randrange(1, 3 << 20)])
    if os.pread(a, n, off) != os.pread(b, n, off):
        print("pread(%d, %d) differs" % (off, n)); sys.exit(1)
print("ok")
EOF
) || fail "random preads of the blob: $out"

# ---- blobs are read-only -----------------------------------------------------------------------
expect_errno EROFS "open O_WRONLY of a blob" 'os.open(a[0], os.O_WRONLY)' "$B/$hex"
expect_errno EROFS "open O_RDWR of a blob" 'os.open(a[0], os.O_RDWR)' "$B/$hex"
expect_err "Read-only file system" "echo >> blob" sh -c "echo x >>'$B/$hex'"
expect_err "Read-only file system" "truncate of a blob" truncate -s 0 "$B/$hex"
expect_err "Read-only file system" "rm of a blob" rm -f "$B/$hex"
expect_err "Read-only file system" "touch in blobs/sha256" touch "$B/$(printf '%064d' 1)"
cmp "$T/u1" "$B/$hex" || fail "the blob changed after the refused writes"

# ---- more upload semantics ----------------------------------------------------------------------
printf 'hello\n' >"$U/u2" && printf 'world\n' >>"$U/u2" || fail "write + append into uploads/u2"
hex2=$(printf 'hello\nworld\n' | sha256sum | cut -d' ' -f1)
mv "$U/u2" "$U/u2-renamed" || fail "rename within uploads/"
[[ $(ls "$U") == u2-renamed ]] || fail "uploads/ after a rename: '$(ls "$U")'"
printf 'start over\n' >"$U/u2-renamed" || fail "O_TRUNC of an upload"   # > truncates: starts afresh
hex3=$(printf 'start over\n' | sha256sum | cut -d' ' -f1)
expect_errno EBADMSG "publish of the pre-truncation content" 'os.rename(a[0], a[1])' "$U/u2-renamed" "$B/$hex2"
mv "$U/u2-renamed" "$B/$hex3" || fail "publish after O_TRUNC"
[[ $(cat "$B/$hex3") == "start over" ]] || fail "blob after O_TRUNC: '$(cat "$B/$hex3")'"
printf 'discard me\n' >"$U/u3" && rm "$U/u3" || fail "unlink of an upload"
[[ -z $(ls -A "$U") ]] || fail "uploads/ after unlink: '$(ls "$U")'"
expect_errno EEXIST "O_EXCL over an existing upload" \
  'open(a[0], "wb").close(); os.open(a[0], os.O_CREAT | os.O_EXCL | os.O_WRONLY)' "$U/u4"
rm -f "$U/u4"
# an empty upload publishes as the empty blob
: >"$U/empty" || fail "create an empty upload"
hexe=$(sha256sum </dev/null | cut -d' ' -f1)
mv "$U/empty" "$B/$hexe" || fail "publish of an empty upload"
[[ -f $B/$hexe && $(stat -c %s "$B/$hexe") == 0 ]] || fail "the empty blob: $(stat -c %s "$B/$hexe" 2>&1)"

# ---- 50 MiB -------------------------------------------------------------------------------------------
rand_file "$T/big" $((50 * 1024 * 1024))
hexb=$(sha_of "$T/big")
cp "$T/big" "$U/big" || fail "cp of 50 MiB into uploads/"
mv "$U/big" "$B/$hexb" || fail "publish of the 50 MiB upload"
[[ $(sha256sum <"$B/$hexb" | cut -d' ' -f1) == "$hexb" ]] || fail "sha256sum of the 50 MiB blob differs"
[[ $(ls "$B" | sort) == "$(printf '%s\n' "$hex" "$hex3" "$hexe" "$hexb" | sort)" ]] || fail "ls blobs/sha256: $(ls "$B")"
jq -e '.blobs == 4' "$M/.coffer/stats" >/dev/null || fail ".coffer/stats: $(cat "$M/.coffer/stats")"

# ---- after unmount: coffer cat, and the blobs are still there after a remount ---------------------
umount_clean "$M" "$DAEMON"
cf "$R" cat "sha256:$hex" | cmp -s - "$T/u1" || fail "coffer cat of the blob published through the mount differs"
cf "$R" cat "sha256:$hexb" | cmp -s - "$T/big" || fail "coffer cat of the 50 MiB blob differs"
expect_ok "coffer blobs" cf "$R" --json blobs
[[ $(jq -r '.[].digest' <<<"$OUT" | sort) == "$(printf 'sha256:%s\n' "$hex" "$hex3" "$hexe" "$hexb" | sort)" ]] ||
  fail "coffer blobs lists: $OUT"
mount_fg "$R" "$M"
cmp "$T/u1" "$B/$hex" || fail "blob after remount"
umount_clean "$M" "$DAEMON"
expect_ok "check --read-data" cf "$R" check --read-data
pass
