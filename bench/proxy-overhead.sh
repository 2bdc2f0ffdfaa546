#!/usr/bin/env bash
# Proxy overhead on ordinary traffic: pgbench -S (one-row primary-key SELECTs, simple protocol)
# straight to PostgreSQL vs through copy-to-s3-proxy vs through PgBouncer (session mode, the
# baseline a reader knows). Runs the three targets alternately (order rotated each round), 3
# rounds, at 1 client and at 8 clients, and prints medians and ratios. ~3.5 minutes.
#
#   bash bench/proxy-overhead.sh               # all three targets (runs `npm run build` first)
#   bash bench/proxy-overhead.sh --no-proxy    # direct and PgBouncer only (tests the harness)
#
# Env: ROUNDS (3), DURATION (10 s per run), SCALE (10), PG_BIN (default: newest
# /usr/lib/postgresql/*/bin). Needs postgresql (server, psql, pgbench) and pgbouncer.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_PROXY=1
for a in "$@"; do
  case "$a" in
    --no-proxy) WITH_PROXY=0 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
SCALE=${SCALE:-10}

die() { echo "proxy-overhead: $*" >&2; exit 1; }
free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

if [ -z "${PG_BIN:-}" ]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
fi
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || die "PostgreSQL server binaries not found (apt-get install -y postgresql)"
PGBENCH="$PG_BIN/pgbench"
PSQL="$PG_BIN/psql"
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$PGBOUNCER" ] || die "pgbouncer not found (apt-get install -y pgbouncer)"

if [ "$WITH_PROXY" = 1 ]; then
  echo "==> npm run build"
  npm run build --silent || die "npm run build failed"
  [ -f dist/cli.js ] || die "dist/cli.js does not exist after 'npm run build': the proxy is not built yet (src/cli.ts). Use --no-proxy to measure direct vs PgBouncer only."
fi

D=$(mktemp -d /tmp/c2s-bench-XXXXXX)
chmod 755 "$D"
PIDS=()
as_pg() { # run a command as the postgres OS user when we are root (initdb/postgres refuse root)
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -f "$D/data/postmaster.pid" ]; then as_pg "$PG_BIN/pg_ctl" -D "$D/data" -m immediate -w stop >/dev/null 2>&1 || true; fi
  rm -rf "$D"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ "$(id -u)" = 0 ] && chown postgres "$D"

# ------------------------------------------------------------------ PostgreSQL (TESTING.md recipe)
PGPORT=$(free_port)
echo "==> PostgreSQL on 127.0.0.1:$PGPORT ($PG_BIN)"
as_pg "$PG_BIN/initdb" -D "$D/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$D/data" -l "$D/pg.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $D -c fsync=off -c synchronous_commit=off -c max_connections=100" \
  start >/dev/null
echo "==> pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PGPORT" -U postgres postgres 2>&1 | tail -1

# ------------------------------------------------------------------ PgBouncer (session mode)
BOUNCER_PORT=$(free_port)
echo "==> PgBouncer on 127.0.0.1:$BOUNCER_PORT (session mode, auth_type trust)"
cat >"$D/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$PGPORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $D/userlist.txt
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = $D/pgbouncer.log
pidfile =
ignore_startup_parameters = extra_float_digits
EOF
echo '"postgres" ""' >"$D/userlist.txt"
[ "$(id -u)" = 0 ] && chown postgres "$D/pgbouncer.ini" "$D/userlist.txt"
if [ "$(id -u)" = 0 ]; then
  "$PGBOUNCER" -u postgres "$D/pgbouncer.ini" >"$D/pgbouncer.out" 2>&1 &
else
  "$PGBOUNCER" "$D/pgbouncer.ini" >"$D/pgbouncer.out" 2>&1 &
fi
PIDS+=($!)

# ------------------------------------------------------------------ the proxy
TARGETS=(direct pgbouncer)
declare -A PORT=([direct]=$PGPORT [pgbouncer]=$BOUNCER_PORT)
if [ "$WITH_PROXY" = 1 ]; then
  PROXY_PORT=$(free_port)
  echo "==> proxy on 127.0.0.1:$PROXY_PORT (node dist/cli.js, upstream 127.0.0.1:$PGPORT)"
  node dist/cli.js --listen "127.0.0.1:$PROXY_PORT" --upstream "127.0.0.1:$PGPORT" \
    >"$D/proxy.out" 2>&1 &
  PIDS+=($!)
  PORT[proxy]=$PROXY_PORT
  TARGETS=(direct proxy pgbouncer)
fi

wait_ready() { # name port
  local i
  for i in $(seq 1 150); do
    if PGCONNECT_TIMEOUT=2 "$PSQL" -h 127.0.0.1 -p "$2" -U postgres -d postgres -XAtqc 'select 1' >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "--- $1 output:" >&2
  cat "$D/$1.out" "$D/$1.log" 2>/dev/null | tail -20 >&2
  die "$1 did not accept a query on port $2 within 30 s"
}
for t in "${TARGETS[@]}"; do wait_ready "$t" "${PORT[$t]}"; done

# ------------------------------------------------------------------ runs
export PGSSLMODE=disable # the same plain TCP on every leg
RESULTS="$D/results.tsv"
: >"$RESULTS"
run_one() { # target clients threads round
  local out tps lat
  out=$("$PGBENCH" -S -n -T "$DURATION" -c "$2" -j "$3" -h 127.0.0.1 -p "${PORT[$1]}" -U postgres postgres 2>&1) ||
    { echo "$out" >&2; die "pgbench through $1 failed"; }
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | tail -1)
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$out")
  [ -n "$tps" ] && [ -n "$lat" ] || { echo "$out" >&2; die "could not read pgbench's output for $1"; }
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$tps" "$lat" "$4" >>"$RESULTS"
  printf '    %-9s -c %s: %10.1f tps  %7.3f ms\n' "$1" "$2" "$tps" "$lat"
}
n=${#TARGETS[@]}
total=$((ROUNDS * 2 * n * DURATION))
echo "==> pgbench -S -n -T $DURATION, $ROUNDS rounds x {-c 1, -c 8 -j 2} x {${TARGETS[*]}}: ~${total} s"
for r in $(seq 1 "$ROUNDS"); do
  echo "  round $r"
  for cj in "1 1" "8 2"; do
    read -r c j <<<"$cj"
    for i in $(seq 0 $((n - 1))); do # rotate the order so no target always runs first
      run_one "${TARGETS[$(((i + r - 1) % n))]}" "$c" "$j" "$r"
    done
  done
done

# ------------------------------------------------------------------ report
echo
awk -F'\t' -v rounds="$ROUNDS" -v dur="$DURATION" '
function median(key,   n, i, j, t, a) {
  n = cnt[key]; for (i = 1; i <= n; i++) a[i] = val[key, i]
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
# Latency per run from its tps: clients / tps (what pgbench prints as latency average, but unrounded).
{ k = "tps" SUBSEP $1 SUBSEP $2; val[k, ++cnt[k]] = $3; k = "lat" SUBSEP $1 SUBSEP $2; val[k, ++cnt[k]] = $2 * 1e6 / $3; have[$1] = 1
  RT[$1, $2, $5] = $3; RL[$1, $2, $5] = $2 * 1e6 / $3; if ($5 > nr) nr = $5 }
# The same ratio within each round (targets ran back to back), and the median of those: less
# exposed to the machine getting slower or faster between rounds than the ratio of medians.
function paired(what, c,   r, v, s, key) {
  key = "paired" SUBSEP what SUBSEP c; s = ""
  for (r = 1; r <= nr; r++) {
    if (what == "tps") v = RT["proxy", c, r] / RT["pgbouncer", c, r]
    else { b = RL["pgbouncer", c, r] - RL["direct", c, r]; if (b <= 0) continue; v = (RL["proxy", c, r] - RL["direct", c, r]) / b }
    val[key, ++cnt[key]] = v; s = s sprintf(" %.2f", v)
  }
  return cnt[key] ? sprintf("per round:%s; median %.2f", s, median(key)) : "per round: n/a"
}
END {
  printf "proxy overhead — pgbench -S, medians of %d runs of %d s each (alternating targets)\n", rounds, dur
  printf "%-10s %8s %12s %14s\n", "target", "clients", "median tps", "median lat us"
  split("direct proxy pgbouncer", order, " ")
  for (ci = 1; ci <= 2; ci++) {
    c = (ci == 1) ? 1 : 8
    for (o = 1; o <= 3; o++) { t = order[o]; if (!(t in have)) continue
      T[t, c] = median("tps" SUBSEP t SUBSEP c); L[t, c] = median("lat" SUBSEP t SUBSEP c)
      printf "%-10s %8d %12.1f %14.1f\n", t, c, T[t, c], L[t, c] }
  }
  print ""
  for (ci = 1; ci <= 2; ci++) {
    c = (ci == 1) ? 1 : 8
    bounce_add = (L["pgbouncer", c] - L["direct", c])
    printf "-c %d: pgbouncer/direct tps %.3f; pgbouncer adds %.1f us per transaction\n", c, T["pgbouncer", c] / T["direct", c], bounce_add
    if ("proxy" in have) {
      proxy_add = (L["proxy", c] - L["direct", c])
      printf "-c %d: proxy/direct tps %.3f; proxy/pgbouncer tps %.3f\n", c, T["proxy", c] / T["direct", c], T["proxy", c] / T["pgbouncer", c]
      printf "-c %d: added latency proxy-direct %.1f us vs pgbouncer-direct %.1f us (ratio %s)\n", c, proxy_add, bounce_add, (bounce_add > 0 ? sprintf("%.2f", proxy_add / bounce_add) : "n/a")
    }
  }
  if ("proxy" in have) {
    r8 = T["proxy", 8] / T["pgbouncer", 8]
    b1 = L["pgbouncer", 1] - L["direct", 1]; p1 = L["proxy", 1] - L["direct", 1]
    print ""
    printf "target: -c 8  proxy tps >= 0.9 x pgbouncer tps ............. %.3f  %s   (%s)\n", r8, (r8 >= 0.9 ? "MET" : "MISSED"), paired("tps", 8)
    printf "target: -c 1  proxy added latency <= 1.2 x pgbouncer added .. %s  %s   (%s)\n", (b1 > 0 ? sprintf("%.2f", p1 / b1) : "n/a"), (b1 > 0 && p1 <= 1.2 * b1 ? "MET" : (b1 > 0 ? "MISSED" : "n/a (pgbouncer added nothing measurable)")), paired("lat", 1)
  } else {
    print ""
    print "proxy not measured (--no-proxy)"
  }
}' "$RESULTS"
