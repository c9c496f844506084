#!/bin/sh
# bench/run.sh — run parley-load's scenarios against a fresh `parley serve`.
# Must run inside a private network namespace that has only lo (make bench
# does: unshare -n). The server is pinned to CPU 0 with GOMAXPROCS=1, the
# generator to CPU 1; results go to bench/results/<name>.json.
#
# Usage: bench/run.sh PARLEY_BIN PARLEY_LOAD_BIN [SCENARIO_SET]
#   SCENARIO_SET: all (default) or quick (short, small N: a smoke run).
# Environment: BENCH_SERVER_CPU, BENCH_GEN_CPU (defaults 0 and 1); BENCH_ONLY,
# a shell pattern: run only the scenarios whose name matches (e.g.
# 'fanout-n100'); BENCH_PERF=1: record the server with perf for 8 s of each
# scenario's window (bench/results/<name>.perf.data, not committed).
set -eu
PARLEY=$1
LOAD=$2
SET=${3:-all}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/bench/results
mkdir -p "$OUT"
SERVER_CPU=${BENCH_SERVER_CPU:-0}
GEN_CPU=${BENCH_GEN_CPU:-1}

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
only_lo

DATA=$(mktemp -d)
PORT=18443
URL=https://127.0.0.1:$PORT
PASSWORD="bench-load-password-$(date +%s)"
cleanup() {
	if [ -n "${SPID:-}" ]; then kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; fi
	rm -rf "$DATA"
}
trap cleanup EXIT INT TERM

# idle-ws opens 10,000 sockets: the server and the generator each need a
# descriptor per socket. Raise the soft limit as far as allowed.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
IDLE_N=10000
if [ "$(ulimit -n)" -lt $((IDLE_N + 2000)) ]; then
	IDLE_N=$(($(ulimit -n) / 1000 * 1000 - 2000))
	[ $IDLE_N -ge 1000 ] || IDLE_N=1000
	echo "bench/run.sh: the open-file limit is $(ulimit -n): idle-ws opens $IDLE_N sockets, not 10000 (raise the hard limit: ulimit -Hn)" >&2
fi
# A socket counts against its account's cap (--ws-max-per-user, at most
# 1000): idle-ws spreads its rooms over IDLE_ACCOUNTS accounts.
IDLE_ACCOUNTS=12
[ "$SET" != quick ] || IDLE_ACCOUNTS=1

# The accounts are made before the server starts (a member added while it
# runs reaches it within the 5-second policy refresh; this saves the wait).
echo "$PASSWORD" | "$PARLEY" user add --username load --password-stdin --data-dir "$DATA" --public-url $URL --log-format json >/dev/null
i=2
while [ $i -le $IDLE_ACCOUNTS ]; do
	echo "$PASSWORD" | "$PARLEY" user add --username load$i --password-stdin --data-dir "$DATA" --public-url $URL --log-format json >/dev/null
	i=$((i + 1))
done

start_server() {
	GOMAXPROCS=1 taskset -c "$SERVER_CPU" "$PARLEY" serve --data-dir "$DATA" \
		--listen 127.0.0.1:$PORT --public-url $URL \
		--media-udp-port 0 --media-tcp-port -1 --turn=false --metrics-listen off \
		--media-allowed-remote 127.0.0.0/8 --ws-max-per-user 1000 --ws-max-per-ip 100000 \
		--log-level warn --log-format json >>"$DATA/server.log" 2>&1 &
	SPID=$!
	i=0
	until curl -skf $URL/readyz >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then echo "parley serve did not start:" >&2; cat "$DATA/server.log" >&2; exit 1; fi
		sleep 0.1
	done
}
stop_server() {
	kill "$SPID" 2>/dev/null || true
	wait "$SPID" 2>/dev/null || true
	SPID=
}
start_server

# One sign-in (TOTP enrolment) for the whole run: a token lives 15 minutes.
TOKEN=$(mint_token $URL load "$DATA/totp-secret")
export PARLEY_LOAD_TOKEN="$TOKEN"
IDLE_TOKENS=$TOKEN
i=2
while [ $i -le $IDLE_ACCOUNTS ]; do
	IDLE_TOKENS=$IDLE_TOKENS,$(mint_token $URL load$i "$DATA/totp-secret$i")
	i=$((i + 1))
done

run() { # name, args...
	name=$1
	shift
	wanted "$name" || return 0
	echo "== $name"
	# A fresh server process per scenario (same data directory: the token
	# stays valid), so that its RSS does not carry the previous run's heap.
	stop_server
	start_server
	sleep 2
	PERF=
	if [ "${BENCH_PERF:-}" = 1 ]; then
		# Record 8 s from 12 s on: after fanout N<=100's joins and warm-up.
		# (Sampling costs the server CPU too: take figures from runs without.)
		(sleep 12 && exec perf record -q -e cpu-clock -g -p "$SPID" -o "$OUT/$name.perf.data" -- sleep 8) >/dev/null 2>&1 &
		PERF=$!
	fi
	generate "$name" $URL "$SPID" "$@"
	if [ -n "$PERF" ]; then wait "$PERF" 2>/dev/null || true; fi
}

if [ "$SET" = quick ]; then
	run fanout-n3 -scenario fanout -n 3 -warmup 2s -duration 3s
	run chat-n5 -scenario chat -n 5 -warmup 1s -duration 4s
	exit 0
fi
run fanout-n50 -scenario fanout -n 50 -warmup 5s -duration 15s
run fanout-n100 -scenario fanout -n 100 -warmup 5s -duration 15s
run fanout-n200 -scenario fanout -n 200 -warmup 5s -duration 15s
# The largest fan-out the generator still measures validly on one core.
run fanout-n300 -scenario fanout -n 300 -warmup 5s -duration 15s
run meeting-k6 -scenario meeting -k 6 -warmup 5s -duration 15s
run audio-n50 -scenario audio -n 50 -warmup 3s -duration 10s
run join-storm-n100 -scenario join-storm -n 100 -rate 20 -warmup 3s -duration 10s
run chat-n100 -scenario chat -n 100 -rate 50 -warmup 2s -duration 15s
run chat-n500 -scenario chat -n 500 -rate 50 -warmup 2s -duration 15s
# idle-ws: everyone in one room (each join announced to all: O(N²)), then
# 10,000 sockets in meetings of 25.
run idle-ws-n1000 -scenario idle-ws -n 1000 -room-size 0 -rate 100 -warmup 5s -duration 10s
export PARLEY_LOAD_TOKEN="$IDLE_TOKENS"
run idle-ws-n$IDLE_N -scenario idle-ws -n $IDLE_N -room-size 25 -rate 250 -warmup 5s -duration 10s
