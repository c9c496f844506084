# Parley — the two commands that matter: `make run` and `make test`.
#
# Go 1.26.8's standard library has known advisories, so everything builds
# with the newer toolchain, fetched by the go command from the module proxy.
export GOTOOLCHAIN := go1.27.3
export GOPROXY := https://proxy.golang.org

GO       ?= go
BIN      := bin/parley
DATA_DIR ?= ./parley-data

.PHONY: run build test vet fmt-check unit e2e vulncheck bench bench-cluster bench-go clean

## run: build and start Parley with SQLite in ./parley-data (self-signed TLS).
## For a meeting on this machine or the local network, media from loopback and
## private addresses is allowed here, and the TURN relay may reach them (the SFU
## on 127.0.0.1); production keeps the default: refused. TURN listens on
## 127.0.0.1:3478 (UDP, TCP) and :5349 (TLS) and announces 127.0.0.1.
RUN_MEDIA_ALLOWED ?= 127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7
run: build
	$(BIN) serve --data-dir $(DATA_DIR) --media-allowed-remote $(RUN_MEDIA_ALLOWED) --turn-allowed-peers $(RUN_MEDIA_ALLOWED)

## build: the parley binary in bin/
build:
	$(GO) build -trimpath -o $(BIN) ./cmd/parley

## test: formatting, go vet, every test with the race detector, browser tests, govulncheck
test: fmt-check vet unit e2e vulncheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## The cluster package's tests run a redis-server of their own on loopback.
unit:
	PARLEY_TEST_REQUIRE_REDIS=1 $(GO) test -race -count=1 -timeout 15m $$($(GO) list ./... | grep -v '/turn$$')

## e2e: real-browser tests (headless Chromium) in a private network namespace
## that has only lo. Both binaries are built outside it (it has no network);
## the tests run from e2e/, as under go test, with absolute paths. Needs root
## (unshare -n), ip and Chromium.
## The TURN server's relay tests (package turn) run in such a namespace
## instead of with the unit tests.
E2E_TEST := bin/e2e.test
TURN_TEST := bin/turn.test
LOAD_TEST := bin/load.test
## The multi-node test (cmd/parley-load/cluster_test.go) starts three nodes,
## a redis-server and a database of its own in the machine's PostgreSQL,
## reached inside the namespace over its Unix socket.
CLUSTER_PG ?= postgres://postgres@/postgres?host=/var/run/postgresql&sslmode=disable
## The end-to-end encryption test also needs a test build of parley whose
## media tap writes what the SFU forwards (cmd/parley/e2etap.go).
TAP_BIN := bin/parley-e2etap
e2e: build
	$(GO) build -trimpath -tags parley_e2etap -o $(TAP_BIN) ./cmd/parley
	$(GO) test -c -race -o $(E2E_TEST) ./e2e
	$(GO) test -c -race -o $(TURN_TEST) ./turn
	$(GO) test -c -o $(LOAD_TEST) ./cmd/parley-load
	cd turn && unshare -n -- sh -c 'ip link set lo up && exec "$$0" -test.count=1 -test.timeout 5m' "$(CURDIR)/$(TURN_TEST)"
	cd e2e && unshare -n -- sh -c 'ip link set lo up && exec "$$0" -test.v -test.count=1 -test.timeout 8m -parley-bin="$$1" -parley-tap-bin="$$2"' \
		"$(CURDIR)/$(E2E_TEST)" "$(CURDIR)/$(BIN)" "$(CURDIR)/$(TAP_BIN)"
	cd cmd/parley-load && unshare -n -- sh -c 'ip link set lo up && exec "$$0" -test.v -test.count=1 -test.timeout 5m -parley-bin="$$1" -cluster-pg="$$2"' \
		"$(CURDIR)/$(LOAD_TEST)" "$(CURDIR)/$(BIN)" "$(CLUSTER_PG)"

## vulncheck: govulncheck offline against a locally built vulnerability database
vulncheck:
	scripts/vulncheck.sh

## bench: load benchmark (bench/README.md): parley serve pinned to CPU 0
## (GOMAXPROCS=1), parley-load pinned to CPU 1, every scenario, in a private
## network namespace with only lo; results in bench/results/. Needs root
## (unshare -n), ip, taskset, curl and two CPUs. Not part of `make test`.
LOAD_BIN := bin/parley-load
bench: build
	$(GO) build -trimpath -o $(LOAD_BIN) ./cmd/parley-load
	unshare -n -- sh -c 'ip link set lo up && exec bench/run.sh "$$0" "$$1"' "$(CURDIR)/$(BIN)" "$(CURDIR)/$(LOAD_BIN)"

## bench-cluster: the load benchmark against two nodes of one cluster
## (bench/cluster.sh, bench/README.md "Two nodes"): a private redis-server, a
## fresh PostgreSQL database (over its Unix socket; BENCH_PG to choose),
## nodes a and b and Redis on CPU 0, parley-load on CPU 1, in a private
## network namespace with only lo; results in bench/results/cluster-*.json.
## Needs root, ip, taskset, curl, psql, redis-server. Not part of `make test`.
bench-cluster: build
	$(GO) build -trimpath -o $(LOAD_BIN) ./cmd/parley-load
	unshare -n -- sh -c 'ip link set lo up && exec bench/cluster.sh "$$0" "$$1"' "$(CURDIR)/$(BIN)" "$(CURDIR)/$(LOAD_BIN)"

## bench-go: every Go benchmark in the tree
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
