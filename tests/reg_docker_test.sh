#!/usr/bin/env bash
# docker push and pull through `coffer serve`: an image made locally (docker
# import of a busybox rootfs, plus a layer with a random /payload) is pushed,
# removed from the engine and pulled back: the pulled digest is the pushed one,
# the image id (config digest) is the same and the payload inside is intact.
# A second image sharing the base layer, pushed to another repository, mounts
# that layer ("Mounted from" / "Layer already exists"); pushing the first image
# again uploads nothing ("Layer already exists" for every layer).
source "$(dirname "$0")/reg_lib.sh"

ensure_dockerd
R=$T/repo M=$T/mnt
new_repo "$R"
serve_start "$R" "$M" 0
ID=$(basename "$T" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9')
LOCAL=coffer-regtest/$ID
ONE=$REG/reg/one:1 TWO=$REG/reg/two:1

make_base_image "$LOCAL-base:1"
rand_file "$T/payload1" $((2 * 1024 * 1024))
rand_file "$T/payload2" $((1024 * 1024))
make_image "$LOCAL-base:1" "$LOCAL-one:1" "$T/payload1"
make_image "$LOCAL-base:1" "$LOCAL-two:1" "$T/payload2"
ID1=$(docker image inspect --format '{{.Id}}' "$LOCAL-one:1")
mapfile -t L1 < <(layer_ids "$LOCAL-one:1")
mapfile -t L2 < <(layer_ids "$LOCAL-two:1")
((${#L1[@]} == 2 && ${#L2[@]} == 2)) || fail "the test images should have 2 layers each: ${L1[*]} / ${L2[*]}"
[[ ${L1[0]} == "${L2[0]}" && ${L1[1]} != "${L2[1]}" ]] || fail "the test images should share exactly their base layer"
docker tag "$LOCAL-one:1" "$ONE" && docker tag "$LOCAL-two:1" "$TWO" || fail "docker tag"
track_image "$ONE" "$TWO"

# ---- push the first image
docker_push "$ONE" "$T/push1.log"
P1=$PUSHED
n=$(grep -c ': Pushed$' "$T/push1.log")
((n == 2)) || fail "first push of $ONE: $n layers 'Pushed', want 2: $(cat "$T/push1.log")"
http HEAD /v2/reg/one/manifests/1
expect_status 200 "HEAD /v2/reg/one/manifests/1 after docker push"
[[ $(hdr Docker-Content-Digest) == "$P1" ]] || fail "the registry has digest '$(hdr Docker-Content-Digest)' for reg/one:1; docker pushed $P1"
http GET /v2/reg/one/manifests/1
[[ sha256:$(sha_of "$T/.b") == "$P1" ]] || fail "the manifest bytes served for reg/one:1 do not hash to the pushed digest $P1"
MT=$(jq -r .mediaType "$T/.b")
[[ $(hdr Content-Type) == "$MT" ]] || fail "GET manifest: Content-Type '$(hdr Content-Type)', the manifest says '$MT'"
BASE_BLOB=$(jq -r '.layers[0].digest' "$T/.b")
note "pushed $ONE: $P1 ($MT)"

# ---- a second image with the same base layer, to another repository
docker_push "$TWO" "$T/push2.log"
P2=$PUSHED
grep -E -q 'Mounted from reg/one|Layer already exists' "$T/push2.log" ||
  fail "pushing $TWO (sharing the base layer with reg/one) neither mounted nor skipped a layer: $(cat "$T/push2.log")"
n=$(grep -c ': Pushed$' "$T/push2.log")
((n == 1)) || fail "push of $TWO: $n layers 'Pushed', want 1 (only its own payload layer): $(cat "$T/push2.log")"
note "pushed $TWO: $(grep -E -o 'Mounted from reg/one|Layer already exists' "$T/push2.log" | head -n 1) for the shared base layer"
http GET "/v2/reg/two/blobs/$BASE_BLOB"
expect_status 200 "GET the shared base layer through reg/two"
http GET /v2/_catalog
[[ $(jq -c .repositories "$T/.b") == '["reg/one","reg/two"]' ]] || fail "catalog: $(cat "$T/.b"), want reg/one and reg/two"

# ---- the first image again: nothing to upload
docker_push "$ONE" "$T/push3.log"
[[ $PUSHED == "$P1" ]] || fail "pushing $ONE again gave digest $PUSHED, the first push $P1"
n=$(grep -c ': Layer already exists$' "$T/push3.log")
((n == 2)) || fail "pushing $ONE again: $n layers 'Layer already exists', want 2: $(cat "$T/push3.log")"
! grep -q ': Pushed$' "$T/push3.log" || fail "pushing $ONE again uploaded a layer: $(cat "$T/push3.log")"
note "pushed $ONE again: Layer already exists x2, same digest"

# ---- forget everything locally, pull it back
docker_forget "$ONE" "$TWO" "$LOCAL-one:1" "$LOCAL-two:1" "$LOCAL-base:1"
docker pull "$ONE" >"$T/pull.log" 2>&1 || fail "docker pull $ONE failed: $(tail -n 5 "$T/pull.log")"
n=$(grep -c ': Pull complete$' "$T/pull.log")
((n == 2)) || fail "docker pull $ONE: $n layers 'Pull complete', want 2 (nothing was left locally): $(cat "$T/pull.log")"
RD=$(docker inspect --format '{{index .RepoDigests 0}}' "$ONE")
[[ $RD == "$REG/reg/one@$P1" ]] || fail "pulled image's RepoDigests[0] is '$RD', want $REG/reg/one@$P1"
grep -q "Digest: $P1" "$T/pull.log" || fail "docker pull did not report the pushed digest $P1: $(cat "$T/pull.log")"
[[ $(docker image inspect --format '{{.Id}}' "$ONE") == "$ID1" ]] ||
  fail "the pulled image id $(docker image inspect --format '{{.Id}}' "$ONE") is not the pushed one $ID1"
docker_payload "$ONE" "$T/got1"
cmp -s "$T/got1" "$T/payload1" || fail "/payload inside the pulled $ONE differs from the one built in"
note "pulled $ONE: digest $P1, image id and /payload equal"

# by digest, the second image too
docker pull "$REG/reg/two@$P2" >"$T/pull2.log" 2>&1 || fail "docker pull $REG/reg/two@$P2 failed: $(tail -n 5 "$T/pull2.log")"
track_image "$REG/reg/two@$P2"
grep -q 'Already exists' "$T/pull2.log" || fail "pulling reg/two by digest did not reuse the base layer: $(cat "$T/pull2.log")"
docker_payload "$REG/reg/two@$P2" "$T/got2"
cmp -s "$T/got2" "$T/payload2" || fail "/payload inside the pulled reg/two@$P2 differs"
docker rmi "$REG/reg/two@$P2" >/dev/null 2>&1
note "pulled reg/two by digest: base layer reused, /payload equal"

serve_stop
pass
