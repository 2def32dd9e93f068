# Shared by the system tests (sourced by lib.sh and fs_lib.sh, which set up $T,
# $TEST_NAME and $COFFER and their own clean-up): failing, running and checking
# commands, and making repositories.

# fail REASON...: the test failed; says why and exits 1. Call it from the main
# shell (not from inside $(...)), or the exit only leaves the subshell.
fail() {
  echo "FAIL [$TEST_NAME]: $*" >&2
  exit 1
}

# fail_later REASON...: records a failure but lets the test go on (for a wrong
# exit code after work that later steps can still check); pass then fails.
_LATER=()
fail_later() {
  echo "FAIL [$TEST_NAME] (continuing): $*" >&2
  _LATER+=("$*")
}

note() { echo "[$TEST_NAME ${SECONDS}s] $*"; }

pass() {
  if ((${#_LATER[@]} > 0)); then
    echo "FAIL [$TEST_NAME]: ${#_LATER[@]} check(s) failed (listed above)" >&2
    exit 1
  fi
  echo "PASS [$TEST_NAME] in ${SECONDS}s"
  exit 0
}


# run CMD...: runs it with stdout and stderr captured; sets RC, OUT and ERR.
run() {
  "$@" >"$T/.run.out" 2>"$T/.run.err"
  RC=$?
  OUT=$(tr -d '\0' <"$T/.run.out")
  ERR=$(tr -d '\0' <"$T/.run.err")
}

# expect_rc WANT WHAT CMD...: run, and fail unless the exit code is WANT.
expect_rc() {
  local want=$1 what=$2
  shift 2
  run "$@"
  [[ $RC == "$want" ]] || fail "$what: exit $RC, want $want (command: $*; stderr: ${ERR:0:2000}; stdout: ${OUT:0:500})"
}

# expect_ok WHAT CMD...
expect_ok() { expect_rc 0 "$@"; }

# new_repo DIR [init options...]: creates a repository with a random passphrase
# in DIR.pass and cheap argon2id costs, so unlocking takes milliseconds.
new_repo() {
  local r=$1
  shift
  printf 'passphrase %s %s\n' "$RANDOM$RANDOM" "$TEST_NAME" >"$r.pass"
  expect_ok "coffer init $r" "$COFFER" --repo "$r" --passphrase-file "$r.pass" -q \
    init --kdf-memory 8192 --kdf-iterations 4 "$@"
}

# cf DIR ARGS...: coffer on repository DIR, unlocked with DIR.pass, quiet.
cf() {
  local r=$1
  shift
  "$COFFER" --repo "$r" --passphrase-file "$r.pass" -q "$@"
}

# rand_file PATH BYTES
rand_file() { head -c "$2" /dev/urandom >"$1"; }

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# expect_err TEXT WHAT CMD...: the command fails and its stderr contains TEXT
# (an strerror text such as "Read-only file system").
expect_err() {
  local text=$1 what=$2
  shift 2
  run "$@"
  [[ $RC != 0 ]] || fail "$what: succeeded, want a failure with \"$text\" (command: $*)"
  [[ $ERR == *"$text"* ]] || fail "$what: stderr '${ERR:0:1000}' does not say \"$text\" (command: $*)"
}

is_running() { kill -0 "$1" 2>/dev/null; }
