#!/usr/bin/env bash
# An interrupted push resumes: a chunked upload (curl) sends its first half,
# the client goes away, a new client asks for the upload's status (204, Range),
# sends the rest from there and finishes it (201); the blob reads back equal.
# A PATCH killed in the middle of its body leaves the bytes that arrived, and
# the upload resumes from the offset the status reports. Uploads live in the
# mount daemon's memory: across a `coffer serve` restart an upload is gone
# (404 BLOB_UPLOAD_UNKNOWN) while published blobs stay, and a fresh upload works.
source "$(dirname "$0")/reg_lib.sh"

R=$T/repo M=$T/mnt
new_repo "$R"
serve_start "$R" "$M" 0
N=$((6 * 1024 * 1024)) H=$((N / 2))
rand_file "$T/blob" "$N"
D=sha256:$(sha_of "$T/blob")
head -c "$H" "$T/blob" >"$T/half1"
tail -c +$((H + 1)) "$T/blob" >"$T/half2"

# ---- client 1: POST, PATCH the first half, then it goes away
http POST /v2/res/img/blobs/uploads/
expect_status 202 "POST (start the upload)"
LOC=$(absolute "$(hdr Location)")
UUID=$(hdr Docker-Upload-UUID)
[[ $LOC == */blobs/uploads/"$UUID" ]] || fail "POST: Location '$LOC' does not end in the Docker-Upload-UUID '$UUID'"
[[ $(hdr Range) == 0-0 ]] || fail "POST: Range '$(hdr Range)', want 0-0"
http PATCH "$LOC" -H "Content-Range: 0-$((H - 1))" -H 'Content-Type: application/octet-stream' -T "$T/half1"
expect_status 202 "PATCH the first half"
[[ $(hdr Range) == "0-$((H - 1))" ]] || fail "PATCH first half: Range '$(hdr Range)', want 0-$((H - 1))"
[[ -e $M/uploads/$UUID ]] || fail "the upload is not in $M/uploads"
http GET "/v2/res/img/blobs/$D"
expect_error 404 BLOB_UNKNOWN "GET the blob while its upload is half done"

# ---- client 2 knows only the upload's URL: it asks where to go on
http GET "$LOC"
expect_status 204 "GET the upload's status"
[[ $(hdr Range) == "0-$((H - 1))" ]] || fail "upload status: Range '$(hdr Range)', want 0-$((H - 1))"
[[ $(absolute "$(hdr Location)") == "$LOC" ]] || fail "upload status: Location '$(hdr Location)', want $LOC"
[[ $(hdr Docker-Upload-UUID) == "$UUID" ]] || fail "upload status: Docker-Upload-UUID '$(hdr Docker-Upload-UUID)', want $UUID"
# A client that guesses wrong is told where the upload stands.
http PATCH "$LOC" -H "Content-Range: 0-$((H - 1))" -H 'Content-Type: application/octet-stream' --data-binary "@$T/half1"
expect_status 416 "PATCH the first half again"
[[ $(hdr Range) == "0-$((H - 1))" ]] || fail "416: Range '$(hdr Range)', want 0-$((H - 1))"
http PATCH "$LOC" -H "Content-Range: $H-$((N - 1))" -H 'Content-Type: application/octet-stream' -T "$T/half2"
expect_status 202 "PATCH the second half with the right Content-Range"
[[ $(hdr Range) == "0-$((N - 1))" ]] || fail "PATCH second half: Range '$(hdr Range)', want 0-$((N - 1))"
http PUT "$(with_query "$LOC" "digest=$D")"
expect_status 201 "PUT ?digest= to finish the resumed upload"
[[ $(hdr Docker-Content-Digest) == "$D" ]] || fail "PUT: Docker-Content-Digest '$(hdr Docker-Content-Digest)', want $D"
[[ $(hdr Location) == */v2/res/img/blobs/"$D" ]] || fail "PUT: Location '$(hdr Location)', want /v2/res/img/blobs/$D"
http GET "/v2/res/img/blobs/$D"
expect_status 200 "GET the resumed blob"
cmp -s "$T/.b" "$T/blob" || fail "the resumed blob reads back different from what was uploaded"
http GET "/v2/res/img/blobs/$D" -H 'Range: bytes=3145720-3145735'
expect_status 206 "Range GET across the two halves"
cmp -s "$T/.b" <(tail -c +3145721 "$T/blob" | head -c 16) || fail "Range GET bytes=3145720-3145735 returns the wrong bytes"
cmp -s "$M/blobs/sha256/${D#sha256:}" "$T/blob" || fail "the blob on the mount differs"
[[ ! -e $M/uploads/$UUID ]] || fail "the finished upload is still in $M/uploads"
http GET "$LOC"
expect_error 404 BLOB_UPLOAD_UNKNOWN "status of the finished upload"
note "POST, PATCH half, (new client) GET status 204 Range 0-$((H - 1)), PATCH rest, PUT: 201, blob equal"

# ---- a PATCH killed in the middle of its body
rand_file "$T/blob2" $((16 * 1024 * 1024))
D2=sha256:$(sha_of "$T/blob2")
http POST /v2/res/img/blobs/uploads/
expect_status 202 "POST (second upload)"
LOC2=$(absolute "$(hdr Location)")
curl -sS -o /dev/null -X PATCH -H 'Content-Type: application/octet-stream' --limit-rate 2M -T "$T/blob2" "$LOC2" \
  2>/dev/null &
CURL=$!
_PIDS+=("$CURL")
sleep 2
kill -9 "$CURL" 2>/dev/null
wait "$CURL" 2>/dev/null
# The server notices the dead connection; the bytes that arrived stay.
got='' prev=-1
for ((i = 0; i < 100; i++)); do
  http GET "$LOC2"
  expect_status 204 "status of the upload whose PATCH was killed"
  got=$(hdr Range)
  [[ $got == "$prev" ]] && break
  prev=$got
  sleep 0.2
done
[[ $got =~ ^0-([0-9]+)$ ]] || fail "status after the killed PATCH: Range '$got'"
DONE=$((BASH_REMATCH[1] + 1))
((DONE > 1024 * 1024 && DONE < 16 * 1024 * 1024)) ||
  fail "after a PATCH killed 2 s into a 16 MiB body at 2 MB/s, the upload holds $DONE bytes (want some but not all)"
tail -c +$((DONE + 1)) "$T/blob2" >"$T/rest2"
http PATCH "$LOC2" -H "Content-Range: $DONE-$((16 * 1024 * 1024 - 1))" -H 'Content-Type: application/octet-stream' -T "$T/rest2"
expect_status 202 "PATCH the rest from byte $DONE"
http PUT "$(with_query "$LOC2" "digest=$D2")"
expect_status 201 "PUT ?digest= after resuming a killed PATCH"
http GET "/v2/res/img/blobs/$D2"
cmp -s "$T/.b" "$T/blob2" || fail "the blob resumed after a killed PATCH reads back different"
note "PATCH killed after $DONE bytes; resumed from there: 201, blob equal"

# ---- across a restart of coffer serve the upload is gone, published blobs stay
http POST /v2/res/img/blobs/uploads/
expect_status 202 "POST (third upload)"
LOC3=$(absolute "$(hdr Location)")
UUID3=$(hdr Docker-Upload-UUID)
http PATCH "$LOC3" -H "Content-Range: 0-$((H - 1))" -H 'Content-Type: application/octet-stream' -T "$T/half1"
expect_status 202 "PATCH the first half of the third upload"
OLDPORT=$PORT
serve_stop
serve_start "$R" "$M" "$OLDPORT"
LOC3=$URL${LOC3#http://127.0.0.1:"$OLDPORT"}
http GET "$LOC3"
expect_error 404 BLOB_UPLOAD_UNKNOWN "status of an upload begun before the serve restart"
http PATCH "$LOC3" -H "Content-Range: $H-$((N - 1))" -H 'Content-Type: application/octet-stream' -T "$T/half2"
expect_error 404 BLOB_UPLOAD_UNKNOWN "PATCH of an upload begun before the serve restart"
http PUT "$(with_query "$LOC3" "digest=$D")"
expect_error 404 BLOB_UPLOAD_UNKNOWN "PUT of an upload begun before the serve restart"
[[ ! -e $M/uploads/$UUID3 ]] || fail "the upload from before the restart is still in $M/uploads"
for d in "$D" "$D2"; do
  http GET "/v2/res/img/blobs/$d"
  expect_status 200 "GET $d (published before the restart)"
done
cmp -s "$T/.b" "$T/blob2" || fail "a blob published before the restart reads back different"
rand_file "$T/blob3" 3000000
push_blob res/img "$T/blob3"
http GET "/v2/res/img/blobs/$DIGEST"
cmp -s "$T/.b" "$T/blob3" || fail "a fresh upload after the restart reads back different"
note "after a serve restart: the old upload is 404 BLOB_UPLOAD_UNKNOWN, blobs stay, a fresh upload works"
serve_stop
pass
