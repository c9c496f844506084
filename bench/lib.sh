# bench/lib.sh — what bench/run.sh and bench/cluster.sh share; sourced by
# them. Uses their GEN_CPU, LOAD, OUT, DATA and PASSWORD.

# only_lo: refuse to run where packets could leave the machine: only lo may
# be up (run inside unshare -n).
only_lo() {
	if ip -o link show up | grep -v ': lo:' | grep -q .; then
		echo "$0: run me inside unshare -n (an interface other than lo is up)" >&2
		exit 1
	fi
}

# wanted NAME: whether BENCH_ONLY (a shell pattern) lets scenario NAME run.
wanted() {
	# shellcheck disable=SC2254 # BENCH_ONLY is a pattern
	case $1 in ${BENCH_ONLY:-*}) return 0 ;; esac
	return 1
}

# mint_token URL USERNAME SECRET_FILE: signs in once (TOTP enrolment; the
# new secret goes to SECRET_FILE, never to a log) and prints a Bearer token,
# valid 15 minutes.
mint_token() {
	taskset -c "$GEN_CPU" "$LOAD" -url "$1" -insecure -username "$2" -password "$PASSWORD" \
		-totp-secret-file "$3" -scenario token 2>>"$DATA/enroll.txt"
}

# generate REPORT URLS PIDS ARGS...: parley-load on the generator's CPU
# against the servers at URLS (their pids PIDS, comma-separated), its report
# in $OUT/REPORT.json. A failed run is said and the next one goes on.
generate() {
	report=$1 urls=$2 pids=$3
	shift 3
	taskset -c "$GEN_CPU" "$LOAD" -url "$urls" -insecure -server-pid "$pids" -json "$OUT/$report.json" "$@" ||
		echo "!! $report failed (exit $?)"
}
