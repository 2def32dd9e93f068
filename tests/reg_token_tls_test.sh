#!/usr/bin/env bash
# Bearer token auth (--token: the registry issues tokens at /token) with curl,
# docker and skopeo; TLS (--tls-cert/--tls-key) with curl and skopeo; and an
# immediate answer to a refused request that waits for "100 Continue".
#
# Token: /v2/ without a token is 401 with `Bearer realm=...,service=...`; the
# token endpoint refuses wrong passwords and grants only what the access file
# allows; docker login + push + pull work through the token flow; a pull-only
# user's docker push is refused. TLS: curl verifies the certificate against the
# test's CA, refuses it without the CA, plain HTTP to the TLS port gets no
# answer; skopeo copies an OCI layout there and back over verified TLS.
source "$(dirname "$0")/reg_lib.sh"
for tool in htpasswd openssl skopeo; do
  command -v $tool >/dev/null || fail "the test needs $tool (scripts/install-deps.sh)"
done

ensure_dockerd
export DOCKER_CONFIG=$T/docker-config
mkdir -p "$DOCKER_CONFIG"
R=$T/repo M=$T/mnt
new_repo "$R"
htpasswd -Bbn -C 5 user pass >"$T/htpasswd" 2>/dev/null || fail "htpasswd user"
htpasswd -Bbn -C 5 reader rpass >>"$T/htpasswd" 2>/dev/null || fail "htpasswd reader"
printf 'user * *\nreader * pull\n' >"$T/access"
serve_start "$R" "$M" 0 --htpasswd "$T/htpasswd" --access "$T/access" --token

# ---- the challenge and the token endpoint (curl)
http GET /v2/
expect_error 401 UNAUTHORIZED "GET /v2/ without a token"
[[ $(hdr WWW-Authenticate) == "Bearer realm=\"$URL/token\",service=\"coffer\"" ]] ||
  fail "GET /v2/: WWW-Authenticate '$(hdr WWW-Authenticate)', want Bearer realm=\"$URL/token\",service=\"coffer\""
http POST /v2/tok/img/blobs/uploads/
[[ $(hdr WWW-Authenticate) == *'scope="repository:tok/img:push"'* ]] ||
  fail "POST an upload: challenge '$(hdr WWW-Authenticate)' names no repository:tok/img:push scope"
http GET /v2/ -u user:pass
expect_error 401 UNAUTHORIZED "GET /v2/ with Basic credentials in token mode"
http GET "/token?service=coffer&scope=repository:tok/img:pull,push" -u user:wrong
expect_error 401 UNAUTHORIZED "the token endpoint with a wrong password"
http GET "/token?service=coffer&scope=repository:tok/img:pull,push" -u reader:rpass
expect_status 200 "a token for reader"
READER_TOKEN=$(jq -r .token "$T/.b")
http GET "/token?service=coffer&scope=repository:tok/img:pull,push" -u user:pass
expect_status 200 "a token for user"
TOKEN=$(jq -r .token "$T/.b")
[[ $(jq -r .expires_in "$T/.b") -gt 0 && $(jq -r .access_token "$T/.b") == "$TOKEN" ]] ||
  fail "token response: $(cat "$T/.b")"
# The claims grant what the rules allow: user pull+push, reader pull only.
claims() { cut -d. -f2 <<<"$1" | tr '_-' '/+' | awk '{ while (length($0) % 4) $0 = $0 "="; print }' | base64 -d; }
[[ $(claims "$TOKEN" | jq -c '.access') == '[{"type":"repository","name":"tok/img","actions":["pull","push"]}]' ]] ||
  fail "user's token claims: $(claims "$TOKEN")"
[[ $(claims "$READER_TOKEN" | jq -c '.access[0].actions') == '["pull"]' ]] ||
  fail "reader's token claims: $(claims "$READER_TOKEN")"
http GET /v2/ -H "Authorization: Bearer $TOKEN"
expect_status 200 "GET /v2/ with user's token"
http POST /v2/tok/img/blobs/uploads/ -H "Authorization: Bearer $READER_TOKEN"
expect_error 401 UNAUTHORIZED "reader's token starts an upload"
[[ $(hdr WWW-Authenticate) == *'error="insufficient_scope"'* ]] || fail "no insufficient_scope: $(hdr WWW-Authenticate)"
http POST /v2/tok/img/blobs/uploads/ -H "Authorization: Bearer ${TOKEN}x"
[[ $(hdr WWW-Authenticate) == *'error="invalid_token"'* ]] || fail "a damaged token: $(hdr WWW-Authenticate)"
[[ -z $(ls -A "$M/uploads") && ! -e $M/repos/tok ]] || fail "refused requests left something: $(ls -A "$M/uploads" "$M/repos")"
note "token endpoint: grants follow the access file; invalid_token and insufficient_scope challenges"

# ---- docker through the token flow
make_payload_image 300000
IMG=$REG/tok/img:1
docker tag "$LOCAL:1" "$IMG" && track_image "$IMG"
docker push "$IMG" >"$T/push0.log" 2>&1 && fail "docker push without login succeeded"
docker login "$REG" -u reader -p rpass >"$T/login-r.log" 2>&1 || fail "docker login as reader: $(tail -n 3 "$T/login-r.log")"
docker push "$IMG" >"$T/push-r.log" 2>&1 && fail "docker push as pull-only reader succeeded"
note "reader's docker push refused: $(tail -n 1 "$T/push-r.log")"
docker login "$REG" -u user -p pass >"$T/login.log" 2>&1 || fail "docker login as user: $(tail -n 3 "$T/login.log")"
docker_push "$IMG" "$T/push.log"
P1=$PUSHED
docker_forget "$IMG" "$LOCAL:1"
docker login "$REG" -u reader -p rpass >/dev/null 2>&1 || fail "docker login as reader (2)"
docker pull "$IMG" >"$T/pull.log" 2>&1 || fail "docker pull as reader: $(tail -n 3 "$T/pull.log")"
[[ $(docker inspect --format '{{index .RepoDigests 0}}' "$IMG") == "$REG/tok/img@$P1" ]] ||
  fail "pulled $(docker inspect --format '{{index .RepoDigests 0}}' "$IMG"), pushed $P1"
docker_payload "$IMG" "$T/got"
cmp -s "$T/got" "$T/payload" || fail "/payload of the pulled image differs"
docker logout "$REG" >/dev/null 2>&1
skopeo inspect --tls-verify=false --creds reader:rpass "docker://$IMG" >"$T/inspect.json" 2>"$T/sk.err" ||
  fail "skopeo inspect with the token flow: $(tail -n 3 "$T/sk.err")"
[[ $(jq -r .Digest "$T/inspect.json") == "$P1" ]] || fail "skopeo inspect digest $(jq -r .Digest "$T/inspect.json"), want $P1"
note "docker login/push/pull and skopeo inspect through tokens: $P1"
serve_stop

# ---- TLS
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=127.0.0.1" \
  -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/tls.key" -out "$T/tls.crt" 2>"$T/openssl.err" ||
  fail "openssl req: $(cat "$T/openssl.err")"
CURL_EXTRA=(--cacert "$T/tls.crt")
serve_start "$R" "$M" 0 --tls-cert "$T/tls.crt" --tls-key "$T/tls.key"
[[ $URL == https://* ]] || fail "coffer serve --tls-cert reports $URL, want https://"
http GET /v2/
expect_status 200 "GET /v2/ over verified TLS"
CURL_EXTRA=()
http GET /v2/
[[ $CODE == 000 ]] && grep -qi 'certificate' "$T/.curl.err" ||
  fail "curl without the CA: HTTP $CODE, $(cat "$T/.curl.err"): the certificate was not checked?"
http GET "http://$REG/v2/"
[[ $CODE == 000 ]] || fail "plain HTTP to the TLS port answered $CODE"
CURL_EXTRA=(--cacert "$T/tls.crt")
http GET /v2/
expect_status 200 "GET /v2/ over TLS after a plain-HTTP attempt (the server is still up)"
mkdir -p "$T/certs"
cp "$T/tls.crt" "$T/certs/ca.crt"
mkdir -p "$T/oci-src"
docker save "$LOCAL-base:1" -o "$T/base.tar" || fail "docker save"
skopeo copy --quiet "docker-archive:$T/base.tar" "oci:$T/oci-src:base" 2>"$T/sk.err" || fail "skopeo to oci layout: $(tail -n 3 "$T/sk.err")"
skopeo copy --quiet --dest-cert-dir "$T/certs" "oci:$T/oci-src:base" "docker://$REG/tls/base:1" 2>"$T/sk.err" ||
  fail "skopeo copy over TLS: $(tail -n 3 "$T/sk.err")"
skopeo copy --quiet --src-cert-dir "$T/certs" "docker://$REG/tls/base:1" "oci:$T/oci-back:base" 2>"$T/sk.err" ||
  fail "skopeo copy back over TLS: $(tail -n 3 "$T/sk.err")"
want=$(jq -r '.manifests[0].digest' "$T/oci-src/index.json")
got=$(jq -r '.manifests[0].digest' "$T/oci-back/index.json")
[[ $want == "$got" ]] || fail "OCI layout round trip over TLS: manifest $got, want $want"
skopeo inspect --tls-verify=true "docker://$REG/tls/base:1" >/dev/null 2>"$T/sk.err" &&
  fail "skopeo trusted the self-signed certificate without the CA"
note "TLS: curl and skopeo verify the certificate; round trip $want"
serve_stop

# ---- a certificate file that is not PEM: a clear error naming it, nothing left mounted
echo junk >"$T/bad.pem"
run "$COFFER" --repo "$R" --passphrase-file "$R.pass" serve --mount "$M" --registry 127.0.0.1:0 \
  --tls-cert "$T/bad.pem" --tls-key "$T/bad.pem"
[[ $RC == 1 && $ERR == *"registry TLS certificate"*"$T/bad.pem"* ]] ||
  fail "serve with a non-PEM certificate: exit $RC, stderr: $ERR"
! mountpoint -q "$M" || fail "serve with a bad certificate left $M mounted"
note "a bad TLS certificate: exit 1, '$(echo "$ERR" | tail -n 1)'"

# ---- the registry process dies: serve says so, stops cleanly, exit 3
serve_start "$R" "$M" 0
child=$(pgrep -P "$SERVE_PID" -x coffer) || fail "coffer serve $SERVE_PID has no registry child process"
kill -KILL "$child"
wait_exit "$SERVE_PID" 60 || fail "coffer serve still running 60 s after its registry process died"
[[ $EXIT_STATUS == 3 ]] || fail "coffer serve exit $EXIT_STATUS after its registry died, want 3"
grep -q 'registry process ended' "$SERVE_LOG" || fail "serve did not say its registry died: $(tail -n 3 "$SERVE_LOG")"
! mountpoint -q "$M" || fail "$M still mounted after serve stopped"
_SERVE_PIDS=()
note "registry process killed: serve stopped, exit 3, mount gone"

# ---- a refused request waiting for 100 Continue is answered at once
serve_start "$R" "$M" 0 --htpasswd "$T/htpasswd"
head -c 500000 /dev/urandom >"$T/body"
# curl sends the body after --expect100-timeout (100 s) at the latest; the
# server must answer the refusal before that, not wait for the body.
http PUT "/v2/x/blobs/uploads/00000000000000000000000000000000?digest=sha256:$(sha_of "$T/body")" \
  -H 'Expect: 100-continue' --expect100-timeout 100 --max-time 30 -T "$T/body"
expect_error 401 UNAUTHORIZED "a refused PUT with Expect: 100-continue"
note "Expect: 100-continue: refused at once ($(hdr Connection))"
serve_stop
pass
