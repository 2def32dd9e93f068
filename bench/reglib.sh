# shellcheck shell=bash
# reglib.sh: what the registry benchmarks (registry_bench.sh, layers_bench.sh)
# share: timing with CPU accounting, cache dropping, dockerd, and the two
# registries' start/stop adapters. Sourced, not run. Uses the caller's globals:
# WORK, LOG, TD, PORT, REG, REP, RESULTS, TIMEOUT, COFFER, IMAGE_ID, log, die.

# --------------------------------------------------------------- helpers ----
CACHES_DROPPED=yes
drop_caches() {
  sync
  if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    CACHES_DROPPED="NO (cannot write /proc/sys/vm/drop_caches)"
  fi
}

now() { date +%s.%N; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.6f", a / b }'; }
bytes() { du -sb "$1" | cut -f1; }

# children_cpu FILE: CHILD_CPU = CPU seconds (user + sys) of this shell's waited-for
# children so far (second line of `times`; it must run in this shell, hence the file).
CHILD_CPU=0
children_cpu() {
  times >"$1"
  CHILD_CPU=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }
                           printf "%.3f", s }' "$1")
}

# tree_cpu PID: CPU seconds (utime+stime+cutime+cstime) of PID and all its
# descendants, from /proc/*/stat (the comm field may hold spaces and parentheses:
# everything up to the last ") " is cut). Prints 0 when PID is gone.
HZ=$(getconf CLK_TCK)
tree_cpu() {
  local f l
  for f in /proc/[0-9]*/stat; do
    read -r l <"$f" || continue
    printf '%s %s\n' "${l%% *}" "${l##*) }"
  done 2>/dev/null | awk -v root="$1" -v hz="$HZ" '
    { pp[$1] = $3; t[$1] = $13 + $14 + $15 + $16 }
    END {
      if (!(root in t)) { print 0; exit }
      s = 0
      for (p in t) { q = p; n = 0
        while (q != "" && q != 0 && q != root && n++ < 64) q = pp[q]
        if (q == root) s += t[p] }
      printf "%.3f\n", s / hz }'
}

# timed LOG CMD...: drop caches, run CMD (time limit $TIMEOUT) appending its output to
# LOG; sets ELAPSED (wall s), CPU (CMD's own CPU s), RCPU (registry tree CPU s, of
# $REG_PID) and DCPU (dockerd's CPU s). Returns CMD's exit status.
ELAPSED=0 CPU=0 RCPU=0 DCPU=0
timed() {
  local logf=$1 t0 t1 c0 c1 r0 r1 d0 d1 rc=0; shift
  drop_caches
  printf '\n$ %s\n' "$*" >>"$logf"
  children_cpu "$logf.times"; c0=$CHILD_CPU
  r0=$(tree_cpu "$REG_PID"); d0=$(tree_cpu "$DOCKERD_PID")
  t0=$(now)
  if declare -F "$1" >/dev/null; then "$@" >>"$logf" 2>&1 || rc=$?   # a shell function: no timeout(1)
  else timeout "$TIMEOUT" "$@" >>"$logf" 2>&1 || rc=$?; fi
  t1=$(now)
  r1=$(tree_cpu "$REG_PID"); d1=$(tree_cpu "$DOCKERD_PID")
  children_cpu "$logf.times"; c1=$CHILD_CPU
  ELAPSED=$(fsub "$t1" "$t0"); CPU=$(fsub "$c1" "$c0")
  RCPU=$(fsub "$r1" "$r0"); DCPU=$(fsub "$d1" "$d0")
  printf '# exit %d after %s s wall, %s s CPU (command), %s s CPU (registry), %s s CPU (dockerd)\n' \
    "$rc" "$ELAPSED" "$CPU" "$RCPU" "$DCPU" >>"$logf"
  if ((rc != 0)); then
    ((rc == 124)) && log "  timed out after $TIMEOUT s: $*"
    return "$rc"
  fi
}

# wait_http URL SECONDS
wait_http() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  return 1
}

# free_port: an unused TCP port on 127.0.0.1
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ensure_dockerd: a Docker engine on the default socket (as shared/acceptance/lib.sh).
ensure_dockerd() {
  docker info >/dev/null 2>&1 && return 0
  command -v dockerd >/dev/null || die "dockerd not installed (apt-get install docker.io)"
  setsid dockerd >"$WORK/dockerd.log" 2>&1 9>&- &  # not the caller's benchmark lock (fd 9)
  local i; for ((i = 0; i < 300; i++)); do docker info >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "dockerd did not start (see $WORK/dockerd.log)"
}

# ensure_image: the benchmark image is present locally (docker load from the saved
# tar when a failed step left it deleted).
ensure_image() {
  docker image inspect "$IMAGE_ID" >/dev/null 2>&1 && return 0
  log "  image $IMAGE_ID missing: docker load"
  docker load -i "$WORK/image/saved.tar" >>"$LOG" 2>&1 || return 1
  docker image inspect "$IMAGE_ID" >/dev/null 2>&1
}

# Record one measurement: rep registry metric value
RESULTS=${RESULTS:-}
record() { printf '%s\t%s\t%s\t%s\n' "$REP" "$1" "$2" "$3" >>"$RESULTS"; }

# ------------------------------------------------------ registry adapters ----
# <reg>_start: fresh storage under $TD, start the registry on 127.0.0.1:$PORT as a
# child of this shell, set REG_PID and STORE (the directory du measures).
# <reg>_stop: SIGTERM, wait; returns non-zero when it did not stop cleanly.

PASS=coffer-regbench-passphrase

coffer_start() {
  R=$TD/repo M=$TD/mnt STORE=$TD/repo
  mkdir -p "$M"; printf '%s\n' "$PASS" >"$TD/pass"; chmod 600 "$TD/pass"
  "$COFFER" init --repo "$R" --passphrase-file "$TD/pass" >>"$LOG" 2>&1 || { log "coffer init failed"; return 1; }
  # shellcheck disable=SC2086  # COFFER_SERVE_FLAGS: extra serve flags, word-split on purpose
  "$COFFER" serve --repo "$R" --passphrase-file "$TD/pass" --mount "$M" --registry "127.0.0.1:$PORT" \
    ${COFFER_SERVE_FLAGS:-} >"$TD/serve.log" 2>&1 &
  REG_PID=$!
}

distribution_start() {
  STORE=$TD/storage; mkdir -p "$STORE"
  # Debian's /etc/docker/registry/config.yml minus auth and the health check, on our
  # port and storage; access log off and level warn (coffer logs no requests either).
  cat >"$TD/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $STORE
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
  headers:
    X-Content-Type-Options: [nosniff]
EOF
  docker-registry serve "$TD/config.yml" >"$TD/serve.log" 2>&1 &
  REG_PID=$!
}

# stop_registry: SIGTERM to $REG_PID, wait up to 60 s; then SIGKILL. For coffer, the
# mount must be gone afterwards. Sets STOP_NOTE on anything unusual.
STOP_NOTE=
stop_registry() {
  local i rc=0
  STOP_NOTE=
  [[ -n ${REG_PID:-} ]] || return 0
  kill -TERM "$REG_PID" 2>/dev/null || true
  for ((i = 0; i < 600; i++)); do kill -0 "$REG_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$REG_PID" 2>/dev/null; then
    STOP_NOTE="did not exit within 60 s of SIGTERM (killed)"
    kill -KILL "$REG_PID" 2>/dev/null || true
  fi
  wait "$REG_PID" 2>/dev/null || rc=$?
  # distribution exits 0 or 2 on SIGTERM depending on timing; only coffer's status matters
  if [[ $REG == coffer ]]; then
    ((rc == 0)) || STOP_NOTE="${STOP_NOTE:+$STOP_NOTE; }exit status $rc after SIGTERM"
    if mountpoint -q "$M" 2>/dev/null; then
      STOP_NOTE="${STOP_NOTE:+$STOP_NOTE; }$M still mounted after exit"
      fusermount3 -u "$M" 2>/dev/null || umount -l "$M" 2>/dev/null || true
    fi
  fi
  REG_PID=
  [[ -z $STOP_NOTE ]]
}

