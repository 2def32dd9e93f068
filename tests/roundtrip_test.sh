#!/usr/bin/env bash
# Blobs round-trip: put of a file and of stdin prints exactly the sha256 digest,
# cat gives the bytes back, ranged cat matches the same range cut with dd/head/
# tail, blobs --json lists what was put, a second put stores (almost) nothing.
source "$(dirname "$0")/lib.sh"

R=$T/repo
new_repo "$R"
SIZE=$((20 * 1024 * 1024))
rand_file "$T/big" "$SIZE"
want="sha256:$(sha_of "$T/big")"

# put FILE prints exactly one line: the digest.
expect_ok "put a 20 MiB file" cf "$R" put "$T/big"
[[ $OUT == "$want" ]] || fail "put printed '$OUT', want exactly '$want'"
[[ $(wc -l <"$T/.run.out") == 1 ]] || fail "put printed more than one line: $(cat "$T/.run.out")"

# cat gives the same bytes.
cf "$R" cat "$want" >"$T/big.out" 2>"$T/err" || fail "cat $want failed: $(cat "$T/err")"
cmp -s "$T/big" "$T/big.out" || fail "cat of the 20 MiB blob differs from what was put"

# Ranged reads: compare with the same range cut out of the original.
# range OFFSET LENGTH ("-" = no --length)
check_range() {
  local off=$1 len=$2 args=(--offset "$1")
  [[ $len != - ]] && args+=(--length "$len")
  if ! cf "$R" cat "${args[@]}" "$want" >"$T/range.out" 2>"$T/err"; then
    fail "cat --offset $off --length $len failed: $(cat "$T/err")"
  fi
  if [[ $len == - ]]; then
    tail -c +$((off + 1)) "$T/big" >"$T/range.want"
  else
    tail -c +$((off + 1)) "$T/big" | head -c "$len" >"$T/range.want"
  fi
  cmp -s "$T/range.want" "$T/range.out" ||
    fail "cat --offset $off --length $len: $(stat -c %s "$T/range.out") bytes differ from the same range of the file ($(stat -c %s "$T/range.want") bytes)"
}
check_range 0 1
check_range 0 4096
check_range 0 100000
check_range 12345 1            # one byte in the middle of the first chunks
check_range 1000000 3000000    # crosses many chunk boundaries
check_range $((SIZE / 2 - 65536)) 131072
check_range 7777777 -          # no --length: to the end
check_range $((SIZE - 10)) 10  # exactly the last bytes
check_range $((SIZE - 10)) 1000  # runs past the end: clipped
check_range $((SIZE - 1)) -
check_range 4242 0             # empty range
check_range "$SIZE" 10         # starts at the end: nothing
check_range $((SIZE + 12345)) 10  # starts past the end: nothing
# The same range cut with dd, as an independent cross-check of the helper.
cf "$R" cat --offset 3145728 --length 1048576 "$want" >"$T/dd.out" || fail "cat of a 1 MiB range failed"
dd if="$T/big" bs=1048576 skip=3 count=1 status=none | cmp -s - "$T/dd.out" ||
  fail "cat --offset 3145728 --length 1048576 differs from dd of the same MiB"

# Random ranges.
for _ in 1 2 3 4 5 6; do
  off=$(( (RANDOM * 32768 + RANDOM) % SIZE ))
  len=$(( (RANDOM * 32768 + RANDOM) % 300000 ))
  check_range "$off" "$len"
done

# stdin: a different stream, and the same bytes again through a pipe.
head -c 3000000 /dev/urandom >"$T/stream"
expect_ok "put - (stdin)" cf "$R" put - <"$T/stream"
want2="sha256:$(sha_of "$T/stream")"
[[ $OUT == "$want2" ]] || fail "put - printed '$OUT', want '$want2'"
cf "$R" cat "$want2" | cmp -s - "$T/stream" || fail "cat of the stdin blob differs from the input"
expect_ok "put - of the 20 MiB file through a pipe" bash -c 'cat "$1" | "$2" --repo "$3" --passphrase-file "$3.pass" -q --json put -' _ "$T/big" "$COFFER" "$R"
[[ $(jq -r .digest <<<"$OUT") == "$want" ]] || fail "put - of the same bytes gave digest $(jq -r .digest <<<"$OUT"), want $want"
[[ $(jq -r .size <<<"$OUT") == "$SIZE" ]] || fail "put --json size $(jq -r .size <<<"$OUT"), want $SIZE"
[[ $(jq -r .new_bytes <<<"$OUT") == 0 ]] || fail "putting the same 20 MiB again stored $(jq -r .new_bytes <<<"$OUT") new bytes, want 0"

# An empty blob.
expect_ok "put of an empty stdin" cf "$R" put - </dev/null
[[ $OUT == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" ]] ||
  fail "put of nothing printed '$OUT', want the sha256 of the empty string"
[[ $(cf "$R" cat "$OUT" | wc -c) == 0 ]] || fail "cat of the empty blob is not empty"

# blobs --json lists all three, with sizes.
expect_ok "blobs --json" cf "$R" --json blobs
listed=$(jq -r '.[] | "\(.digest) \(.size)"' <<<"$OUT" | sort)
expected=$(printf '%s\n' "$want $SIZE" "$want2 3000000" \
  "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0" | sort)
[[ $listed == "$expected" ]] || fail "blobs --json lists
$listed
want
$expected"

# A digest that was never put: not found, exit 1; a malformed one: exit 1 too.
absent="sha256:$(printf 'never stored' | sha256sum | cut -d' ' -f1)"
expect_rc 1 "cat of an absent blob" cf "$R" cat "$absent"
[[ $ERR == *"not found"* ]] || fail "cat of an absent blob: stderr '$ERR' does not say 'not found'"
[[ -z $OUT ]] || fail "cat of an absent blob wrote to stdout"
expect_rc 1 "cat of a malformed digest" cf "$R" cat "sha256:xyz"
[[ $ERR == *"not a digest"* ]] || fail "cat of a malformed digest: stderr '$ERR'"

expect_ok "check --read-data" cf "$R" check --read-data
pass
