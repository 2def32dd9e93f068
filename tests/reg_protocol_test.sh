#!/usr/bin/env bash
# The registry's answers to bad input, with curl over the real `coffer serve`
# (FUSE mount): every refused request gets the spec's status and error code
# (bad digest, bad name, wrong Content-Range, oversized, malformed or schema1
# manifest, a manifest naming a missing blob), and afterwards nothing
# half-written is visible (the would-be tag and digest are 404, /blobs,
# /uploads and /repos on the mount are as before). Then three clients PUT the
# same 20 MiB blob at once: all succeed and the repository grows by about one
# copy.
source "$(dirname "$0")/reg_lib.sh"

R=$T/repo M=$T/mnt
new_repo "$R"
serve_start "$R" "$M" 0

# state: what a refused request must not change (blobs, uploads, repository tree).
state() {
  {
    echo "blobs:"; ls "$M/blobs/sha256" | sort
    echo "uploads:"; ls -a "$M/uploads" | sort
    echo "repos:"; (cd "$M/repos" && find . | sort)
  } 2>&1
}
BASE=$T/state.base
unchanged() {
  state >"$T/state.now"
  local d
  d=$(diff "$BASE" "$T/state.now")
  [[ -z $d ]] || fail "$1: the mount changed after a refused request: ${d:0:1500}"
}
rebase() { state >"$BASE"; }

# manifest_json CONFIG_DIGEST CONFIG_SIZE LAYER_DIGEST LAYER_SIZE [extra jq filter]
manifest_json() {
  jq -cn --arg cd "$1" --argjson cs "$2" --arg ld "$3" --argjson ls "$4" '{
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
    layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls}]
  }'"${5:+ | $5}"
}
OCI=application/vnd.oci.image.manifest.v1+json

# expect_manifest_absent NAME REF WHAT: GET and HEAD of the manifest are 404 MANIFEST_UNKNOWN.
expect_manifest_absent() {
  http GET "/v2/$1/manifests/$2"
  expect_error 404 MANIFEST_UNKNOWN "$3: GET /v2/$1/manifests/$2"
  http HEAD "/v2/$1/manifests/$2"
  expect_status 404 "$3: HEAD /v2/$1/manifests/$2"
}

# ---- a valid image first (the positive control for every check below)
echo '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$T/config.json"
rand_file "$T/layer" 300000
push_blob proto/img "$T/config.json"; CFG=$DIGEST; CFG_SIZE=$(stat -c %s "$T/config.json")
push_blob proto/img "$T/layer"; LAYER=$DIGEST; LAYER_SIZE=300000
http GET "/v2/proto/img/blobs/$LAYER"
expect_status 200 "GET the pushed layer"
cmp -s "$T/.b" "$T/layer" || fail "GET /v2/proto/img/blobs/$LAYER: the bytes differ from the pushed ones"
[[ -f $M/blobs/sha256/${LAYER#sha256:} ]] || fail "pushed layer is not in $M/blobs/sha256"
manifest_json "$CFG" "$CFG_SIZE" "$LAYER" "$LAYER_SIZE" >"$T/good.json"
rebase
push_manifest proto/img v1 "$T/good.json"
expect_status 201 "PUT a valid manifest"
GOOD=sha256:$(sha_of "$T/good.json")
[[ $(hdr Docker-Content-Digest) == "$GOOD" ]] || fail "PUT manifest: Docker-Content-Digest '$(hdr Docker-Content-Digest)', want $GOOD"
state >"$T/state.now"
diff -q "$BASE" "$T/state.now" >/dev/null && fail "the state listing did not change after a successful manifest PUT (the 'unchanged' checks would prove nothing)"
http GET /v2/proto/img/manifests/v1
expect_status 200 "GET the manifest by tag"
cmp -s "$T/.b" "$T/good.json" || fail "GET manifest by tag: not the exact bytes pushed"
[[ $(hdr Content-Type) == "$OCI" ]] || fail "GET manifest: Content-Type '$(hdr Content-Type)', want $OCI"
rebase
note "baseline: a valid OCI image in proto/img"

# ---- bad digests
for d in sha256:xyz "sha256:${LAYER:7:63}" "sha256:$(echo "${LAYER#sha256:}" | tr a-f A-F)" nodigest sha256: ; do
  http GET "/v2/proto/img/blobs/$d"
  expect_error 400 DIGEST_INVALID "GET blob with the malformed digest '$d'"
done
http GET "/v2/proto/img/manifests/sha256:123"
expect_error 400 DIGEST_INVALID "GET manifest by a malformed digest"
http HEAD "/v2/proto/img/blobs/sha256:zz"
expect_status 400 "HEAD blob with a malformed digest"
http GET "/v2/proto/img/blobs/sha512:$(printf 'ab%.0s' {1..64})"
expect_error 400 UNSUPPORTED "GET blob with a sha512 digest"
unchanged "GET with bad digests"

rand_file "$T/blob2" 200000
REAL2=sha256:$(sha_of "$T/blob2")
WRONG=sha256:$(echo wrong | sha256sum | cut -c1-64)
http POST "/v2/proto/img/blobs/uploads/?digest=sha256:nothex" -H "Content-Type: application/octet-stream" --data-binary "@$T/blob2"
expect_error 400 DIGEST_INVALID "monolithic POST with a malformed digest"
unchanged "monolithic POST with a malformed digest"
http POST "/v2/proto/img/blobs/uploads/?digest=$WRONG" -H "Content-Type: application/octet-stream" --data-binary "@$T/blob2"
expect_error 400 DIGEST_INVALID "monolithic POST whose digest does not match the body"
for d in "$WRONG" "$REAL2"; do
  http GET "/v2/proto/img/blobs/$d"
  expect_error 404 BLOB_UNKNOWN "GET $d after the refused monolithic POST"
done
[[ ! -e $M/blobs/sha256/${REAL2#sha256:} && ! -e $M/blobs/sha256/${WRONG#sha256:} ]] ||
  fail "a refused monolithic upload became a blob on the mount"
unchanged "monolithic POST with a mismatched digest"

http POST /v2/proto/img/blobs/uploads/
expect_status 202 "POST (start an upload)"
LOC=$(absolute "$(hdr Location)")
http PATCH "$LOC" -H 'Content-Type: application/octet-stream' --data-binary "@$T/blob2"
expect_status 202 "PATCH the whole blob"
http PUT "$LOC"
expect_error 400 DIGEST_INVALID "PUT to finish an upload without ?digest="
http PUT "$(with_query "$LOC" "digest=$WRONG")"
expect_error 400 DIGEST_INVALID "PUT ?digest= that does not match the upload"
http GET "$LOC"
expect_error 404 BLOB_UPLOAD_UNKNOWN "upload status after a digest mismatch (the upload must be gone)"
http GET "/v2/proto/img/blobs/$REAL2"
expect_error 404 BLOB_UNKNOWN "GET the real digest of an upload refused for a digest mismatch"
unchanged "chunked upload finished with a mismatched digest"
note "bad digests: 400 DIGEST_INVALID / UNSUPPORTED, nothing published"

# ---- bad names, tags and unknown repositories
for n in Proto/img proto/-img proto/img- "proto/a..b" proto//img "_x/img" "proto/img/"; do
  http GET "/v2/$n/tags/list"
  expect_error 400 NAME_INVALID "GET /v2/$n/tags/list"
done
http GET /v2/proto/../etc/tags/list --path-as-is
expect_error 400 NAME_INVALID "GET a name with '..' (path traversal)"
LONG=$(printf 'a%.0s' {1..256})
http GET "/v2/$LONG/tags/list"
expect_error 400 NAME_INVALID "a 256-character repository name"
http POST /v2/Bad_Name/blobs/uploads/
expect_error 400 NAME_INVALID "POST an upload to an invalid name"
push_manifest "proto/A" v1 "$T/good.json"
expect_error 400 NAME_INVALID "PUT a manifest to an invalid name"
http GET /v2/proto/unknown/tags/list
expect_error 404 NAME_UNKNOWN "tags of a repository that does not exist"
http GET /v2/proto/unknown/manifests/v1
expect_error 404 "MANIFEST_UNKNOWN|NAME_UNKNOWN" "a manifest of a repository that does not exist"
push_manifest proto/img "-v1" "$T/good.json"
expect_error 400 TAG_INVALID "PUT a manifest with the tag '-v1'"
push_manifest proto/img "$(printf 't%.0s' {1..129})" "$T/good.json"
expect_error 400 TAG_INVALID "PUT a manifest with a 129-character tag"
[[ $(ls -A "$M/repos") == proto ]] || fail "an invalid name left something in $M/repos: $(ls -A "$M/repos")"
unchanged "requests with bad names and tags"
note "bad names: 400 NAME_INVALID / TAG_INVALID, unknown repository 404 NAME_UNKNOWN"

# ---- chunked upload with wrong Content-Ranges
rand_file "$T/blob3" 3000
head -c 1000 "$T/blob3" >"$T/b3.0"
tail -c +1001 "$T/blob3" | head -c 1000 >"$T/b3.1"
tail -c +2001 "$T/blob3" >"$T/b3.2"
http POST /v2/proto/img/blobs/uploads/
expect_status 202 "POST (start a chunked upload)"
LOC=$(absolute "$(hdr Location)")
http PATCH "$LOC" -H 'Content-Range: 0-999' -H 'Content-Type: application/octet-stream' --data-binary "@$T/b3.0"
expect_status 202 "PATCH bytes 0-999"
[[ $(hdr Range) == 0-999 ]] || fail "PATCH 0-999: Range '$(hdr Range)', want 0-999"
for cr in 0-999 2000-2999 500-1499 1-1000 bytes=abc 1000; do
  http PATCH "$LOC" -H "Content-Range: $cr" -H 'Content-Type: application/octet-stream' --data-binary "@$T/b3.1"
  expect_status 416 "PATCH with the wrong Content-Range '$cr' after 1000 bytes"
  [[ $(hdr Range) == 0-999 || -z $(hdr Range) ]] || fail "416 for '$cr': Range '$(hdr Range)', want 0-999"
done
http PATCH "$LOC" -H 'Content-Range: 1000-2999' -H 'Content-Type: application/octet-stream' --data-binary "@$T/b3.1"
expect_error 400 SIZE_INVALID "PATCH whose Content-Range (2000 bytes) disagrees with its length (1000)"
http GET "$LOC"
expect_status 204 "upload status after refused chunks"
[[ $(hdr Range) == 0-999 ]] || fail "refused chunks changed the upload: Range '$(hdr Range)', want 0-999"
http PATCH "$LOC" -H 'Content-Range: 1000-1999' -H 'Content-Type: application/octet-stream' --data-binary "@$T/b3.1"
expect_status 202 "PATCH bytes 1000-1999 (the right range)"
http PUT "$(with_query "$LOC" "digest=sha256:$(sha_of "$T/blob3")")" -H 'Content-Range: 2000-2999' \
  -H 'Content-Type: application/octet-stream' --data-binary "@$T/b3.2"
expect_status 201 "PUT the last chunk 2000-2999 with ?digest="
http GET "/v2/proto/img/blobs/sha256:$(sha_of "$T/blob3")"
expect_status 200 "GET the blob uploaded in three chunks"
cmp -s "$T/.b" "$T/blob3" || fail "the blob uploaded in three chunks (after refused ones) reads back different"
rebase
note "chunked upload: wrong Content-Range 416 (Range unchanged), wrong length 400 SIZE_INVALID, then completes"

# ---- oversized manifests (the limit is 4 MiB = 4194304 bytes)
# big_manifest BYTES OUT: the good manifest padded with an annotation to exactly BYTES.
big_manifest() {
  python3 - "$T/good.json" "$1" "$2" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1])); want = int(sys.argv[2])
m["annotations"] = {"pad": ""}
base = len(json.dumps(m, separators=(",", ":")))
m["annotations"]["pad"] = "x" * (want - base)
s = json.dumps(m, separators=(",", ":"))
assert len(s) == want, (len(s), want)
open(sys.argv[3], "w").write(s)
EOF
}
big_manifest 4194305 "$T/big.json" || fail "making a 4 MiB + 1 manifest"
BIG=sha256:$(sha_of "$T/big.json")
push_manifest proto/img big "$T/big.json"
expect_error 413 SIZE_INVALID "PUT a manifest of 4 MiB + 1 byte (Content-Length)"
expect_manifest_absent proto/img big "oversized manifest"
expect_manifest_absent proto/img "$BIG" "oversized manifest (by digest)"
unchanged "oversized manifest (Content-Length)"
http PUT /v2/proto/img/manifests/bigchunked -H "Content-Type: $OCI" -H 'Transfer-Encoding: chunked' --data-binary "@$T/big.json"
[[ $CODE == 413 || $CODE == 000 ]] || fail "PUT a 4 MiB + 1 manifest with a chunked body: HTTP $CODE, want 413 (body: $(head -c 300 "$T/.b"))"
[[ $CODE == 000 ]] && note "chunked oversized manifest: the connection closed before curl read the answer ($(cat "$T/.curl.err"))"
[[ $CODE == 000 ]] || [[ $(err_code) == SIZE_INVALID ]] || fail "chunked oversized manifest: code '$(err_code)', want SIZE_INVALID"
expect_manifest_absent proto/img bigchunked "oversized chunked manifest"
unchanged "oversized manifest (chunked body)"
big_manifest 4194304 "$T/max.json" || fail "making a 4 MiB manifest"
push_manifest proto/img max "$T/max.json"
expect_status 201 "PUT a manifest of exactly 4 MiB (the limit)"
http GET /v2/proto/img/manifests/max
cmp -s "$T/.b" "$T/max.json" || fail "the 4 MiB manifest reads back different"
rebase
note "manifest size: 4 MiB accepted, 4 MiB + 1 refused 413 SIZE_INVALID"

# ---- malformed manifests
try_bad_manifest() {  # WHAT FILE CONTENT-TYPE WANTCODE TAG
  local what=$1 f=$2 ct=$3 want=$4 tag=$5
  push_manifest proto/img "$tag" "$f" "$ct"
  expect_error 400 "$want" "$what"
  cp "$T/.b" "$T/lastbad.json"
  expect_manifest_absent proto/img "$tag" "$what"
  expect_manifest_absent proto/img "sha256:$(sha_of "$f")" "$what (by digest)"
  [[ ! -e $M/blobs/sha256/$(sha_of "$f") ]] || fail "$what: the refused manifest's bytes became a blob"
  unchanged "$what"
}
printf '{"schemaVersion": 2, "config": ' >"$T/bad1.json"
try_bad_manifest "a manifest that is not JSON" "$T/bad1.json" "$OCI" MANIFEST_INVALID bad1
manifest_json "$CFG" "$CFG_SIZE" "$LAYER" "$LAYER_SIZE" '.schemaVersion = 3' >"$T/bad2.json"
try_bad_manifest "schemaVersion 3" "$T/bad2.json" "$OCI" MANIFEST_INVALID bad2
manifest_json "$CFG" "$CFG_SIZE" "$LAYER" "$LAYER_SIZE" '.layers[0].digest = "sha256:zz"' >"$T/bad3.json"
try_bad_manifest "a layer descriptor with a malformed digest" "$T/bad3.json" "$OCI" MANIFEST_INVALID bad3
manifest_json "$CFG" "$CFG_SIZE" "$LAYER" "$LAYER_SIZE" 'del(.config)' >"$T/bad4.json"
try_bad_manifest "an image manifest without config" "$T/bad4.json" "$OCI" MANIFEST_INVALID bad4
manifest_json "$CFG" "$CFG_SIZE" "$LAYER" "$LAYER_SIZE" '.annotations = {"v": "5"}' >"$T/bad5.json"
try_bad_manifest "Content-Type other than the manifest's mediaType" "$T/bad5.json" \
  application/vnd.docker.distribution.manifest.v2+json MANIFEST_INVALID bad5
echo '[1, 2, 3]' >"$T/bad6.json"
try_bad_manifest "a JSON array as manifest" "$T/bad6.json" "$OCI" MANIFEST_INVALID bad6
note "malformed manifests: 400 MANIFEST_INVALID, nothing stored"

# ---- manifests naming blobs the repository does not have
rand_file "$T/never" 1000
NEVER=sha256:$(sha_of "$T/never")
manifest_json "$CFG" "$CFG_SIZE" "$NEVER" 1000 >"$T/missing1.json"
try_bad_manifest "a layer that was never pushed" "$T/missing1.json" "$OCI" MANIFEST_BLOB_UNKNOWN missing1
manifest_json "$NEVER" 1000 "$LAYER" "$LAYER_SIZE" >"$T/missing2.json"
try_bad_manifest "a config that was never pushed" "$T/missing2.json" "$OCI" MANIFEST_BLOB_UNKNOWN missing2
rand_file "$T/other" 5000
push_blob proto/other "$T/other"; OTHER=$DIGEST
rebase
manifest_json "$CFG" "$CFG_SIZE" "$OTHER" 5000 >"$T/missing3.json"
try_bad_manifest "a layer pushed only to another repository" "$T/missing3.json" "$OCI" MANIFEST_BLOB_UNKNOWN missing3
jq -cn --arg d "sha256:$(echo index | sha256sum | cut -c1-64)" '{schemaVersion: 2,
  mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: 100}]}' >"$T/missing4.json"
try_bad_manifest "an index naming an unknown manifest" "$T/missing4.json" application/vnd.oci.image.index.v1+json \
  MANIFEST_BLOB_UNKNOWN missing4
note "missing blobs: 400 MANIFEST_BLOB_UNKNOWN"

# ---- Docker schema1 (refused with a clear message)
jq -n '{schemaVersion: 1, name: "proto/img", tag: "s1", architecture: "amd64",
  fsLayers: [{blobSum: $l}], history: [{v1Compatibility: "{\"id\":\"x\"}"}],
  signatures: [{header: {alg: "ES256"}, signature: "AAAA", protected: "e30"}]}' --arg l "$LAYER" >"$T/s1.json"
for ct in application/vnd.docker.distribution.manifest.v1+prettyjws application/vnd.docker.distribution.manifest.v1+json; do
  try_bad_manifest "a Docker schema1 manifest ($ct)" "$T/s1.json" "$ct" MANIFEST_INVALID s1
  msg=$(jq -r '.errors[0] | "\(.message) \(.detail // "")"' "$T/lastbad.json")
  [[ $msg == *[Ss]chema1* || $msg == *"schema 1"* || $msg == *"schemaVersion 1"* ]] ||
    fail "schema1 manifest refused without saying schema1 is not supported: '$msg'"
done
note "schema1: 400 MANIFEST_INVALID ($msg)"

# ---- a manifest PUT by a digest that is not its content
push_manifest proto/img "$WRONG" "$T/good.json"
expect_error 400 DIGEST_INVALID "PUT a manifest by a digest other than its content's"
expect_manifest_absent proto/img "$WRONG" "manifest put by a wrong digest"
unchanged "manifest put by a wrong digest"

# the good image is intact after all of that
http GET /v2/proto/img/manifests/v1
expect_status 200 "GET the valid manifest after the refused requests"
cmp -s "$T/.b" "$T/good.json" || fail "the valid manifest changed"
http GET /v2/proto/img/tags/list
expect_status 200 "tags/list"
[[ $(jq -c .tags "$T/.b") == '["max","v1"]' ]] || fail "tags after the refused pushes: $(jq -c .tags "$T/.b"), want [\"max\",\"v1\"]"

# ---- three clients PUT the same 20 MiB blob at once
BLOB=$T/big.blob
rand_file "$BLOB" $((20 * 1024 * 1024))
BD=sha256:$(sha_of "$BLOB")
SIZE=$(stat -c %s "$BLOB")
sync
BEFORE=$(du -sb "$R" | cut -f1)
locs=()
for name in proto/c1 proto/c1 proto/c2; do
  http POST "/v2/$name/blobs/uploads/"
  expect_status 202 "POST an upload in $name"
  locs+=("$(absolute "$(hdr Location)")")
done
pids=()
for i in 0 1 2; do
  curl -sS -o "$T/par.$i.b" -D "$T/par.$i.h" -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
    -T "$BLOB" "$(with_query "${locs[i]}" "digest=$BD")" >"$T/par.$i.code" 2>"$T/par.$i.err" &
  pids+=($!)
done
for i in 0 1 2; do wait "${pids[i]}"; done
for i in 0 1 2; do
  [[ $(cat "$T/par.$i.code") == 201 ]] ||
    fail "concurrent PUT $i of the same 20 MiB blob: HTTP $(cat "$T/par.$i.code"), want 201 ($(head -c 400 "$T/par.$i.b") $(cat "$T/par.$i.err"))"
done
for name in proto/c1 proto/c2; do
  http GET "/v2/$name/blobs/$BD"
  expect_status 200 "GET the concurrently pushed blob from $name"
  cmp -s "$T/.b" "$BLOB" || fail "the concurrently pushed blob reads back different from $name"
done
[[ -z $(ls -A "$M/uploads") ]] || fail "uploads left behind after the concurrent pushes: $(ls -A "$M/uploads")"
sync
AFTER=$(du -sb "$R" | cut -f1)
GROWTH=$((AFTER - BEFORE))
note "3 concurrent PUTs of a $SIZE-byte blob: all 201; repository grew by $GROWTH bytes ($((GROWTH * 100 / SIZE))% of the blob)"
((GROWTH * 2 < SIZE * 3)) || fail "the repository grew by $GROWTH bytes for one $SIZE-byte blob pushed 3 times at once (want < 1.5x: one copy)"
((GROWTH * 10 > SIZE * 9)) || fail "the repository grew by only $GROWTH bytes for a $SIZE-byte random blob: is it stored at all?"

serve_stop
AFTER=$(du -sb "$R" | cut -f1)
GROWTH=$((AFTER - BEFORE))
((GROWTH * 2 < SIZE * 3)) || fail "after stopping, the repository has grown by $GROWTH bytes for one $SIZE-byte blob (want < 1.5x)"
note "after stop: growth $GROWTH bytes ($((GROWTH * 100 / SIZE))%)"
pass
