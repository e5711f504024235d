# Portcullis. `make test` installs what the tests need (redis-server, containerd: apt, as root) and runs them all.
GO        ?= go
GOFLAGS   ?=
PKGS      ?= ./...
# In CI the real-service tests must run, not skip.
export PORTCULLIS_REQUIRE_REDIS      ?= $(if $(CI),1,)
export PORTCULLIS_REQUIRE_CONTAINERD ?= $(if $(CI),1,)

.PHONY: all build tools tools-cosign tools-cosign3 tools-helm test test-short deps run demo bench bench-micro vet fmt clean chart image

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
TOOLS := tools-cosign tools-cosign3 tools-helm
tools:
	@$(MAKE) --no-print-directory -j3 $(TOOLS)
tools-cosign:
	GOTOOLCHAIN=local $(GO) tool -n cosign >/dev/null
tools-cosign3:
	cd tools/cosign3 && GOTOOLCHAIN=local $(GO) tool -n cosign >/dev/null
tools-helm:
	cd tools/helm && GOTOOLCHAIN=local $(GO) tool -n helm >/dev/null

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

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin portcullis-data bench.txt bench/results.json
