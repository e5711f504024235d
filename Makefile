# Portcullis. `make test` installs what the tests need (redis-server, containerd: apt, as root) and runs them all.
GO        ?= go
GOFLAGS   ?=
PKGS      ?= ./...
# In CI the real-service tests must run, not skip.
export PORTCULLIS_REQUIRE_REDIS      ?= $(if $(CI),1,)
export PORTCULLIS_REQUIRE_CONTAINERD ?= $(if $(CI),1,)

.PHONY: all build tools tools-cosign tools-cosign3 tools-helm tools-notary tools-staticcheck lint test test-short deps run demo bench bench-micro vet fmt clean chart image fuzz soak test-s3

all: build

build:
	$(GO) build -o bin/portcullis ./cmd/portcullis

deps:
	@bash scripts/install-test-deps.sh

# The CLIs the tests drive, pinned as tools: cosign v2 and v3 (tests sign with them) and helm (tools/helm: `make
# chart` and deploy/chart_test.go). Building them here, once, keeps their cold builds (minutes each on a fresh
# machine; helm alone is about 8 CPU-minutes, 4-5 min on 2 idle cores) out of the test binaries' timeouts. They
# build side by side (a sub-make with -j3), which fills the second core while another build links or waits on a
# long package; each is also a target of its own.
# notary-server (tools/notary, with its _patch) is what the Docker Content Trust tests start (about 2.5 CPU-minutes cold).
# staticcheck (honnef.co/go/tools, pinned in go.mod's tool directive) runs in `make test`: ~125 CPU-seconds to build
# cold, ~105 for its first run (50 warm).
TOOLS := tools-cosign tools-cosign3 tools-helm tools-notary tools-staticcheck
tools:
	@$(MAKE) --no-print-directory -j3 $(TOOLS)
tools-cosign:
	GOTOOLCHAIN=local $(GO) tool -n cosign >/dev/null
tools-cosign3:
	cd tools/cosign3 && GOTOOLCHAIN=local $(GO) tool -n cosign >/dev/null
tools-helm:
	cd tools/helm && GOTOOLCHAIN=local $(GO) tool -n helm >/dev/null
# notary-server is built with tools/notary/_patch applied (see internal/gotool), as the tests build it.
tools-notary:
	GOTOOLCHAIN=local $(GO) run ./internal/gotool/toolpath tools/notary notary-server >/dev/null
tools-staticcheck:
	GOTOOLCHAIN=local $(GO) tool -n staticcheck >/dev/null

# The Helm chart: lint and render it (helm v3, pinned in tools/helm) with the default values and each values
# file in ci/. deploy/chart_test.go renders the same files and decodes every object strictly into its API type.
CHART        := deploy/helm/portcullis
KUBE_VERSION ?= 1.31.0
chart:
	@helm=$$(cd tools/helm && GOTOOLCHAIN=local $(GO) tool -n helm) || exit 1; \
	for f in "" $(CHART)/ci/*.yaml; do \
		echo "chart: helm lint and template, values $${f:-(defaults)}"; \
		$$helm lint --quiet --strict $(CHART) --kube-version $(KUBE_VERSION) $${f:+--values $$f} >/dev/null && \
		$$helm template pc $(CHART) --kube-version $(KUBE_VERSION) $${f:+--values $$f} >/dev/null || exit 1; \
	done

# The container image, built without a container engine (cmd/portcullis-image): a static binary on an empty base,
# user 65532, OCI labels. Writes bin/portcullis-image.tar (an OCI layout archive named $(IMAGE_NAME): ctr images
# import reads it); with REGISTRY=host/repo it also pushes $(REGISTRY):$(VERSION).
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION   ?= $(shell git rev-parse HEAD 2>/dev/null)
IMAGE_NAME ?= portcullis:dev
GOARCH     ?= $(shell $(GO) env GOARCH)
CA_BUNDLE  ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
REGISTRY   ?=
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
		-o bin/portcullis-linux-$(GOARCH) ./cmd/portcullis
	$(GO) run ./cmd/portcullis-image --binary bin/portcullis-linux-$(GOARCH) --arch $(GOARCH) \
		$(if $(CA_BUNDLE),--ca-bundle $(CA_BUNDLE)) --version $(VERSION) --revision "$(REVISION)" \
		--name $(IMAGE_NAME) --out bin/portcullis-image.tar $(if $(REGISTRY),--push $(REGISTRY):$(VERSION))

# The image test runs the archive `make image` wrote.
test: export PORTCULLIS_IMAGE = $(CURDIR)/bin/portcullis-image.tar
test: deps tools chart image
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
# the test's log to soak.log. `make test` runs it for 30s. It reports the live heap, RSS, goroutines and open files per
# minute; PORTCULLIS_SOAK_PROFILES=DIR also writes a heap profile per minute there (compare two with
# `go tool pprof -base DIR/heap-1.pprof DIR/heap-4.pprof`).
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

# staticcheck's default checks; a check turned off goes in staticcheck.conf with its reason, a single finding
# left on purpose gets a //lint:ignore comment with its reason.
lint:
	$(GO) tool staticcheck $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin portcullis-data bench.txt bench/results.json soak-report.txt soak.log tools/*/.patched
