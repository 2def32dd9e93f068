#!/usr/bin/env bash
# Basic auth (--htpasswd, bcrypt), per-repository permissions (--access) and
# read-only mode, with curl and docker. Without credentials, or with wrong
# ones, every endpoint answers 401 UNAUTHORIZED with the Basic challenge;
# `docker login` then `docker push` works, and docker without a login is
# refused; a user without push permission gets 403 DENIED; with --read-only
# pushes and deletes are 405 UNSUPPORTED (docker push fails) while pulls work.
source "$(dirname "$0")/reg_lib.sh"
command -v htpasswd >/dev/null || fail "the test needs htpasswd (apt-get install apache2-utils)"

ensure_dockerd
export DOCKER_CONFIG=$T/docker-config  # docker login writes here, not to ~/.docker
mkdir -p "$DOCKER_CONFIG"
R=$T/repo M=$T/mnt
new_repo "$R"
htpasswd -Bbn -C 5 user pass >"$T/htpasswd" 2>/dev/null || fail "htpasswd -Bbn user pass"
htpasswd -Bbn -C 5 reader rpass >>"$T/htpasswd" 2>/dev/null || fail "htpasswd -Bbn reader rpass"
grep -q '^user:\$2[aby]\$' "$T/htpasswd" || fail "htpasswd did not write a bcrypt hash: $(cat "$T/htpasswd")"
cat >"$T/access" <<'EOF'
# user may do anything; reader may only pull, and only from auth/*
user * *
reader auth/* pull
EOF
serve_start "$R" "$M" 0 --htpasswd "$T/htpasswd" --access "$T/access"
PORT1=$PORT

# expect_challenge WHAT: 401 UNAUTHORIZED with WWW-Authenticate: Basic realm=...
expect_challenge() {
  expect_error 401 UNAUTHORIZED "$1"
  [[ $(hdr WWW-Authenticate) =~ ^Basic\ realm=\"[^\"]+\"$ ]] ||
    fail "$1: WWW-Authenticate '$(hdr WWW-Authenticate)', want Basic realm=\"...\""
}

# ---- curl: no credentials, wrong credentials, right ones
http GET /v2/
expect_challenge "GET /v2/ without credentials"
http GET /v2/ -u user:wrong
expect_challenge "GET /v2/ with a wrong password"
http GET /v2/ -u nobody:pass
expect_challenge "GET /v2/ with an unknown user"
http GET /v2/ -H 'Authorization: Basic !!!notbase64'
expect_challenge "GET /v2/ with a malformed Authorization header"
http GET /v2/ -H 'Authorization: Bearer sometoken'
expect_challenge "GET /v2/ with a Bearer token"
http GET /v2/ -u user:pass
expect_status 200 "GET /v2/ as user"
http GET /v2/_catalog
expect_challenge "GET /v2/_catalog without credentials"
http POST /v2/auth/img/blobs/uploads/
expect_challenge "POST an upload without credentials"
http GET /v2/auth/img/tags/list -u user:wrong
expect_challenge "tags/list with a wrong password"
[[ -z $(ls -A "$M/uploads") && ! -e $M/repos/auth ]] || fail "refused requests left something on the mount: $(ls -A "$M/uploads" "$M/repos")"
note "no or wrong credentials: 401 UNAUTHORIZED, WWW-Authenticate: $(hdr WWW-Authenticate)"

# ---- docker: refused without a login, works after one
make_payload_image 500000
IMG=$REG/auth/img:1
docker tag "$LOCAL:1" "$IMG" || fail "docker tag"
track_image "$IMG"
docker push "$IMG" >"$T/push0.log" 2>&1 && fail "docker push without docker login succeeded: $(tail -n 3 "$T/push0.log")"
grep -q -i 'no basic auth credentials\|unauthorized\|authentication required' "$T/push0.log" ||
  fail "docker push without login failed, but not for want of credentials: $(tail -n 3 "$T/push0.log")"
docker login "$REG" -u user -p wrong >"$T/login0.log" 2>&1 && fail "docker login with a wrong password succeeded"
grep -q -i 'unauthorized\|401' "$T/login0.log" || fail "docker login with a wrong password: $(tail -n 2 "$T/login0.log")"
docker login "$REG" -u user -p pass >"$T/login.log" 2>&1 || fail "docker login $REG -u user -p pass failed: $(tail -n 3 "$T/login.log")"
grep -q 'Login Succeeded' "$T/login.log" || fail "docker login: $(cat "$T/login.log")"
docker_push "$IMG" "$T/push1.log"
P1=$PUSHED
http HEAD /v2/auth/img/manifests/1 -u user:pass
expect_status 200 "HEAD the pushed manifest as user"
[[ $(hdr Docker-Content-Digest) == "$P1" ]] || fail "registry digest $(hdr Docker-Content-Digest), docker pushed $P1"
http GET /v2/auth/img/manifests/1
expect_challenge "GET the pushed manifest without credentials"
note "docker: push refused before login, login with a wrong password refused, push after login: $P1"

# ---- permissions: reader may pull auth/*, nothing else
http GET /v2/auth/img/manifests/1 -u reader:rpass
expect_status 200 "reader pulls auth/img"
http POST /v2/auth/img/blobs/uploads/ -u reader:rpass
expect_error 403 DENIED "reader starts an upload in auth/img"
http PUT /v2/auth/img/manifests/2 -u reader:rpass -H 'Content-Type: application/vnd.docker.distribution.manifest.v2+json' \
  --data-binary '{}'
expect_error 403 DENIED "reader puts a manifest"
http DELETE "/v2/auth/img/manifests/$P1" -u reader:rpass
expect_error 403 DENIED "reader deletes a manifest"
http POST /v2/other/img/blobs/uploads/ -u user:pass
expect_status 202 "user starts an upload in other/img"
http GET /v2/other/img/tags/list -u reader:rpass
expect_error 403 DENIED "reader lists tags outside auth/*"
http GET /v2/_catalog -u reader:rpass
expect_status 200 "reader's catalog"
[[ $(jq -c .repositories "$T/.b") == '["auth/img"]' ]] || fail "reader's catalog: $(cat "$T/.b"), want only auth/img"
http GET /v2/auth/img/tags/list -u reader:rpass
[[ $(jq -c .tags "$T/.b") == '["1"]' ]] || fail "the refused requests changed auth/img's tags: $(cat "$T/.b")"
note "access file: reader pulls (200), push/delete 403 DENIED, other repositories 403, catalog filtered"
serve_stop

# ---- read-only: pulls work, pushes and deletes are refused
serve_start "$R" "$M" "$PORT1" --htpasswd "$T/htpasswd" --read-only
http GET /v2/ -u user:pass
expect_status 200 "GET /v2/ (read-only)"
http POST /v2/auth/img/blobs/uploads/ -u user:pass
expect_error 405 UNSUPPORTED "POST an upload (read-only)"
http PUT /v2/auth/img/manifests/2 -u user:pass -H 'Content-Type: application/vnd.docker.distribution.manifest.v2+json' \
  --data-binary '{}'
expect_error 405 UNSUPPORTED "PUT a manifest (read-only)"
http DELETE "/v2/auth/img/manifests/$P1" -u user:pass
expect_error 405 UNSUPPORTED "DELETE a manifest (read-only)"
http POST /v2/auth/img/blobs/uploads/
expect_challenge "POST an upload without credentials (read-only: auth still comes first)"
[[ -z $(ls -A "$M/uploads") ]] || fail "a refused upload left something in $M/uploads"
RO_IMG=$REG/auth/img:1  # the same port: the same reference as the pushed image
docker login "$REG" -u user -p pass >"$T/login2.log" 2>&1 || fail "docker login (read-only): $(tail -n 3 "$T/login2.log")"
docker tag "$LOCAL:1" "$REG/auth/new:1" && track_image "$REG/auth/new:1"
docker push "$REG/auth/new:1" >"$T/push2.log" 2>&1 && fail "docker push to a --read-only registry succeeded: $(tail -n 3 "$T/push2.log")"
note "read-only: docker push refused: $(tail -n 1 "$T/push2.log")"
docker_forget "$IMG" "$REG/auth/new:1" "$LOCAL:1" "$LOCAL-base:1"
docker pull "$RO_IMG" >"$T/pull.log" 2>&1 || fail "docker pull from the read-only registry failed: $(tail -n 3 "$T/pull.log")"
[[ $(docker inspect --format '{{index .RepoDigests 0}}' "$RO_IMG") == "$REG/auth/img@$P1" ]] ||
  fail "pulled digest $(docker inspect --format '{{index .RepoDigests 0}}' "$RO_IMG"), want $REG/auth/img@$P1"
docker_payload "$RO_IMG" "$T/got"
cmp -s "$T/got" "$T/payload" || fail "/payload in the image pulled from the read-only registry differs"
http GET /v2/_catalog -u user:pass
[[ $(jq -c .repositories "$T/.b") == '["auth/img","other/img"]' || $(jq -c .repositories "$T/.b") == '["auth/img"]' ]] ||
  fail "catalog after the read-only session: $(cat "$T/.b")"
docker logout "$REG" >/dev/null 2>&1
note "read-only: POST/PUT/DELETE 405 UNSUPPORTED, docker push refused, docker pull works (digest $P1)"
serve_stop
pass
