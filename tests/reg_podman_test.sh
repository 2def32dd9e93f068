#!/usr/bin/env bash
# podman push and pull through `coffer serve` (no daemon): an image made with
# `podman import` (busybox rootfs plus a random /payload) is pushed as Docker
# schema2 and as OCI, removed, and pulled back by tag and by digest: the pulled
# digests are the pushed ones and the payload inside is intact. podman runs on
# its own storage under $T (vfs driver, cgroupfs, file events), so it needs
# neither overlay nor systemd and leaves nothing behind.
source "$(dirname "$0")/reg_lib.sh"
command -v podman >/dev/null || fail "the test needs podman (apt-get install podman)"

PM=(podman --root "$T/podman/root" --runroot "$T/podman/run" --storage-driver vfs
  --cgroup-manager cgroupfs --events-backend file --tmpdir "$T/podman/tmp")
mkdir -p "$T/podman/tmp"
run "${PM[@]}" info
[[ $RC == 0 ]] || fail "podman cannot run here even with --storage-driver vfs --cgroup-manager cgroupfs --events-backend file: $ERR"

R=$T/repo M=$T/mnt
new_repo "$R"
serve_start "$R" "$M" 0

make_rootfs "$T/rootfs"
rand_file "$T/rootfs/payload" $((1536 * 1024))
cp "$T/rootfs/payload" "$T/payload"
tar -C "$T/rootfs" --numeric-owner --owner=0 --group=0 -c . >"$T/rootfs.tar" || fail "tar of the rootfs"
run "${PM[@]}" import "$T/rootfs.tar" localhost/coffer-regtest/pm:1
[[ $RC == 0 ]] || fail "podman import: $ERR"

# pm_payload REF OUT: /payload of REF, by `podman run --rm` (with rlimits no
# higher than ours: raising them needs CAP_SYS_RESOURCE, which a container may
# lack); when containers cannot run here, says why and copies it out of a
# created (never started) container.
pm_payload() {
  if "${PM[@]}" run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    "$1" cat /payload >"$2" 2>"$T/.pm.err"; then return 0; fi
  note "podman run --rm $1 cat /payload failed ($(head -c 400 "$T/.pm.err")); copying /payload out of a created container instead"
  local c
  c=$("${PM[@]}" create "$1" cat /payload 2>"$T/.pm.err") || fail "podman create $1: $(cat "$T/.pm.err")"
  "${PM[@]}" cp "$c:/payload" "$2" 2>"$T/.pm.err" || fail "podman cp $c:/payload: $(cat "$T/.pm.err")"
  "${PM[@]}" rm "$c" >/dev/null 2>&1
}

# pm_push SRC DEST FORMAT: podman push; sets PUSHED from --digestfile.
pm_push() {
  run "${PM[@]}" push --tls-verify=false --format "$3" --digestfile "$T/digest" "$1" "docker://$2"
  [[ $RC == 0 ]] || fail "podman push --format $3 $1 $2: $ERR"
  PUSHED=$(cat "$T/digest")
  [[ $PUSHED =~ ^sha256:[0-9a-f]{64}$ ]] || fail "podman push --digestfile wrote '$PUSHED'"
}

# ---- push as Docker schema2 and as OCI, to two names
pm_push localhost/coffer-regtest/pm:1 "$REG/pm/v2s2:1" v2s2
P1=$PUSHED
pm_push localhost/coffer-regtest/pm:1 "$REG/pm/oci:1" oci
P2=$PUSHED
[[ $P1 != "$P2" ]] || fail "the schema2 and OCI pushes gave the same manifest digest $P1"
for x in "v2s2 $P1 application/vnd.docker.distribution.manifest.v2+json" "oci $P2 application/vnd.oci.image.manifest.v1+json"; do
  set -- $x
  http GET "/v2/pm/$1/manifests/1"
  expect_status 200 "GET pm/$1:1"
  [[ $(hdr Docker-Content-Digest) == "$2" ]] || fail "pm/$1:1: registry digest $(hdr Docker-Content-Digest), podman pushed $2"
  [[ sha256:$(sha_of "$T/.b") == "$2" ]] || fail "pm/$1:1: the served bytes do not hash to $2"
  [[ $(hdr Content-Type) == "$3" ]] || fail "pm/$1:1: Content-Type '$(hdr Content-Type)', want $3"
done
note "podman push: pm/v2s2:1 $P1, pm/oci:1 $P2"
PM_QUIET=("${PM[@]}")
PM+=(--log-level debug)
pm_push localhost/coffer-regtest/pm:1 "$REG/pm/v2s2:1" v2s2
PM=("${PM_QUIET[@]}")
[[ $PUSHED == "$P1" ]] || fail "podman push to pm/v2s2:1 again: digest $PUSHED, first push $P1"
grep -q 'Skipping blob .*already present' <<<"$ERR" ||
  fail "podman push of an image already in pm/v2s2 did not skip its layer (HEAD of the blob should be 200): $(grep -i -E 'HEAD|blob' <<<"$ERR" | head -c 2000)"
note "podman push again: layer skipped (already exists), same digest"

# ---- remove everything, pull back
run "${PM[@]}" rmi -a -f
[[ $RC == 0 ]] || fail "podman rmi -a: $ERR"
run "${PM[@]}" images -q
[[ -z $OUT ]] || fail "podman rmi -a left images: $OUT"
run "${PM[@]}" pull --tls-verify=false "$REG/pm/v2s2:1"
[[ $RC == 0 ]] || fail "podman pull $REG/pm/v2s2:1: $ERR"
got=$("${PM[@]}" image inspect --format '{{.Digest}}' "$REG/pm/v2s2:1")
[[ $got == "$P1" ]] || fail "podman pull pm/v2s2:1: digest $got, pushed $P1"
[[ $("${PM[@]}" image inspect --format '{{json .RepoDigests}}' "$REG/pm/v2s2:1") == *"\"$REG/pm/v2s2@$P1\""* ]] ||
  fail "podman pull pm/v2s2:1: RepoDigests $("${PM[@]}" image inspect --format '{{json .RepoDigests}}' "$REG/pm/v2s2:1") lack $REG/pm/v2s2@$P1"
pm_payload "$REG/pm/v2s2:1" "$T/got1"
cmp -s "$T/got1" "$T/payload" || fail "/payload in the image pulled from pm/v2s2:1 differs"
run "${PM[@]}" rmi -a -f
[[ $RC == 0 ]] || fail "podman rmi -a (second time): $ERR"
run "${PM[@]}" pull --tls-verify=false "$REG/pm/oci@$P2"
[[ $RC == 0 ]] || fail "podman pull $REG/pm/oci@$P2: $ERR"
got=$("${PM[@]}" image inspect --format '{{.Digest}}' "$REG/pm/oci@$P2")
[[ $got == "$P2" ]] || fail "podman pull pm/oci@$P2: digest $got"
pm_payload "$REG/pm/oci@$P2" "$T/got2"
cmp -s "$T/got2" "$T/payload" || fail "/payload in the image pulled from pm/oci@$P2 differs"
note "podman pull by tag and by digest: digests equal, /payload intact"

# ---- pushing the pulled image again uploads no layer
run "${PM[@]}" push --tls-verify=false --format oci --digestfile "$T/digest" "$REG/pm/oci@$P2" "docker://$REG/pm/oci:again"
[[ $RC == 0 ]] || fail "podman push of the pulled image to pm/oci:again: $ERR"
[[ $(cat "$T/digest") == "$P2" ]] || fail "podman push of the pulled image to pm/oci:again: digest $(cat "$T/digest"), want $P2"
http GET /v2/pm/oci/tags/list
[[ $(jq -c .tags "$T/.b") == '["1","again"]' ]] || fail "pm/oci tags: $(cat "$T/.b")"
note "podman push of the pulled image: same digest"

serve_stop
pass
