# Portcullis. `make test` installs what the tests need (redis-server, containerd: apt, as root) and runs them all.
GO        ?= go
GOFLAGS   ?=
PKGS      ?= ./...
# In CI the real-service tests must run, not skip.
export PORTCULLIS_REQUIRE_REDIS      ?= $(if $(CI),1,)
export PORTCULLIS_REQUIRE_CONTAINERD ?= $(if $(CI),1,)

.PHONY: all build tools test test-short deps run demo bench bench-micro vet fmt clean fuzz soak test-s3

all: build

build:
	$(GO) build -o bin/portcullis ./cmd/portcullis

deps:
	@bash scripts/install-test-deps.sh

# The cosign v2 and v3 CLIs the tests sign with are pinned as tools; building them here, once, keeps their
# cold build (minutes on a fresh machine) out of the test binaries' timeout.
tools:
	GOTOOLCHAIN=local $(GO) tool -n cosign >/dev/null
	cd tools/cosign3 && GOTOOLCHAIN=local $(GO) tool -n cosign >/dev/null

test: deps tools
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -short $(PKGS)

run: build
	./bin/portcullis serve --config configs/quickstart.yaml

demo:
	$(GO) run ./cmd/portcullis demo

# The performance harness (bench/, docs/performance.md): Portcullis next to the direct pull and Distribution in proxy
# mode, a table on stdout and bench/results.json. Minutes, not part of `make test`. The S3 rows build versitygw
# (tools/versitygw) on first use; the Redis and fleet rows need redis-server (make deps).
bench:
	cd tools/versitygw && GOTOOLCHAIN=local $(GO) tool -n versitygw >/dev/null
	PORTCULLIS_BENCH=1 $(GO) test -run '^TestBench$$' -v -count=1 -timeout 15m ./bench/

# Every Go fuzz target (func FuzzX in a _test.go), one after another, FUZZTIME each. A failing input lands in the
# package's testdata/fuzz/<Target>/: commit it with the fix; plain `go test` then runs it as a regression seed.
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz.sh

# The fleet layout on a real S3 server (integration/s3fleet_test.go): two replicas on one versitygw bucket and one
# Redis, the S3 server stopped mid-pull. Not in `make test`: versitygw's cold build is ~325 CPU-seconds
# (docs/reliability.md), too much of CI's 20-minute budget; run it when touching the content store or the fleet path.
test-s3:
	cd tools/versitygw && GOTOOLCHAIN=local $(GO) tool -n versitygw >/dev/null
	PORTCULLIS_S3=1 $(GO) test -race -run '^TestS3Fleet$$' -v -count=1 -timeout 20m ./integration/

# The soak (integration/soak_test.go, docs/reliability.md): mixed traffic through one Portcullis for SOAK_DURATION,
# every body checked against its digest, upstream faults injected; the report goes to soak-report.txt (and stdout),
# the test's log to soak.log. `make test` runs it for 30s.
SOAK_DURATION ?= 5m
soak:
	PORTCULLIS_SOAK_DURATION=$(SOAK_DURATION) PORTCULLIS_SOAK_REPORT=$(CURDIR)/soak-report.txt \
		$(GO) test -run '^TestSoak$$' -v -count=1 -timeout 60m ./integration/ >soak.log 2>&1 || { tail -40 soak.log; exit 1; }
	cat soak-report.txt

# The Go micro-benchmarks of integration/ (admission, scan verdicts).
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./integration/ | tee bench.txt

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin portcullis-data bench.txt bench/results.json soak-report.txt soak.log
