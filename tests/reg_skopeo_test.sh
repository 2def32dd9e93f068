#!/usr/bin/env bash
# skopeo through `coffer serve`, both ways: a local image (docker import plus a
# payload layer, taken from the engine with docker-daemon:) is copied to coffer;
# `skopeo copy` docker://coffer -> oci:DIR and oci:DIR -> docker://coffer (a
# second name). The digests skopeo reports, the raw manifests `skopeo inspect`
# reads back and the registry's Docker-Content-Digest all agree; every blob in
# the OCI layouts hashes to its name; layers are carried byte for byte and the
# payload inside is intact.
source "$(dirname "$0")/reg_lib.sh"
command -v skopeo >/dev/null || fail "the test needs skopeo (apt-get install skopeo)"

ensure_dockerd
R=$T/repo M=$T/mnt
new_repo "$R"
serve_start "$R" "$M" 0
ID=$(basename "$T" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9')
LOCAL=coffer-regtest/$ID
make_base_image "$LOCAL-base:1"
rand_file "$T/payload" $((1536 * 1024))
make_image "$LOCAL-base:1" "$LOCAL:1" "$T/payload"
SK=(skopeo --command-timeout 120s)

# verify_layout DIR WHAT: every blob file in the OCI layout hashes to its name;
# index.json names manifests that are there. Prints the manifest digest.
verify_layout() {
  local dir=$1 what=$2 f n=0 bad=""
  [[ -f $dir/oci-layout && -f $dir/index.json ]] || fail "$what: $dir is not an OCI layout (oci-layout, index.json)"
  for f in "$dir"/blobs/sha256/*; do
    [[ $(sha_of "$f") == "$(basename "$f")" ]] || bad+=" $(basename "$f")"
    n=$((n + 1))
  done
  [[ -z $bad ]] || fail "$what: blobs in $dir whose sha256 is not their name:$bad"
  ((n >= 4)) || fail "$what: only $n blobs in $dir (want manifest, config and 2 layers)"
  LAYOUT_MANIFEST=$(jq -r '.manifests[0].digest' "$dir/index.json")
  [[ -f $dir/blobs/sha256/${LAYOUT_MANIFEST#sha256:} ]] || fail "$what: index.json names $LAYOUT_MANIFEST, which is not in blobs/"
  note "$what: $n blobs in $dir, each hashes to its name"
}

# payload_from_layout DIR MANIFEST_DIGEST OUT: /payload out of the layout's layers.
payload_from_layout() {
  local dir=$1 man=$2 out=$3 l
  for l in $(jq -r '.layers[].digest' "$dir/blobs/sha256/${man#sha256:}"); do
    if tar -tzf "$dir/blobs/sha256/${l#sha256:}" 2>/dev/null | grep -qx '\(\./\)\?payload'; then
      tar -xzOf "$dir/blobs/sha256/${l#sha256:}" payload >"$out" 2>/dev/null ||
        tar -xzOf "$dir/blobs/sha256/${l#sha256:}" ./payload >"$out"
      return 0
    fi
  done
  fail "no layer of $man in $dir holds /payload"
}

# raw_digest REF: sha256 of the manifest `skopeo inspect --raw` reads.
raw_digest() {
  "${SK[@]}" inspect --raw --tls-verify=false "$1" >"$T/raw.json" 2>"$T/raw.err" ||
    fail "skopeo inspect --raw $1: $(cat "$T/raw.err")"
  echo "sha256:$(sha_of "$T/raw.json")"
}

# ---- engine -> coffer (skopeo push)
"${SK[@]}" copy --dest-tls-verify=false --digestfile "$T/d.src" "docker-daemon:$LOCAL:1" "docker://$REG/sk/src:1" \
  >"$T/copy0.log" 2>&1 || fail "skopeo copy docker-daemon:$LOCAL:1 docker://$REG/sk/src:1: $(tail -n 5 "$T/copy0.log")"
SRC=$(cat "$T/d.src")
[[ $(raw_digest "docker://$REG/sk/src:1") == "$SRC" ]] || fail "skopeo inspect --raw sk/src:1 hashes to $(sha_of "$T/raw.json"), skopeo pushed $SRC"
SRC_LAYERS=$(jq -c '[.layers[].digest]' "$T/raw.json")
http HEAD /v2/sk/src/manifests/1
[[ $(hdr Docker-Content-Digest) == "$SRC" ]] || fail "registry: Docker-Content-Digest of sk/src:1 '$(hdr Docker-Content-Digest)', want $SRC"
"${SK[@]}" inspect --tls-verify=false "docker://$REG/sk/src:1" >"$T/inspect.json" 2>"$T/inspect.err" ||
  fail "skopeo inspect sk/src:1: $(cat "$T/inspect.err")"
[[ $(jq -r .Digest "$T/inspect.json") == "$SRC" ]] || fail "skopeo inspect: Digest $(jq -r .Digest "$T/inspect.json"), want $SRC"
[[ $(jq -c '.RepoTags' "$T/inspect.json") == '["1"]' ]] || fail "skopeo inspect: RepoTags $(jq -c .RepoTags "$T/inspect.json")"
note "docker-daemon: -> docker://coffer/sk/src:1: $SRC"

# ---- coffer -> OCI layout
"${SK[@]}" copy --src-tls-verify=false "docker://$REG/sk/src:1" "oci:$T/oci1:img" >"$T/copy1.log" 2>&1 ||
  fail "skopeo copy docker://$REG/sk/src:1 oci:$T/oci1:img: $(tail -n 5 "$T/copy1.log")"
verify_layout "$T/oci1" "docker://coffer -> oci:"
M1=$LAYOUT_MANIFEST
[[ $(jq -c '[.layers[].digest]' "$T/oci1/blobs/sha256/${M1#sha256:}") == "$SRC_LAYERS" ]] ||
  fail "the layers in the OCI layout are not the pushed ones: $(jq -c '[.layers[].digest]' "$T/oci1/blobs/sha256/${M1#sha256:}") vs $SRC_LAYERS"
payload_from_layout "$T/oci1" "$M1" "$T/got1"
cmp -s "$T/got1" "$T/payload" || fail "/payload in the OCI layout copied from coffer differs"

# ---- OCI layout -> coffer, another name
"${SK[@]}" copy --dest-tls-verify=false --digestfile "$T/d.copy" "oci:$T/oci1:img" "docker://$REG/sk/copy:2" \
  >"$T/copy2.log" 2>&1 || fail "skopeo copy oci:$T/oci1:img docker://$REG/sk/copy:2: $(tail -n 5 "$T/copy2.log")"
COPY=$(cat "$T/d.copy")
[[ $COPY == "$M1" ]] || fail "skopeo pushed the OCI manifest $M1 as $COPY (it should be carried unchanged)"
[[ $(raw_digest "docker://$REG/sk/copy:2") == "$COPY" ]] || fail "skopeo inspect --raw sk/copy:2 hashes to $(sha_of "$T/raw.json"), want $COPY"
cmp -s "$T/raw.json" "$T/oci1/blobs/sha256/${M1#sha256:}" || fail "the manifest read back from sk/copy:2 is not the bytes in the layout"
[[ $(raw_digest "docker://$REG/sk/copy@$COPY") == "$COPY" ]] || fail "inspect sk/copy by digest: hashes to $(sha_of "$T/raw.json")"
http GET /v2/sk/copy/manifests/2
[[ $(hdr Content-Type) == application/vnd.oci.image.manifest.v1+json ]] ||
  fail "sk/copy:2: Content-Type '$(hdr Content-Type)', want application/vnd.oci.image.manifest.v1+json (as pushed)"
[[ $(hdr Docker-Content-Digest) == "$COPY" ]] || fail "sk/copy:2: Docker-Content-Digest '$(hdr Docker-Content-Digest)', want $COPY"
grep -q -i 'skipped: .*already exists\|Copying blob .* skipped' "$T/copy2.log" &&
  note "oci: -> docker://coffer/sk/copy:2 reused blobs already in the store"
note "oci: -> docker://coffer/sk/copy:2: $COPY"

# ---- and back again: coffer (OCI manifest) -> a second layout, byte for byte
"${SK[@]}" copy --src-tls-verify=false "docker://$REG/sk/copy:2" "oci:$T/oci2:img" >"$T/copy3.log" 2>&1 ||
  fail "skopeo copy docker://$REG/sk/copy:2 oci:$T/oci2:img: $(tail -n 5 "$T/copy3.log")"
verify_layout "$T/oci2" "docker://coffer/sk/copy -> oci:"
[[ $LAYOUT_MANIFEST == "$COPY" ]] || fail "copying sk/copy:2 back gave manifest $LAYOUT_MANIFEST, want $COPY"
for f in "$T"/oci1/blobs/sha256/*; do
  cmp -s "$f" "$T/oci2/blobs/sha256/$(basename "$f")" || fail "blob $(basename "$f") differs between the two OCI layouts"
done
payload_from_layout "$T/oci2" "$COPY" "$T/got2"
cmp -s "$T/got2" "$T/payload" || fail "/payload after the round trip through coffer differs"

# tags and catalog agree
http GET /v2/_catalog
[[ $(jq -c .repositories "$T/.b") == '["sk/copy","sk/src"]' ]] || fail "catalog: $(cat "$T/.b")"
"${SK[@]}" list-tags --tls-verify=false "docker://$REG/sk/copy" >"$T/tags.json" 2>&1 || fail "skopeo list-tags: $(cat "$T/tags.json")"
[[ $(jq -c .Tags "$T/tags.json") == '["2"]' ]] || fail "skopeo list-tags sk/copy: $(cat "$T/tags.json")"
note "round trip: both layouts byte-identical, payload intact, tags and catalog right"

serve_stop
pass
