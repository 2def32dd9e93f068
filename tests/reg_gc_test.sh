#!/usr/bin/env bash
# Online garbage collection of registry blobs: `coffer gc` against a running
# `coffer serve` deletes the blobs no manifest references once their grace
# period is over, while pulls go on, and frees their chunks.
#
# A docker image (two layers) is pushed, plus a loose blob no manifest names.
# gc with the default grace (1 h) keeps the loose blob (recently pushed); gc
# --grace 0s deletes it (GET 404, repository bytes shrink) while four clients
# pull the image's blobs in a loop and verify every digest; docker then pulls
# the image byte for byte. Once the manifest is deleted, gc frees its config,
# layers and the manifest itself; `coffer check --read-data` stays clean.
source "$(dirname "$0")/reg_lib.sh"

ensure_dockerd
R=$T/repo M=$T/mnt
new_repo "$R"
serve_start "$R" "$M" 0

make_payload_image 3000000
IMG=$REG/gc/img:1
docker tag "$LOCAL:1" "$IMG" && track_image "$IMG"
docker_push "$IMG" "$T/push.log"
MD=$PUSHED
http GET /v2/gc/img/manifests/1 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json'
expect_status 200 "GET the pushed manifest"
cp "$T/.b" "$T/manifest.json"
mapfile -t BLOBS < <(jq -r '.config.digest, .layers[].digest' "$T/manifest.json")
((${#BLOBS[@]} == 3)) || fail "the image should have a config and two layers: ${BLOBS[*]}"
rand_file "$T/loose" 4000000
push_blob gc/loose "$T/loose"
LOOSE=$DIGEST

# Blobs are read-only to everyone but the daemon's own garbage collector.
expect_err "Read-only file system" "rm of a blob on the serve mount" rm -f "$M/blobs/sha256/${LOOSE#sha256:}"

gc_json() { cf "$R" --json gc "$@" >"$T/gc.json" 2>"$T/gc.err" || fail "coffer gc $*: $(cat "$T/gc.err")"; }
field() { jq -r ".$1" "$T/gc.json"; }
stored() { cf "$R" --json stats | jq -r .repo_bytes; }

# ---- the default grace period protects a blob pushed just now
gc_json
[[ $(field registry_manifests) == 1 && $(field registry_blobs_deleted) == 0 && $(field registry_blobs_recent) == 1 ]] ||
  fail "gc with the default grace: $(cat "$T/gc.json")"
http HEAD "/v2/gc/loose/blobs/$LOOSE"
expect_status 200 "the loose blob after gc with the default grace"
note "gc (grace 1h): $(field registry_blobs_kept) referenced, 1 recent kept"

# ---- gc --grace 0s while four clients pull and verify
pull_loop() {  # pull_loop N: GETs every blob of the image until $T/stop appears
  local i=0 d got
  while [[ ! -e $T/stop ]] || ((i == 0)); do
    for d in "${BLOBS[@]}"; do
      got=$(curl -sS --max-time 60 "$URL/v2/gc/img/blobs/$d" | sha256sum | cut -d' ' -f1)
      [[ sha256:$got == "$d" ]] || echo "pull $1: GET $d gave sha256:$got" >>"$T/pull-errors"
      i=$((i + 1))
    done
  done
  echo "$i" >"$T/pulls.$1"
}
before=$(stored)
pullers=()
for n in 1 2 3 4; do
  pull_loop $n &
  pullers+=($!)
done
sleep 1
gc_json --grace 0s
touch "$T/stop"
wait "${pullers[@]}"
[[ ! -s $T/pull-errors ]] || fail "pulls during gc failed: $(head -n 5 "$T/pull-errors")"
pulls=$(cat "$T"/pulls.* | paste -sd+ | bc)
[[ $(field registry_blobs_deleted) == 1 && $(field registry_bytes_deleted) == 4000000 ]] ||
  fail "gc --grace 0s should delete the loose blob only: $(cat "$T/gc.json")"
http GET "/v2/gc/loose/blobs/$LOOSE"
expect_error 404 BLOB_UNKNOWN "GET the collected blob"
after=$(stored)
((after < before - 3000000)) || fail "repository bytes $before -> $after: the loose blob's 4 MB were not freed"
note "gc --grace 0s during $pulls verified pulls: loose blob deleted, repository $before -> $after bytes"

docker_forget "$IMG" "$LOCAL:1"
docker pull "$IMG" >"$T/pull.log" 2>&1 || fail "docker pull after gc: $(tail -n 3 "$T/pull.log")"
docker_payload "$IMG" "$T/got"
cmp -s "$T/got" "$T/payload" || fail "/payload pulled after gc differs"

# ---- a deleted manifest's blobs go at the next gc
http DELETE "/v2/gc/img/manifests/$MD"
expect_status 202 "DELETE the manifest"
gc_json --grace 0s
[[ $(field registry_manifests) == 0 && $(field registry_blobs_deleted) == 4 ]] ||
  fail "gc after the manifest's deletion should free config, two layers and the manifest: $(cat "$T/gc.json")"
for d in "${BLOBS[@]}"; do
  [[ ! -e $M/blobs/sha256/${d#sha256:} ]] || fail "blob $d is still in $M/blobs after gc"
done
note "manifest deleted: gc freed its config, layers and itself"
serve_stop
expect_ok "check --read-data after gc" cf "$R" check --read-data
pass
