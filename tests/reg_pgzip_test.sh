#!/usr/bin/env bash
# Layers that no known encoder reproduces: skopeo pushes an image whose layer
# it compresses itself (containers/image's pgzip, what podman and buildah
# write too) to `coffer serve --dedup-layers`. The layer is re-stored as its
# tar plus the DEFLATE stream's own tokens (log: "as deflate tokens"; stats:
# nothing kept as pushed), and comes back byte for byte: curl of the whole
# layer and of a range, `skopeo copy` back into an OCI layout (skopeo checks
# every digest), its uncompressed sha256 is the diff_id; after a restart an
# offline `coffer cat` re-creates it and `coffer check --read-data` is clean.
# A file shared with a second, docker-free push of another tar is stored once.
source "$(dirname "$0")/reg_lib.sh"
command -v skopeo >/dev/null || fail "the test needs skopeo (apt-get install skopeo)"

R=$T/repo M=$T/mnt
new_repo "$R"
serve_start "$R" "$M" 0 --dedup-layers
PORT1=$PORT

# dir_image DIR TAR: a skopeo dir: image of one uncompressed layer.
dir_image() {
  local dir=$1 tar=$2 l c
  mkdir -p "$dir"
  l=$(sha_of "$tar")
  cp "$tar" "$dir/$l"
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{}}' \
    "$l" >"$dir/cfg"
  c=$(sha_of "$dir/cfg")
  mv "$dir/cfg" "$dir/$c"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
    "$c" "$(stat -c %s "$dir/$c")" "$l" "$(stat -c %s "$tar")" >"$dir/manifest.json"
  echo "Directory Transport Version: 1.1" >"$dir/version"
}

# A tree with text (long matches), binary-ish and random files, ~12 MB.
mkdir -p "$T/tree/usr/share/doc" "$T/tree/usr/lib"
python3 - "$T/tree" <<'EOF'
import os, random, sys
r = random.Random(7)
words = [bytes(r.choices(b"abcdefghijklmnopqrstuvwxyz", k=r.randint(2, 9))) + b" " for _ in range(400)]
for i in range(120):
    n = r.randint(1000, 150000)
    if i % 5 == 4:
        data = r.randbytes(n // 8) * 8
    else:
        data = b"".join(r.choices(words, k=n // 4))[:n]
    with open(os.path.join(sys.argv[1], "usr/share/doc" if i % 2 else "usr/lib", "f%03d" % i), "wb") as f:
        f.write(data)
EOF
rand_file "$T/tree/shared.bin" 3000000
tar -C "$T/tree" --mtime=@1000 --owner=0 --group=0 --sort=name -cf "$T/layer.tar" .
dir_image "$T/src" "$T/layer.tar"
SK=(skopeo --command-timeout 120s)
"${SK[@]}" copy -q --dest-compress --dest-tls-verify=false "dir:$T/src" "docker://$REG/pg/img:1" \
  >"$T/copy.log" 2>&1 || fail "skopeo copy dir: -> coffer: $(tail -n 3 "$T/copy.log")"
wait_ingested

http GET /v2/pg/img/manifests/1 -H 'Accept: application/vnd.oci.image.manifest.v1+json'
expect_status 200 "GET the pushed manifest"
LAYER=$(jq -r '.layers[0].digest' "$T/.b")
[[ $(jq -r '.layers[0].mediaType' "$T/.b") == *gzip ]] || fail "skopeo did not compress the layer: $(body)"
grep -q "layer $LAYER (gzip, .*stored as layer: as deflate tokens" "$SERVE_LOG" ||
  fail "the pgzip layer was not stored as deflate tokens: $(grep "$LAYER" "$SERVE_LOG" | tail -n 2)"
[[ $(stat_of layers_kept_as_pushed) == 0 ]] || fail "a layer was kept as pushed: $(cat "$M/.coffer/stats")"
[[ $(stat_of 'layers_by_method["deflate tokens"].layers') == 1 ]] ||
  fail "stats do not count the token layer: $(cat "$M/.coffer/stats")"
note "skopeo push (pgzip): layer $LAYER stored as tar + deflate tokens"

http GET "/v2/pg/img/blobs/$LAYER"
expect_status 200 "GET the pgzip layer"
cp "$T/.b" "$T/layer.gz"
[[ sha256:$(sha_of "$T/layer.gz") == "$LAYER" ]] || fail "GET $LAYER: the bytes have sha256:$(sha_of "$T/layer.gz")"
[[ $(gzip -dc "$T/layer.gz" | sha256sum | cut -d' ' -f1) == "$(sha_of "$T/layer.tar")" ]] ||
  fail "the pgzip layer does not decompress to the pushed tar"
size=$(stat -c %s "$T/layer.gz")
first=$((size / 2)) last=$((size / 2 + 99999))
http GET "/v2/pg/img/blobs/$LAYER" -H "Range: bytes=$first-$last"
expect_status 206 "Range GET of the pgzip layer"
cmp -s "$T/.b" <(tail -c +$((first + 1)) "$T/layer.gz" | head -c 100000) ||
  fail "Range $first-$last of the pgzip layer differs from the whole layer's bytes"
rm -rf "$T/out"
"${SK[@]}" copy -q --src-tls-verify=false "docker://$REG/pg/img:1" "oci:$T/out:x" >"$T/copy2.log" 2>&1 ||
  fail "skopeo copy coffer -> oci: $(tail -n 3 "$T/copy2.log")"
cmp -s "$T/out/blobs/sha256/${LAYER#sha256:}" "$T/layer.gz" || fail "skopeo copied back other bytes for $LAYER"
note "curl (whole, range) and skopeo copy back: the pushed bytes, digests verified"

# Another image whose tar holds the same 3 MB random file: stored once.
mkdir -p "$T/tree2"
cp "$T/tree/shared.bin" "$T/tree2/other-name.bin"
tar -C "$T/tree2" --mtime=@2000 -cf "$T/layer2.tar" .
dir_image "$T/src2" "$T/layer2.tar"
"${SK[@]}" copy -q --dest-compress --dest-tls-verify=false "dir:$T/src2" "docker://$REG/pg/two:1" \
  >"$T/copy3.log" 2>&1 || fail "skopeo copy of the second image: $(tail -n 3 "$T/copy3.log")"
wait_ingested
[[ $(stat_of layers_stored) -ge 2 ]] || fail "the second layer was not re-stored: $(cat "$M/.coffer/stats")"
serve_stop

offline=$(cf "$R" cat "$LAYER" | sha256sum | cut -d' ' -f1)
[[ sha256:$offline == "$LAYER" ]] || fail "offline coffer cat of the pgzip layer: sha256:$offline"
expect_ok "check --read-data" cf "$R" check --read-data
# Unique bytes once the pushed compressed copies are collected: the tar of
# tree 2 adds its headers, not the 3 MB again.
expect_ok "gc" cf "$R" gc
used=$(cf "$R" stats --json | jq .unique_bytes)
tar_bytes=$(stat -c %s "$T/layer.tar")
((used < tar_bytes + 1500000)) ||
  fail "unique bytes $used for a $tar_bytes-byte tar plus a second layer of a file it already holds"
note "offline cat re-creates the layer; check --read-data clean; the shared file is stored once ($used unique bytes, tar $tar_bytes)"
pass
