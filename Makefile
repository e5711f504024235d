# Portcullis. `make test` installs what the tests need (redis-server, containerd: apt, as root) and runs them all.
GO        ?= go
GOFLAGS   ?=
PKGS      ?= ./...
# In CI the real-service tests must run, not skip.
export PORTCULLIS_REQUIRE_REDIS      ?= $(if $(CI),1,)
export PORTCULLIS_REQUIRE_CONTAINERD ?= $(if $(CI),1,)

.PHONY: all build tools test test-short deps run demo bench bench-micro vet lint fmt clean

all: build

build:
	$(GO) build -o bin/portcullis ./cmd/portcullis

deps:
	@bash scripts/install-test-deps.sh

# The cosign v2 and v3 CLIs the tests sign with are pinned as tools; building them here, once, keeps their
# cold build (minutes on a fresh machine) out of the test binaries' timeout. staticcheck (honnef.co/go/tools,
# pinned in go.mod's tool directive) is built here too: ~125 s of CPU cold.
tools:
	GOTOOLCHAIN=local $(GO) tool -n cosign >/dev/null
	GOTOOLCHAIN=local $(GO) tool -n staticcheck >/dev/null
	cd tools/cosign3 && GOTOOLCHAIN=local $(GO) tool -n cosign >/dev/null

test: deps tools
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
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

# The Go micro-benchmarks of integration/ (admission, scan verdicts).
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./integration/ | tee bench.txt

vet:
	$(GO) vet $(PKGS)

# staticcheck's default checks; a check turned off goes in staticcheck.conf with its reason, a single finding
# left on purpose gets a //lint:ignore comment with its reason.
lint:
	$(GO) tool staticcheck $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin portcullis-data bench.txt bench/results.json
