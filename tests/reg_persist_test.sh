#!/usr/bin/env bash
# What docker pushed survives `coffer serve` stopping (SIGTERM): started again
# on the same repository, the registry serves the same manifest digest, tags
# and catalog, and docker pulls the image with the payload intact. Afterwards
# `coffer check --read-data` passes, and the repository on disk holds no
# plaintext: a marker string that is in the image config (a label), the
# repository name and the tag, and visible through the mount, is nowhere in
# the repository's files.
source "$(dirname "$0")/reg_lib.sh"

ensure_dockerd
R=$T/repo M=$T/mnt
new_repo "$R"
serve_start "$R" "$M" 0
PORT1=$PORT
ID=$(basename "$T" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9')
MARK=plaintextmarker$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
LOCAL=coffer-regtest/$ID
make_base_image "$LOCAL-base:1"
{ echo "$MARK"; head -c 1000000 /dev/urandom; echo "$MARK"; } >"$T/payload"
make_image "$LOCAL-base:1" "$LOCAL:1" "$T/payload" "$MARK"
ID1=$(docker image inspect --format '{{.Id}}' "$LOCAL:1")
IMG=$REG/persist/$MARK:$MARK
docker tag "$LOCAL:1" "$IMG" || fail "docker tag"
track_image "$IMG"
docker_push "$IMG" "$T/push.log"
P1=$PUSHED
grep -r -a -l -q "$MARK" "$M/blobs/sha256" || fail "the marker is not visible in the blobs through the mount (the plaintext check below would prove nothing)"
[[ -d $M/repos/persist/$MARK/_manifests/tags/$MARK ]] || fail "no tag directory for the pushed tag on the mount"
http GET /v2/_catalog
CATALOG=$(jq -c .repositories "$T/.b")
[[ $CATALOG == "[\"persist/$MARK\"]" ]] || fail "catalog before the restart: $CATALOG"
note "pushed $IMG: $P1; marker visible through the mount"

# ---- stop, check the repository on disk, start again on the same port
serve_stop
sync
hits=$(grep -r -a -l "$MARK" "$R" 2>/dev/null)
[[ -z $hits ]] || fail "the repository holds the plaintext marker in: $hits"
[[ -z $(find "$R" -name "*$MARK*") ]] || fail "the repository has file names with the marker: $(find "$R" -name "*$MARK*")"
expect_ok "coffer check --read-data after the first session" cf "$R" check --read-data
note "stopped: no plaintext marker in $R, coffer check --read-data passes"

serve_start "$R" "$M" "$PORT1"
http HEAD "/v2/persist/$MARK/manifests/$MARK"
expect_status 200 "HEAD the tag after the restart"
[[ $(hdr Docker-Content-Digest) == "$P1" ]] || fail "after the restart the tag has digest '$(hdr Docker-Content-Digest)', before $P1"
http GET /v2/_catalog
[[ $(jq -c .repositories "$T/.b") == "$CATALOG" ]] || fail "catalog after the restart: $(cat "$T/.b"), before $CATALOG"
http GET "/v2/persist/$MARK/tags/list"
[[ $(jq -c .tags "$T/.b") == "[\"$MARK\"]" ]] || fail "tags after the restart: $(cat "$T/.b")"
docker_forget "$IMG" "$LOCAL:1" "$LOCAL-base:1"
docker pull "$IMG" >"$T/pull.log" 2>&1 || fail "docker pull $IMG after the restart: $(tail -n 5 "$T/pull.log")"
n=$(grep -c ': Pull complete$' "$T/pull.log")
((n == 2)) || fail "docker pull after the restart: $n layers 'Pull complete', want 2: $(cat "$T/pull.log")"
RD=$(docker inspect --format '{{index .RepoDigests 0}}' "$IMG")
[[ $RD == "$REG/persist/$MARK@$P1" ]] || fail "pulled RepoDigests[0] '$RD', want $REG/persist/$MARK@$P1"
[[ $(docker image inspect --format '{{.Id}}' "$IMG") == "$ID1" ]] || fail "the pulled image id differs from the pushed one $ID1"
[[ $(docker image inspect --format '{{index .Config.Labels "coffer.marker"}}' "$IMG") == "$MARK" ]] ||
  fail "the pulled image lost its label"
docker_payload "$IMG" "$T/got"
cmp -s "$T/got" "$T/payload" || fail "/payload in the image pulled after the restart differs"
note "after the restart: same digest, tags and catalog; docker pull: id and /payload equal"

# ---- a push in the second session (on top of the pulled image), then a third session
rand_file "$T/payload2" 300000
IMG2=$REG/persist/$MARK:two
make_image "$IMG" "$IMG2" "$T/payload2"
docker_push "$IMG2" "$T/push2.log"
P2=$PUSHED
n=$(grep -c ': Layer already exists$' "$T/push2.log")
((n == 2)) || fail "push of $IMG2 (on top of the pulled image): $n layers 'Layer already exists', want 2: $(cat "$T/push2.log")"
serve_stop
expect_ok "coffer check --read-data after the second session" cf "$R" check --read-data
hits=$(grep -r -a -l "$MARK" "$R" 2>/dev/null)
[[ -z $hits ]] || fail "after the second session the repository holds the plaintext marker in: $hits"
serve_start "$R" "$M" "$PORT1"
for t in "$MARK $P1" "two $P2"; do
  set -- $t
  http HEAD "/v2/persist/$MARK/manifests/$1"
  expect_status 200 "HEAD tag $1 in the third session"
  [[ $(hdr Docker-Content-Digest) == "$2" ]] || fail "third session: tag $1 has digest '$(hdr Docker-Content-Digest)', want $2"
done
http GET "/v2/persist/$MARK/blobs/$(jq -r '.layers[-1].digest' < <(curl -s -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "$URL/v2/persist/$MARK/manifests/two"))"
expect_status 200 "GET the second session's payload layer in the third session"
note "second session's push ($P2) and the first one both served in a third session"
serve_stop
pass
