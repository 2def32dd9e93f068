#!/usr/bin/env bash
# Crash consistency: backups and puts killed with SIGKILL at random moments.
# After every kill the repository checks clean (structure and data), every
# snapshot it lists restores identically to the (unchanging) source, every
# backup that reported success has its snapshot, and a killed one left either
# nothing or a complete snapshot. A killed put leaves its blob absent (or, if
# the kill came after the blob was complete, intact); a completed put reads back.
#
# Each backup goes to its own set (it1, it2, ...), so none has a parent snapshot:
# every run reads the whole tree, and the set tells which run made a snapshot.
# COFFER_TEST_SEED=N replays the same kill delays.
source "$(dirname "$0")/lib.sh"

SEED=${COFFER_TEST_SEED:-$$}
RANDOM=$SEED
note "seed $SEED (COFFER_TEST_SEED=$SEED to replay)"
ITER=${COFFER_KILL9_ITERATIONS:-8}
PUT_ITER=${COFFER_KILL9_PUT_ITERATIONS:-3}

R=$T/repo
new_repo "$R" --pack-size $((8 * 1024 * 1024))
CF=("$COFFER" --repo "$R" --passphrase-file "$R.pass" -q)
# One small blob first, so the index exists even if the first kill lands before
# the first writer created it (a fresh repository is fresh_repo_test's subject).
echo "first blob" >"$T/first"
expect_ok "put of a first blob" "${CF[@]}" put "$T/first"
FIRST_BLOB=$OUT

# ~150 MiB: big random files, 1 MiB files, and 3000 small files in 30 directories.
S=$T/src
mkdir -p "$S/big" "$S/mid"
for i in 1 2 3 4 5; do rand_file "$S/big/b$i" $((20 * 1024 * 1024)); done
for i in $(seq 1 40); do rand_file "$S/mid/m$i" $((1024 * 1024)); done
for d in $(seq 1 30); do
  mkdir -p "$S/small/d$d"
  for i in $(seq 1 100); do printf 'small %d/%d %s%s\n' "$d" "$i" "$RANDOM" "$RANDOM" >"$S/small/d$d/f$i"; done
done
ln -s ../big/b1 "$S/mid/link"
ln "$S/mid/m1" "$S/small/hard-m1"
note "source tree: $(du -sh "$S" | cut -f1), $(find "$S" -type f | wc -l) files"

random_delay() {  # random_delay MIN_MS MAX_MS: prints seconds with 3 decimals
  local ms=$(($1 + RANDOM % ($2 - $1 + 1)))
  printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

# check_repo WHEN: structure and data checks pass.
check_repo() {
  expect_ok "check $1" "${CF[@]}" check
  expect_ok "check --read-data $1" "${CF[@]}" check --read-data
}

fast_scratch  # sets FAST: restores of 150 MiB are compared, then deleted: tmpfs if possible
declare -A VERIFIED=()  # snapshot id -> 1 once restored and compared
declare -A OUTCOME=()   # set -> ok | killed
declare -A REPORTED=()  # set -> id the backup printed
restore_and_compare() {  # SET ID
  local out=$FAST/restore
  rm -rf "$out"
  expect_ok "restore $1@$2" "${CF[@]}" restore "$1@$2" "$out"
  same_tree "$S" "$(restored_root "$out" "$S")" "snapshot $1@$2"
  rm -rf "$out"
  VERIFIED[$2]=1
}

# verify_snapshots WHEN ALL: the listed snapshots against the backups' outcomes;
# restores those not verified yet (every one when ALL is 1). Snapshots verified
# earlier stay covered by check --read-data, which walks every file of every
# snapshot and finds any chunk that is missing or damaged.
verify_snapshots() {
  local when=$1 all=$2 set id n
  expect_ok "snapshots --json $when" "${CF[@]}" --json snapshots
  local list=$OUT
  for set in $(jq -r '.[].set' <<<"$list" | sort -u); do
    [[ -n ${OUTCOME[$set]:-} ]] || fail "$when: snapshots lists set '$set', which no backup used"
  done
  for set in "${!OUTCOME[@]}"; do
    n=$(jq --arg s "$set" '[.[] | select(.set == $s)] | length' <<<"$list")
    if [[ ${OUTCOME[$set]} == ok ]]; then
      [[ $n == 1 ]] || fail "$when: backup to set $set reported success (id ${REPORTED[$set]}) but snapshots lists $n snapshots of it"
      id=$(jq -r --arg s "$set" '.[] | select(.set == $s) | .id' <<<"$list")
      [[ $id == "${REPORTED[$set]}" ]] || fail "$when: set $set has snapshot $id, the backup reported ${REPORTED[$set]}"
    else
      ((n <= 1)) || fail "$when: a single killed backup left $n snapshots in set $set"
      if ((n == 1)) && [[ ${OUTCOME[$set]} != killed-complete ]]; then
        note "the killed backup of set $set had completed its snapshot before the kill"
        OUTCOME[$set]="killed-complete"
      fi
      [[ ${OUTCOME[$set]} == killed-complete && $n == 0 ]] && fail "$when: snapshot of set $set vanished"
    fi
    if ((n == 1)); then
      id=$(jq -r --arg s "$set" '.[] | select(.set == $s) | .id' <<<"$list")
      [[ $all == 1 || -z ${VERIFIED[$id]:-} ]] && restore_and_compare "$set" "$id"
    fi
  done
  return 0
}

killed=0 completed=0
for i in $(seq 1 "$ITER"); do
  # The first two kills come early, while data is still being written.
  case $i in
    1) delay=0.100 ;;
    2) delay=0.300 ;;
    *) delay=$(random_delay 50 1500) ;;
  esac
  set=it$i
  "${CF[@]}" --json backup --set "$set" "$S" >"$T/b.out" 2>"$T/b.err" &
  pid=$!
  bg_track "$pid"
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rc=$?
  if ((rc == 0)); then
    OUTCOME[$set]=ok
    REPORTED[$set]=$(jq -r .id "$T/b.out")
    [[ ${REPORTED[$set]} =~ ^[0-9a-f]{16}$ ]] || fail "backup $i succeeded but printed '$(cat "$T/b.out")'"
    completed=$((completed + 1))
    note "backup $i: completed before the kill at ${delay}s (${REPORTED[$set]})"
  elif ((rc == 137)) && [[ -s $T/b.out ]]; then
    # Killed while exiting, after it had reported success: that report is a promise.
    OUTCOME[$set]=ok
    REPORTED[$set]=$(jq -r .id "$T/b.out" 2>/dev/null)
    [[ ${REPORTED[$set]} =~ ^[0-9a-f]{16}$ ]] || fail "backup $i was killed after printing a partial report '$(cat "$T/b.out")'"
    completed=$((completed + 1))
    note "backup $i: reported success, then was killed while exiting at ${delay}s (${REPORTED[$set]})"
  elif ((rc == 137)); then
    OUTCOME[$set]=killed
    killed=$((killed + 1))
    note "backup $i: killed after ${delay}s"
  else
    fail "backup $i exited $rc (not killed): $(cat "$T/b.err")"
  fi
  check_repo "after backup $i"
  verify_snapshots "after backup $i" 0
done

# One more backup completes, restores identically; every snapshot still does.
expect_ok "final backup" "${CF[@]}" --json backup --set final "$S"
OUTCOME[final]=ok
REPORTED[final]=$(jq -r .id <<<"$OUT")
[[ $ERR != *error* ]] || fail "the final backup warned: $ERR"
[[ -z $(ls -A "$R/tmp") ]] || fail "tmp/ holds $(ls -A "$R/tmp") after a writer opened the repository"
check_repo "after the final backup"
verify_snapshots "at the end" 0
# and one earlier snapshot again, restored after all the later crashes
first_ok=$(snapshot_ids "$R" | head -n1)
first_set=$("${CF[@]}" --json snapshots | jq -r --arg id "$first_ok" '.[] | select(.id == $id) | .set')
restore_and_compare "$first_set" "$first_ok"
n=$(snapshot_ids "$R" | wc -l)
note "backups: $completed completed, $killed killed; $n snapshots (final included), all restore identically"

# Killed puts of fresh 100 MiB random files.
BLOBS=("$FIRST_BLOB")  # digests of the puts that completed
for i in $(seq 1 "$PUT_ITER"); do
  case $i in
    1) delay=0.100 ;;
    *) delay=$(random_delay 50 1500) ;;
  esac
  rand_file "$FAST/put.data" $((100 * 1024 * 1024))
  dg="sha256:$(sha_of "$FAST/put.data")"
  "${CF[@]}" put "$FAST/put.data" >"$T/p.out" 2>"$T/p.err" &
  pid=$!
  bg_track "$pid"
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rc=$?
  check_repo "after put $i"
  "${CF[@]}" cat "$dg" >"$FAST/cat.out" 2>"$T/cat.err"
  RC=$? ERR=$(<"$T/cat.err")
  if ((rc == 0)) || { ((rc == 137)) && [[ -s $T/p.out ]]; }; then
    # (exit 137 with the digest printed: killed while exiting, after reporting success)
    [[ $(cat "$T/p.out") == "$dg" ]] || fail "put $i succeeded but printed '$(cat "$T/p.out")', want $dg"
    ((RC == 0)) || fail "completed put $i: cat $dg failed (exit $RC): $ERR"
    cmp -s "$FAST/cat.out" "$FAST/put.data" || fail "completed put $i does not cat back identically"
    note "put $i: completed before the kill at ${delay}s"
    BLOBS+=("$dg")
  elif ((rc == 137)); then
    if ((RC == 0)); then
      # The kill came after the blob root was written: the blob must be whole.
      cmp -s "$FAST/cat.out" "$FAST/put.data" || fail "killed put $i left blob $dg that reads back wrong"
      note "put $i: killed after ${delay}s, but the blob was already complete"
      BLOBS+=("$dg")
    else
      [[ ! -s $FAST/cat.out ]] || fail "cat of the absent blob $dg wrote to stdout"
      [[ $RC == 1 && $ERR == *"not found"* ]] ||
        fail "killed put $i: cat $dg gave exit $RC, stderr '$ERR'; want exit 1 and 'not found'"
      note "put $i: killed after ${delay}s; the blob is absent"
    fi
  else
    fail "put $i exited $rc (not killed): $(cat "$T/p.err")"
  fi
  rm -f "$FAST/cat.out"
done
# The blobs listed are exactly the completed ones, and all read back (the data
# files were overwritten, so compare digests of a re-read).
expect_ok "blobs --json" "${CF[@]}" --json blobs
listed=$(jq -r '.[].digest' <<<"$OUT" | sort)
want=$(printf '%s\n' "${BLOBS[@]}" | sed '/^$/d' | sort)
[[ $listed == "$want" ]] || fail "blobs --json lists
$listed
but the completed puts were
$want"
for dg in $(jq -r '.[].digest' <<<"$OUT"); do
  got="sha256:$("${CF[@]}" cat "$dg" | sha256sum | cut -d' ' -f1)"
  [[ $got == "$dg" ]] || fail "blob $dg reads back as $got"
done
expect_ok "a writer after the killed puts" "${CF[@]}" put "$S/mid/m2"
[[ -z $(ls -A "$R/tmp") ]] || fail "tmp/ holds $(ls -A "$R/tmp") after a writer opened the repository"
check_repo "at the end"
verify_snapshots "after the puts" 0
pass
