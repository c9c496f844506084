#!/bin/sh
# bench/cluster.sh — parley-load against two nodes of one cluster
# (multi-node mode: Redis, a shared PostgreSQL database). Must run inside a
# private network namespace that has only lo (make bench-cluster does:
# unshare -n). PostgreSQL is reached on its Unix socket, which a network
# namespace does not hide; Redis is a private redis-server on loopback.
#
# Both nodes and Redis share CPU 0 (each node GOMAXPROCS=1), the generator
# has CPU 1: on a 2-core machine a core per node would leave the generator
# none. Results go to bench/results/cluster-<name>.json.
#
# Usage: bench/cluster.sh PARLEY_BIN PARLEY_LOAD_BIN [SCENARIO_SET]
#   SCENARIO_SET: all (default) or quick (short, small N: a smoke run).
# Environment: BENCH_PG, a PostgreSQL URL whose user may create databases
# (default: postgres on /var/run/postgresql); BENCH_SERVER_CPU,
# BENCH_GEN_CPU as in bench/run.sh; BENCH_ONLY, a shell pattern: run only
# the scenarios whose name matches (e.g. 'fanout*').
set -eu
PARLEY=$1
LOAD=$2
SET=${3:-all}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/bench/results
mkdir -p "$OUT"
SERVER_CPU=${BENCH_SERVER_CPU:-0}
GEN_CPU=${BENCH_GEN_CPU:-1}
PGSOCK=/var/run/postgresql
PG=${BENCH_PG:-postgres://postgres@/postgres?host=$PGSOCK&sslmode=disable}

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
only_lo
command -v redis-server >/dev/null || { echo "bench/cluster.sh: needs redis-server" >&2; exit 1; }
command -v psql >/dev/null || { echo "bench/cluster.sh: needs psql" >&2; exit 1; }

DATA=$(mktemp -d)
PORT_A=18443
PORT_B=18543
REDIS_PORT=16379
URL_A=https://127.0.0.1:$PORT_A
URL_B=https://127.0.0.1:$PORT_B
PASSWORD="bench-load-password-$(date +%s)"
DB=parley_bench_$(date +%s)_$$
# The same database URL with the new database's name.
DB_URL=$(printf '%s' "$PG" | sed "s#^\(postgres[a-z]*://[^/]*\)/[^?]*#\1/$DB#")
# Every node holds the same secrets (multi-node mode requires it).
PARLEY_SECRET_KEY=$(head -c 32 /dev/urandom | base64)
PARLEY_TURN_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export PARLEY_SECRET_KEY PARLEY_TURN_SECRET

cleanup() {
	stop_nodes
	if [ -n "${RPID:-}" ]; then kill "$RPID" 2>/dev/null || true; wait "$RPID" 2>/dev/null || true; fi
	psql "$PG" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf "$DATA"
}
trap cleanup EXIT INT TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
psql "$PG" -qc "CREATE DATABASE $DB" >/dev/null
mkdir -p "$DATA/a" "$DATA/b"

# A socket counts against its account's cap (--ws-max-per-user): idle-ws
# spreads its rooms over two accounts. Made before the nodes start.
for u in load load2; do
	echo "$PASSWORD" | "$PARLEY" user add --username $u --password-stdin --database-url "$DB_URL" --data-dir "$DATA/a" \
		--public-url $URL_A --log-format json >/dev/null
done

start_redis() {
	taskset -c "$SERVER_CPU" redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no \
		--logfile "$DATA/redis.log" >/dev/null 2>&1 &
	RPID=$!
	i=0
	until redis-cli -p $REDIS_PORT ping >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then echo "redis-server did not start:" >&2; cat "$DATA/redis.log" >&2; exit 1; fi
		sleep 0.1
	done
}
stop_redis() {
	if [ -n "${RPID:-}" ]; then kill "$RPID" 2>/dev/null || true; wait "$RPID" 2>/dev/null || true; fi
	RPID=
}

# start_node ID PORT: a node of the cluster. The cluster's public URL is
# node a's (it stands for the load balancer); parley-load sends it as the
# Origin of every request, to either node. Recording is off (nothing here
# records; on several nodes it would need shared storage).
# With a third argument, plain: no --redis-url (a single server on the same
# database).
start_node() {
	cluster="--redis-url redis://127.0.0.1:$REDIS_PORT --node-id $1"
	[ -z "${3:-}" ] || cluster=
	# shellcheck disable=SC2086 # $cluster is words or nothing
	GOMAXPROCS=1 taskset -c "$SERVER_CPU" "$PARLEY" serve --data-dir "$DATA/$1" \
		--listen 127.0.0.1:$2 --public-url $URL_A \
		--database-url "$DB_URL" $cluster \
		--media-udp-port 0 --media-tcp-port -1 --turn=false --metrics-listen off --recording=false \
		--media-allowed-remote 127.0.0.0/8 --ws-max-per-user 1000 --ws-max-per-ip 100000 \
		--log-level warn --log-format json >>"$DATA/node-$1.log" 2>&1 &
	eval "PID_$1=\$!"
}
wait_ready() { # URL, ID
	i=0
	until curl -skf "$1/readyz" >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 150 ]; then echo "node $2 did not start:" >&2; tail -n 30 "$DATA/node-$2.log" >&2; exit 1; fi
		sleep 0.1
	done
}
start_nodes() {
	start_redis
	start_node a $PORT_A
	start_node b $PORT_B
	wait_ready $URL_A a
	wait_ready $URL_B b
}
stop_nodes() {
	for p in ${PID_a:-} ${PID_b:-}; do kill "$p" 2>/dev/null || true; done
	for p in ${PID_a:-} ${PID_b:-}; do wait "$p" 2>/dev/null || true; done
	PID_a=
	PID_b=
}
start_nodes

# One sign-in (TOTP enrolment) per account for the whole run: a token
# lives 15 minutes and is valid on every node.
TOKEN=$(mint_token $URL_A load "$DATA/totp-secret")
TOKEN2=$(mint_token $URL_A load2 "$DATA/totp-secret2")
export PARLEY_LOAD_TOKEN="$TOKEN"

run() { # name, args...
	name=$1
	shift
	wanted "$name" || return 0
	echo "== cluster-$name"
	# A fresh cluster per scenario (Redis and both nodes; the same
	# database, so the tokens stay valid): no node's RSS carries the
	# previous run's heap, no placement the previous run's load.
	stop_nodes
	stop_redis
	start_nodes
	sleep 2
	generate "cluster-$name" $URL_A,$URL_B "$PID_a,$PID_b" "$@"
}
# run_one: the same with node a alone (still in multi-node mode, with
# Redis): the baseline, on the same machine at the same time.
# run_plain: node a alone without Redis (not in multi-node mode).
run_one() { # name, args...
	name=$1
	shift
	wanted "$name" || return 0
	echo "== cluster-$name"
	stop_nodes
	stop_redis
	start_redis
	start_node a $PORT_A $PLAIN
	wait_ready $URL_A a
	sleep 2
	generate "cluster-$name" $URL_A "$PID_a" "$@"
}
PLAIN=
run_plain() {
	PLAIN=plain
	run_one "$@"
	PLAIN=
}

if [ "$SET" = quick ]; then
	run fanout-2x3 -scenario fanout -rooms 2 -n 3 -warmup 2s -duration 3s
	export PARLEY_LOAD_TOKEN="$TOKEN,$TOKEN2"
	run idle-ws-n100 -scenario idle-ws -n 100 -room-size 25 -rate 100 -warmup 1s -duration 3s
	exit 0
fi
# Four rooms of 1 publisher → 25 subscribers, their sockets spread over
# both nodes (client i on node i mod 2); the servers place the meetings.
run fanout-4x25 -scenario fanout -rooms 4 -n 25 -warmup 5s -duration 15s
run_one fanout-4x25-one-node -scenario fanout -rooms 4 -n 25 -warmup 5s -duration 15s
run_plain fanout-4x25-plain -scenario fanout -rooms 4 -n 25 -warmup 5s -duration 15s
run meeting-2x6 -scenario meeting -rooms 2 -k 6 -warmup 5s -duration 15s
# 1,000 idle sockets in rooms of 25 (40 rooms, two accounts) over both
# nodes.
export PARLEY_LOAD_TOKEN="$TOKEN,$TOKEN2"
run idle-ws-n1000 -scenario idle-ws -n 1000 -room-size 25 -rate 100 -warmup 5s -duration 10s
run_one idle-ws-n1000-one-node -scenario idle-ws -n 1000 -room-size 25 -rate 100 -warmup 5s -duration 10s
run_plain idle-ws-n1000-plain -scenario idle-ws -n 1000 -room-size 25 -rate 100 -warmup 5s -duration 10s
