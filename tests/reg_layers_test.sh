#!/usr/bin/env bash
# Layers pushed by docker are re-stored as their tar (chunked file by file) plus
# a recipe, and pulled back byte for byte.
#
# docker pushes an image (two layers, gzip by dockerd's Go compress/gzip); the
# daemon re-stores both in the background (/.coffer/stats: layers_stored 2).
# docker pulls the image again (it verifies every digest) and the payload is
# intact; curl GETs of whole layers and of ranges in the middle give the pushed
# bytes. A second layer holding the same 6 MB file under other tar headers adds
# far less than 6 MB to the repository. After a restart the layers still pull;
# six concurrent pulls of one layer share one re-creation; offline `coffer cat`
# re-creates a layer; `coffer check --read-data` is clean. Layers pushed to a
# daemon without --dedup-layers are re-stored by `coffer layers --restore`.
source "$(dirname "$0")/reg_lib.sh"

ensure_dockerd
R=$T/repo M=$T/mnt
new_repo "$R"
serve_start "$R" "$M" 0 --dedup-layers
PORT1=$PORT


make_payload_image 2000000
IMG=$REG/lay/img:1
docker tag "$LOCAL:1" "$IMG" && track_image "$IMG"
docker_push "$IMG" "$T/push.log"
P1=$PUSHED
wait_ingested
[[ $(stat_of layers_stored) == 2 && $(stat_of layers_failed) == 0 ]] ||
  fail "after docker push: $(cat "$M/.coffer/stats"); serve log: $(tail -n 5 "$SERVE_LOG")"
grep -q 'stored as layer' "$SERVE_LOG" || fail "serve log says nothing about the layers: $(tail -n 5 "$SERVE_LOG")"
[[ $(stat_of 'layers_by_method["go-flate"].layers') == 2 ]] ||
  fail "stats do not count two go-flate layers: $(cat "$M/.coffer/stats")"
note "docker push: both layers stored as tar + recipe ($(grep -c 'stored as layer' "$SERVE_LOG") log lines)"

http GET /v2/lay/img/manifests/1 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json'
expect_status 200 "GET the manifest"
mapfile -t LAYERS < <(jq -r '.layers[].digest' "$T/.b")
for d in "${LAYERS[@]}"; do
  http GET "/v2/lay/img/blobs/$d"
  expect_status 200 "GET layer $d"
  [[ sha256:$(sha_of "$T/.b") == "$d" ]] || fail "GET layer $d: the bytes have sha256:$(sha_of "$T/.b")"
  cp "$T/.b" "$T/whole"
  size=$(stat -c %s "$T/whole")
  first=$((size / 3)) last=$((size / 3 + 100000))
  http GET "/v2/lay/img/blobs/$d" -H "Range: bytes=$first-$last"
  expect_status 206 "Range GET of layer $d"
  cmp -s "$T/.b" <(tail -c +$((first + 1)) "$T/whole" | head -c $((last - first + 1))) ||
    fail "Range $first-$last of layer $d differs from the whole layer's bytes"
done
note "curl: whole layers and ranges in the middle are the pushed bytes"

# A plain tar of 3000 tiny files is re-chunked member by member: a 1 MiB read of
# it spans thousands of chunks (more pieces than one writev takes); it must read
# back whole, through the mount and over HTTP.
mkdir -p "$T/tiny"
# Odd files share one content (one chunk, stored once), so the pieces of a read
# are not neighbours in a frame and cannot be merged.
for i in $(seq 3000); do
  if ((i % 2)); then echo same >"$T/tiny/f$i"; else printf 'file %d\n' "$i" >"$T/tiny/f$i"; fi
done
tar -C "$T/tiny" --mtime=@4000 -cf "$T/tiny.tar" .
push_blob tiny/blob "$T/tiny.tar"
TINY=$DIGEST
wait_ingested
grep -q "layer $TINY (tar, .*stored as layer" "$SERVE_LOG" ||
  fail "the tiny-file tar was not re-stored: $(grep "$TINY" "$SERVE_LOG")"
[[ sha256:$(sha_of "$M/blobs/sha256/${TINY#sha256:}") == "$TINY" ]] || fail "reading the re-chunked tiny-file tar through the mount"
http GET "/v2/tiny/blob/blobs/$TINY"
expect_status 200 "GET the tiny-file tar"
[[ sha256:$(sha_of "$T/.b") == "$TINY" ]] || fail "GET of the re-chunked tiny-file tar: sha256:$(sha_of "$T/.b")"
note "a tar of 3000 tiny files, re-chunked by member ($(stat -c %s "$T/tiny.tar") bytes): reads back whole"

# ---- /layers/sha256/<diff id>/: each layer's files, lazily read; overlayfs over them
mapfile -t DIFFS < <(layer_ids "$LOCAL:1")
((${#DIFFS[@]} == 2)) || fail "the image should have two layers: ${DIFFS[*]}"
BASE=$M/layers/sha256/${DIFFS[0]#sha256:} TOP=$M/layers/sha256/${DIFFS[1]#sha256:}
for d in "${DIFFS[@]}"; do
  ls "$M/layers/sha256" | grep -qx "${d#sha256:}" || fail "ls $M/layers/sha256 lacks $d: $(ls "$M/layers/sha256")"
done
cmp -s "$TOP/payload" "$T/payload" || fail "$TOP/payload differs from the pushed payload"
cmp -s "$BASE/bin/busybox" /bin/busybox || fail "$BASE/bin/busybox differs from /bin/busybox"
[[ $(readlink "$BASE/bin/sh") == busybox ]] || fail "$BASE/bin/sh: symlink to '$(readlink "$BASE/bin/sh")'"
touch "$TOP/new" 2>/dev/null && fail "a layer tree accepted a new file"
mkdir -p "$T/ov"
mount -t overlay overlay -o "lowerdir=$TOP:$BASE" "$T/ov" || fail "mount -t overlay with lowerdir=$TOP:$BASE failed"
_MOUNTS+=("$T/ov")
cmp -s "$T/ov/payload" "$T/payload" && cmp -s "$T/ov/base-id" "$BASE/base-id" && [[ -x $T/ov/bin/busybox ]] ||
  { umount "$T/ov"; fail "the overlay of the two layers does not show both layers' files"; }
umount "$T/ov" || fail "umount of the overlay"
note "/layers/sha256: both layers' files, byte-exact, read-only; overlayfs over them shows the image"

# ---- /images/<repo>/<tag>/rootfs: the merged view
ROOTFS=$M/images/lay/img/1/rootfs
[[ $(ls "$M/images") == lay && $(ls "$M/images/lay") == img && $(ls "$M/images/lay/img") == 1 ]] ||
  fail "/images listing: $(ls -R "$M/images" | head -n 20)"
cmp -s "$ROOTFS/payload" "$T/payload" && cmp -s "$ROOTFS/bin/busybox" /bin/busybox ||
  fail "$ROOTFS does not hold both layers' files"
# Whiteouts and opaque directories, pushed by hand (plain tar layers, OCI manifest).
mkdir -p "$T/l1/d" "$T/l2/d"
echo a >"$T/l1/a" && echo x >"$T/l1/d/x" && echo keep >"$T/l1/k"
echo y >"$T/l2/d/y" && : >"$T/l2/.wh.a" && : >"$T/l2/d/.wh..wh..opq"
tar -C "$T/l1" --sort=name -cf "$T/l1.tar" . && tar -C "$T/l2" --sort=name -cf "$T/l2.tar" .
head -c 100000 /dev/urandom >"$T/l1/pad" && tar -C "$T/l1" --sort=name -cf "$T/l1.tar" .  # >= 64 KiB: re-stored
push_blob wh/img "$T/l1.tar"; L1=$DIGEST
head -c 100000 /dev/urandom >"$T/l2/pad2" && tar -C "$T/l2" --sort=name -cf "$T/l2.tar" .
push_blob wh/img "$T/l2.tar"; L2=$DIGEST
printf '{"architecture":"%s","os":"linux","rootfs":{"type":"layers","diff_ids":["%s","%s"]}}' \
  "$(uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/')" "$L1" "$L2" >"$T/config.json"
push_blob wh/img "$T/config.json"; CFG=$DIGEST
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}' \
  "$CFG" "$(stat -c %s "$T/config.json")" "$L1" "$(stat -c %s "$T/l1.tar")" "$L2" "$(stat -c %s "$T/l2.tar")" >"$T/m.json"
push_manifest wh/img 1 "$T/m.json"
expect_status 201 "PUT the whiteout image's manifest"
wait_ingested
W=$M/images/wh/img/1/rootfs
[[ -e $W/k && -e $W/d/y && ! -e $W/a && ! -e $W/d/x ]] ||
  fail "merged whiteout image: $(cd "$W" && find . | sort | tr '\n' ' ')"
[[ $(stat -c %F "$M/layers/sha256/${L2#sha256:}/a") == "character special file" ]] ||
  fail "the whiteout of a in layer 2 is not a character device: $(stat -c %F "$M/layers/sha256/${L2#sha256:}/a")"
note "/images/<repo>/<tag>/rootfs: merged; whiteouts and opaque directories hide the lower layer's files"

docker_forget "$IMG" "$LOCAL:1"
docker pull "$IMG" >"$T/pull.log" 2>&1 || fail "docker pull of re-stored layers: $(tail -n 3 "$T/pull.log")"
[[ $(docker inspect --format '{{index .RepoDigests 0}}' "$IMG") == "$REG/lay/img@$P1" ]] ||
  fail "pulled $(docker inspect --format '{{index .RepoDigests 0}}' "$IMG"), pushed $P1"
docker_payload "$IMG" "$T/got"
cmp -s "$T/got" "$T/payload" || fail "/payload of the image pulled from re-stored layers differs"
note "docker pull from re-stored layers: digests verified by docker, payload intact"

# ---- the same file under other headers is stored once
mkdir -p "$T/shared"
rand_file "$T/shared/big.bin" 6000000
tar -C "$T/shared" --mtime=@1000 --owner=1 --group=1 -c . | docker import - "$LOCAL-s1:1" >/dev/null || fail "docker import s1"
tar -C "$T/shared" --mtime=@2000 --owner=2 --group=2 -c . | docker import - "$LOCAL-s2:1" >/dev/null || fail "docker import s2"
track_image "$LOCAL-s1:1" "$LOCAL-s2:1"
docker tag "$LOCAL-s1:1" "$REG/lay/s1:1" && docker tag "$LOCAL-s2:1" "$REG/lay/s2:1" && track_image "$REG/lay/s1:1" "$REG/lay/s2:1"
gc_now() { cf "$R" gc --grace 1h >"$T/gc.out" 2>&1 || fail "coffer gc: $(tail -n 2 "$T/gc.out")"; }
docker_push "$REG/lay/s1:1" "$T/push-s1.log"
wait_ingested
gc_now  # drops the pushed forms the tar forms replaced
before=$(stat_of unique_bytes)
docker_push "$REG/lay/s2:1" "$T/push-s2.log"
wait_ingested
[[ $(stat_of layers_stored) == 4 ]] || fail "after the two shared-file images: $(cat "$M/.coffer/stats")"
gc_now
after=$(stat_of unique_bytes)
added=$((after - before))
((added < 1000000)) || fail "a second layer with the same 6 MB file added $added unique bytes"
note "same file, other tar headers: the second layer added $added unique bytes (file: 6000000)"

# A layer that takes a while to re-create (~40 MB of compressible text), for the
# concurrent pulls after the restart below.
mkdir -p "$T/big"
head -c 30000000 /dev/urandom | base64 >"$T/big/text"
tar -C "$T/big" --mtime=@3000 -c . | docker import - "$LOCAL-big:1" >/dev/null || fail "docker import big"
docker tag "$LOCAL-big:1" "$REG/lay/big:1" && track_image "$LOCAL-big:1" "$REG/lay/big:1"
docker_push "$REG/lay/big:1" "$T/push-big.log"
wait_ingested
# The verification at ingestion made every segment of it and kept them in the
# segment cache: the pull right after the push encodes nothing.
http GET /v2/lay/big/manifests/1 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json'
expect_status 200 "GET the big image's manifest"
BIG=$(jq -r '.layers[0].digest' "$T/.b")
m0=$(stat_of layer_segments_made) h0=$(stat_of layer_cache_hits)
http GET "/v2/lay/big/blobs/$BIG"
expect_status 200 "GET the big layer right after its push"
[[ sha256:$(sha_of "$T/.b") == "$BIG" ]] || fail "GET of $BIG after its push: sha256:$(sha_of "$T/.b")"
cp "$T/.b" "$T/big.pushed"
m1=$(stat_of layer_segments_made) h1=$(stat_of layer_cache_hits)
((m1 == m0 && h1 > h0)) ||
  fail "the pull after the push encoded $((m1 - m0)) segments (want 0), cache hits +$((h1 - h0)); stats: $(cat "$M/.coffer/stats")"
note "pull right after the push: $((h1 - h0)) segments from the segment cache, none encoded"
serve_stop

# ---- durable, offline-readable, clean
offline=$(cf "$R" cat "${LAYERS[0]}" | sha256sum | cut -d' ' -f1)
[[ sha256:$offline == "${LAYERS[0]}" ]] || fail "offline coffer cat of a re-stored layer: sha256:$offline"
expect_ok "check --read-data" cf "$R" check --read-data
# Restarted from a --config file: dedup_layers and layer_cache come from it.
echo '{"dedup_layers": true, "layer_cache": "12Q"}' >"$T/bad-cache.json"
expect_rc 1 "serve --config with layer_cache \"12Q\"" cf "$R" serve --mount "$M" --config "$T/bad-cache.json"
[[ $ERR == *bad-cache.json*layer_cache* ]] || fail "a bad layer_cache: the message names neither file nor key: $ERR"
mountpoint -q "$M" && fail "a bad config left $M mounted"
echo '{"dedup_layers": true, "layer_cache": "64M"}' >"$T/serve.json"
serve_start "$R" "$M" "$PORT1" --config "$T/serve.json"
[[ $(stat_of layer_cache_capacity) == $((64 << 20)) ]] ||
  fail "serve --config {layer_cache: 64M}: capacity $(stat_of layer_cache_capacity)"
# A Range GET of the end of a re-stored layer, nothing cached (a resumed
# pull): each segment has its own check (recipe v5), so it makes the last
# segment only, not the ~10 before it, and gets the pushed bytes.
size=$(stat -c %s "$T/big.pushed")
m0=$(stat_of layer_segments_made)
curl -sS --max-time 60 -r "$((size - 100000))-" -o "$T/big.tail" "$URL/v2/lay/big/blobs/$BIG" ||
  fail "Range GET of the last 100000 bytes of $BIG"
cmp -s "$T/big.tail" <(tail -c 100000 "$T/big.pushed") || fail "Range GET of the end of $BIG: other bytes"
m1=$(stat_of layer_segments_made)
((m1 - m0 >= 1 && m1 - m0 <= 2)) ||
  fail "a Range GET of the last 100000 bytes made $((m1 - m0)) segments (want 1-2); stats: $(cat "$M/.coffer/stats")"
[[ $(stat_of layer_segment_check_failures) == 0 ]] || fail "segments failed their check: $(cat "$M/.coffer/stats")"
note "Range GET of the end of a re-stored layer: $((m1 - m0)) segment made, bytes exact"
# Six pulls of one re-stored layer at once (nothing in the page cache of this
# new mount): one reader re-creates it for all (each pull alone would re-create
# the whole stream), and every client gets the pushed bytes.
r0=$(stat_of layer_rebuilds) b0=$(stat_of layer_bytes_rebuilt)
pids=()
for i in 1 2 3 4 5 6; do
  curl -sS --max-time 120 -o "$T/big.$i" "$URL/v2/lay/big/blobs/$BIG" &
  pids+=($!)
done
wait "${pids[@]}"  # not a bare wait: serve runs in the background too
for i in 1 2 3 4 5 6; do
  [[ sha256:$(sha_of "$T/big.$i") == "$BIG" ]] || fail "concurrent pull $i of $BIG: sha256:$(sha_of "$T/big.$i")"
done
rebuilds=$(($(stat_of layer_rebuilds) - r0)) made=$(($(stat_of layer_bytes_rebuilt) - b0))
size=$(stat -c %s "$T/big.1")
# Each pull alone would make all $size bytes (6x); shared, about once. Readers
# more than the window behind the front restart at a checkpoint: a little more.
((made >= size && made < 2 * size)) ||
  fail "6 concurrent pulls of a re-stored $size-byte layer made $made bytes in $rebuilds re-creations (want < 2x); stats: $(cat "$M/.coffer/stats")"
note "6 concurrent pulls of a re-stored $size-byte layer: $made bytes re-created ($rebuilds starts), all digests right"
# A client that hangs up in the middle of a body (its read end closed): the
# registry's next sendfile gets EPIPE, which must not kill it (SIGPIPE).
for i in 1 2 3; do
  curl -sS --max-time 60 "$URL/v2/lay/big/blobs/$BIG" 2>/dev/null | head -c 100000 >/dev/null || true
done
http GET /v2/
expect_status 200 "GET /v2/ after clients hung up mid-body"
is_running "$SERVE_PID" || fail "coffer serve died when clients hung up mid-body: $(tail -n 3 "$SERVE_LOG")"
docker_forget "$IMG"
docker pull "$IMG" >"$T/pull2.log" 2>&1 || fail "docker pull after a restart: $(tail -n 3 "$T/pull2.log")"
note "after a restart: docker pull works; offline cat re-creates the layer; check --read-data clean"
serve_stop

# ---- blobs pushed before --dedup-layers: `coffer layers --restore` re-stores them
R2=$T/repo2 M2=$T/mnt2
new_repo "$R2"
serve_start "$R2" "$M2" 0
PORT2=$PORT
IMG2=$REG/lay/late:1
docker tag "$IMG" "$IMG2" || fail "docker tag $IMG $IMG2"
track_image "$IMG2"
docker_push "$IMG2" "$T/push-late.log"
expect_err "without --dedup-layers" "coffer layers on a daemon without the flag" cf "$R2" layers
serve_stop
expect_err "no daemon holds the repository" "coffer layers with no daemon" cf "$R2" layers --restore
serve_start "$R2" "$M2" "$PORT2" --dedup-layers
M=$M2
[[ $(stat_of layers_stored) == 0 ]] || fail "layers re-stored before anyone asked: $(cat "$M/.coffer/stats")"
cf "$R2" --json layers --restore --wait >"$T/layers.json" || fail "coffer layers --restore --wait: $(cat "$T/layers.json")"
[[ $(jq -r .pending "$T/layers.json") == 0 && $(jq -r .stored "$T/layers.json") == 2 ]] ||
  fail "coffer layers --restore --wait: $(cat "$T/layers.json")"
[[ $(stat_of layers_stored) == 2 ]] || fail "after --restore: $(cat "$M/.coffer/stats")"
docker_forget "$IMG2"
docker pull "$IMG2" >"$T/pull-late.log" 2>&1 || fail "docker pull of the re-stored image: $(tail -n 3 "$T/pull-late.log")"
note "coffer layers --restore: $(jq -r .queued "$T/layers.json") blobs queued, 2 layers pushed without the flag re-stored; docker pull works"
serve_stop
pass
