# icegate: a STUN/TURN relay. `make help` lists the targets.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     := bin/icegate
LDFLAGS := -s -w -X main.version=$(VERSION)
# Arguments for `make run`, e.g. make run ARGS="-config docs/examples/local-testing.hcl"
ARGS    ?=
# How long each fuzz target runs in `make test` (longer in `make fuzz`).
FUZZTIME ?= 5s

# Every fuzz target, as package:target.
FUZZ_TARGETS := ./internal/stunwire:FuzzWire ./internal/udploop:FuzzFlush ./config:FuzzParse ./auth:FuzzKeys ./auth:FuzzDecide ./turn:FuzzGate ./turn:FuzzStreamFraming ./turn:FuzzFastPath ./stun:FuzzBindingResponse ./stun:FuzzAnswer ./stun:FuzzClassic ./signaling:FuzzParse ./signaling:FuzzAPIRequest ./config:FuzzParseRedisURL ./config:FuzzImportCoturn ./signaling/engineio:FuzzPayload ./signaling/socketio:FuzzDecode ./internal/proxied:FuzzHeader ./internal/kfast:FuzzProgram

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-8s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/icegate (static, version stamped).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/icegate

# make install: PREFIX for the binary, DESTDIR for staging (packagers).
PREFIX  ?= /usr/local
DESTDIR ?=
# make deb: where the package goes.
DEB_DIR ?= bin

.PHONY: install
install: build ## Install the binary in $(PREFIX)/bin, the systemd unit and /etc/icegate/icegate.hcl (kept if present); DESTDIR= stages.
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/icegate
	install -d $(DESTDIR)/etc/systemd/system
	sed 's#/usr/bin/icegate#$(PREFIX)/bin/icegate#g' deploy/systemd/icegate.service > $(DESTDIR)/etc/systemd/system/icegate.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/icegate.service
	@if [ -e $(DESTDIR)/etc/icegate/icegate.hcl ]; then \
	  echo "kept $(DESTDIR)/etc/icegate/icegate.hcl"; \
	else \
	  install -d -m 0750 $(DESTDIR)/etc/icegate && $(BIN) config default > $(DESTDIR)/etc/icegate/icegate.hcl && chmod 0640 $(DESTDIR)/etc/icegate/icegate.hcl; \
	fi
	@echo "now: useradd --system --user-group --no-create-home --shell /usr/sbin/nologin icegate; chgrp -R icegate /etc/icegate; systemctl daemon-reload (docs/operations.md)"

.PHONY: deb
deb: build ## Build the Debian package in $(DEB_DIR) with dpkg-deb (binary, systemd unit, /etc/icegate, the icegate user); version from git describe.
	@GO=$(GO) GOARCH=$$($(GO) env GOARCH) deploy/debian/build.sh $(BIN) $(VERSION) $(DEB_DIR)

# The eBPF program (internal/kfast/bpf/relay.c) is compiled by bpf2go with
# Debian's clang-14 (tools/install-test-deps.sh installs it) into objects
# that are committed, so that building icegate needs no C compiler.
.PHONY: generate
generate: ## Rebuild the committed eBPF objects and their Go bindings (bpf2go with clang-14).
	$(GO) generate ./internal/kfast

.PHONY: check-generate
check-generate: generate ## Fail when the committed eBPF objects differ from what `make generate` builds.
	@git diff --exit-code --stat -- internal/kfast || { echo "internal/kfast: the generated eBPF files are out of date: run make generate and commit them"; exit 1; }
	@test -z "$$(git status --porcelain -- internal/kfast)" || { git status --porcelain -- internal/kfast; echo "internal/kfast: make generate left untracked files"; exit 1; }

.PHONY: run
run: build ## Build and start the server with the embedded defaults (ARGS="-config FILE" to use a file).
	./$(BIN) serve $(ARGS)

.PHONY: deps
deps: ## Install what the tests need (Debian's coturn for its independent test clients, redis-server for the cluster bus, Node.js 20+ and the pinned npm packages for the JavaScript and socket.io tests).
	@tools/install-test-deps.sh

.PHONY: lint
lint: ## gofmt and go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: test
# The NAT lab (tools/natlab) builds network namespaces, so it needs root on
# Linux: there `make test` requires it to run (a missing tool fails the run);
# anywhere else it skips with a note and the vnet tests stand in for it.
NATLAB_REQUIRE := $(shell [ "$$(uname -s)" = Linux ] && [ "$$(id -u)" = 0 ] && echo 1 || echo 0)

test: deps lint ## Run every test: unit, integration, interop with coturn's clients, the NAT lab (as root), the JavaScript tests (node --test), socket.io's conformance suites, and each fuzz target briefly.
	ICEGATE_REQUIRE_INTEROP=1 ICEGATE_REQUIRE_SYSTEMD=1 ICEGATE_REQUIRE_DEB=1 ICEGATE_REQUIRE_REDIS=1 ICEGATE_REQUIRE_E2E=1 ICEGATE_REQUIRE_NODE=1 ICEGATE_REQUIRE_NATLAB=$(NATLAB_REQUIRE) $(GO) test -race -count=1 -timeout 15m ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

.PHONY: test-js
test-js: ## The JavaScript tests alone: the test page's logic and icegate.js against a real server (Node.js 20+).
	ICEGATE_REQUIRE_NODE=1 $(GO) test -count=1 -v ./tools/webtest

.PHONY: fuzz
# A target that found nothing can still end "context deadline exceeded" when
# the fuzzing engine's workers miss the -fuzztime deadline on a loaded
# machine (no input is written then); that one run is repeated. A failing
# input (written under testdata/fuzz) always fails at once.
fuzz: ## Run each fuzz target for FUZZTIME (default 5s; try FUZZTIME=5m).
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
	  for try in 1 2; do \
	    if $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg > /tmp/icegate-fuzz.log 2>&1; then \
	      if grep -q "no fuzz tests to fuzz" /tmp/icegate-fuzz.log; then echo "no fuzz target $$name in $$pkg"; exit 1; fi; break; fi; \
	    if [ $$try = 1 ] && ! grep -q "Failing input written" /tmp/icegate-fuzz.log && grep -q "context deadline exceeded" /tmp/icegate-fuzz.log; then \
	      echo "  the fuzzing engine timed out without a failing input (a loaded machine); once more"; continue; fi; \
	    cat /tmp/icegate-fuzz.log; exit 1; \
	  done; \
	done; echo "fuzz: all targets passed"

.PHONY: bench
bench: bench-relay bench-signaling bench-signaling-idle bench-cluster ## Run every benchmark.

# Flags for tools/relaybench, e.g. make bench-relay RELAYBENCH="-quick";
# RELAYBENCH="-offload" (root only) measures issue 17's kernel fast path.
RELAYBENCH ?= -rounds 3
.PHONY: bench-relay
bench-relay: deps ## icegate vs Debian's coturn on loopback, ~10 min; RELAYBENCH="-offload" (as root): the kernel fast path, icegate without it and coturn on veth namespaces, machine CPU per packet (docs/performance.md).
	$(GO) run ./tools/relaybench $(RELAYBENCH)

# Flags for tools/signaling-bench, e.g. make bench-signaling SIGBENCH="-conns 5000 -rate 2".
SIGBENCH ?= -conns 1000 -room 2 -rate 10 -duration 5s
.PHONY: bench-signaling
bench-signaling: ## Signaling load on loopback, socket.io then /ws clients in one run: connections, joins, message latency through rooms, CPU and heap (~20 s).
	$(GO) run ./tools/signaling-bench $(SIGBENCH)

# Flags for tools/cluster-bench, e.g. make bench-cluster CLUSTERBENCH="-conns 500 -duration 5s".
CLUSTERBENCH ?= -conns 2000 -room 2 -rate 5 -duration 20s
# Flags for tools/idlebench, e.g. make bench-signaling-idle IDLEBENCH="-conns 5000 -modes plain";
# IDLEBENCH="-cluster 6 -conns 100000 -per-worker 17000" for the six-node cluster on a redis-server
# it starts, IDLEBENCH="-storm -conns 15000 -modes plain" for the reconnect storm,
# IDLEBENCH="-active 5 -active-conns 2000,10000:1,10000" for active peers (rooms of 2) at each count.
# IDLEBENCH="-proto sio,ws" for socket.io's WebSocket transport beside /ws.
IDLEBENCH ?=

.PHONY: bench-signaling-idle
bench-signaling-idle: ## Idle /ws connections (19,000 by default, plain and TLS) against icegate, then Centrifugo v6 when found, same client, one run: RSS per connection, goroutines, idle CPU (~4 min).
	$(GO) run ./tools/idlebench $(IDLEBENCH)

.PHONY: bench-cluster
bench-cluster: deps ## Signaling on 3 nodes and one redis-server vs one node, same load, in one run (~1 min; docs/performance.md).
	$(GO) run ./tools/cluster-bench $(CLUSTERBENCH)

.PHONY: screenshot
screenshot: deps ## Run the browser tests and save the test page to docs/test-page.png and the admin page to docs/admin-page.png.
	ICEGATE_REQUIRE_E2E=1 ICEGATE_SCREENSHOT=$(CURDIR)/docs/test-page.png ICEGATE_ADMIN_SCREENSHOT=$(CURDIR)/docs/admin-page.png $(GO) test -count=1 -run '^(TestBrowser|TestAdminPage)$$' ./tools/e2e

.PHONY: clean
clean: ## Remove build output.
	rm -rf bin
