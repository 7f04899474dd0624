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
FUZZ_TARGETS := ./config:FuzzParse ./auth:FuzzKeys ./auth:FuzzDecide ./turn:FuzzGate ./turn:FuzzStreamFraming ./stun:FuzzBindingResponse ./stun:FuzzAnswer

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-8s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/icegate (static, version stamped).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/icegate

.PHONY: run
run: build ## Build and start the server with the embedded defaults (ARGS="-config FILE" to use a file).
	./$(BIN) serve $(ARGS)

.PHONY: deps
deps: ## Install what the tests need (Debian's coturn for its independent test clients).
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

test: deps lint ## Run every test: unit, integration, interop with coturn's clients, the NAT lab (as root), and each fuzz target briefly.
	ICEGATE_REQUIRE_INTEROP=1 ICEGATE_REQUIRE_NATLAB=$(NATLAB_REQUIRE) $(GO) test -race -count=1 -timeout 15m ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 5s; try FUZZTIME=5m).
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg > /tmp/icegate-fuzz.log 2>&1 || { cat /tmp/icegate-fuzz.log; exit 1; }; \
	done; echo "fuzz: all targets passed"

.PHONY: clean
clean: ## Remove build output.
	rm -rf bin
