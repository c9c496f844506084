#!/usr/bin/env bash
# Offline vulnerability check for Parley.
#
# Runs govulncheck over ./... against a Go vulnerability database that is built
# locally from the golang.org/x/vulndb module (its data/osv directory, indexed
# with its own cmd/indexdb). Both tools and the data come through the Go module
# proxy; govulncheck itself never contacts a vulnerability database server.
#
# Usage: scripts/vulncheck.sh [DIR]   (DIR defaults to the repository root)
#
# Environment:
#   PARLEY_VULNDB_CACHE  where the built database is kept
#                        (default: ${XDG_CACHE_HOME:-$HOME/.cache}/parley/vulndb-$VULNDB_VERSION)
#
# Exit status: 0 when no reachable (called) vulnerability was found; 3 when
# govulncheck reports one; any other non-zero status on errors.
set -euo pipefail

# Pinned versions. Bump VULNDB_VERSION to pick up newer advisories; the cache
# directory name includes it, so a bump triggers exactly one rebuild.
GOVULNCHECK_VERSION=v1.9.0
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018

export GOPROXY="${GOPROXY:-https://proxy.golang.org}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
target="${1:-$repo_root}"
target="$(cd "$target" && pwd -P)"

cache="${PARLEY_VULNDB_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/parley/vulndb-$VULNDB_VERSION}"
marker="$cache/.parley-vulndb-complete"

log() { printf 'vulncheck: %s\n' "$*" >&2; }

db_complete() {
	[[ -f "$marker" && "$(cat "$marker")" == "golang.org/x/vulndb@$VULNDB_VERSION" &&
		-f "$cache/index/db.json" && -f "$cache/index/modules.json" &&
		-f "$cache/index/vulns.json" && -d "$cache/ID" ]]
}

# A throwaway module for the go commands below, so that neither the project's
# go.mod nor a go.work around the cache directory is consulted or modified.
# GOFLAGS is cleared for them: flags meant for the project (-mod=vendor, tags)
# do not apply to installing pinned tools.
tool_go() { (cd "$work/mod" && GOWORK=off GOFLAGS='' "$@"); }

build_db() {
	local vulndb_dir n

	log "building vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION (first run only)"
	vulndb_dir="$(tool_go go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
	if [[ -z "$vulndb_dir" || ! -d "$vulndb_dir/data/osv" ]]; then
		log "could not download golang.org/x/vulndb@$VULNDB_VERSION (no data/osv directory)"
		exit 1
	fi
	tool_go env GOBIN="$work/bin" go install "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION"

	# indexdb -vulns DIR -out DIR writes index/{db,modules,vulns}.json and
	# ID/<GO-ID>.json (plus .gz copies), the layout that govulncheck -db file://
	# reads.
	"$work/bin/indexdb" -vulns "$vulndb_dir/data/osv" -out "$work/db"

	# The OSV files in the module carry a zero "modified" time (the real value
	# is filled in from git history when vuln.go.dev is deployed), so db.json
	# says 0001-01-01. Use the vulndb commit time from the pseudo-version
	# instead, so govulncheck's "DB updated" line is meaningful.
	if [[ "$VULNDB_VERSION" =~ -([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})-[0-9a-f]{12}$ ]]; then
		local r=("${BASH_REMATCH[@]}")
		printf '{"modified":"%s-%s-%sT%s:%s:%sZ"}' "${r[1]}" "${r[2]}" "${r[3]}" "${r[4]}" "${r[5]}" "${r[6]}" \
			>"$work/db/index/db.json"
		gzip -nc "$work/db/index/db.json" >"$work/db/index/db.json.gz"
	fi

	n="$(find "$work/db/ID" -name '*.json' | wc -l)"
	if ((n == 0)); then
		log "indexdb produced no entries"
		exit 1
	fi

	# Replace only what we own in the cache directory, then write the marker last.
	mkdir -p "$cache"
	rm -rf "$marker" "$cache/index" "$cache/ID"
	mv "$work/db/index" "$work/db/ID" "$cache/"
	printf 'golang.org/x/vulndb@%s\n' "$VULNDB_VERSION" >"$marker"
	log "database ready: $n entries in $cache"
}

# Scratch space next to the cache (same file system, so the finished database
# can be moved into place).
mkdir -p "$(dirname "$cache")"
work="$(mktemp -d "$(dirname "$cache")/.vulncheck.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir "$work/mod"
printf 'module parley.invalid/vulncheck\n\ngo 1.26\n' >"$work/mod/go.mod"

if ! db_complete; then
	# Serialise concurrent first runs.
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$cache.lock"
		flock 9
	fi
	db_complete || build_db
fi
cache="$(cd "$cache" && pwd -P)"

cd "$target"
log "using Go vulnerability database golang.org/x/vulndb@$VULNDB_VERSION ($(find "$cache/ID" -name '*.json' | wc -l) entries, $cache), govulncheck $GOVULNCHECK_VERSION, $(go env GOVERSION)"
# "./..." matching nothing is not an error (go list only warns); a go list
# failure is left for govulncheck to report.
if pkgs="$(go list ./... 2>/dev/null)" && [[ -z "$pkgs" ]]; then
	log "no Go packages match ./... in $target; nothing to check"
	exit 0
fi

# govulncheck is installed (not "go run": that turns its exit status 3,
# "vulnerabilities found", into 1) and kept next to the database, so a cached
# run needs no network at all for the scanner or its data.
govulncheck="$cache/.bin/govulncheck-$GOVULNCHECK_VERSION"
if [[ ! -x "$govulncheck" ]]; then
	tool_go env GOBIN="$work/bin" go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
	mkdir -p "$cache/.bin"
	mv "$work/bin/govulncheck" "$govulncheck"
fi

rc=0
"$govulncheck" -db "file://$cache" ./... || rc=$?
case "$rc" in
0) log "no reachable vulnerabilities" ;;
3) log "FAIL: reachable vulnerabilities found (see above)" ;;
*) log "govulncheck failed (exit $rc)" ;;
esac
exit "$rc"
