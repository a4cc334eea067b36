# Nomos: the two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin/nomos
PKGS := ./...

# Demo credentials for `make run` (override in the environment).
export NOMOS_API_KEY ?= dev-alice-key
export NOMOS_REVIEWER_KEY ?= dev-reviewer-key
export NOMOS_AGENT_SECRET ?= dev-agent-secret

.PHONY: build run test test-unit bench bench-e2e bench-state screenshots fuzz lint clean

build:
	$(GO) build -o $(BIN) ./cmd/nomos
	$(GO) build -o bin/retail-mcp ./examples/retail/retail-mcp

## run: build and start Nomos on Caddyfile.example (no external services).
run: build
	./$(BIN) run --config Caddyfile.example --adapter caddyfile

## test: the whole suite: vet, gofmt, unit, corpus, fuzz seeds, end to end.
test: build
	@bash scripts/test.sh

test-unit:
	$(GO) test -short $(PKGS)

## bench: benchmark tables (policy evaluation, redaction, audit sealing, MCP overhead).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./policy/ ./internal/redact/ ./audit/ ./mcp/...

## bench-e2e: the end-to-end table in docs/benchmarks.md: a governed MCP
## tools/call through the built binary at fixed rates and at saturation, every
## configuration interleaved in one run (see cmd/nomos-bench); then the audit
## durability test with 20 SIGKILL trials. BENCH_FLAGS adds nomos-bench flags
## (e.g. -rounds 1 -duration 5s on a busy machine, -profile DIR for CPU profiles).
bench-e2e: build
	$(GO) run ./cmd/nomos-bench -nomos $(CURDIR)/$(BIN) -out docs/benchmarks.md $(BENCH_FLAGS)
	NOMOS_BIN=$(CURDIR)/$(BIN) NOMOS_DURABILITY_TRIALS=20 $(GO) test -count=1 -run TestAuditSurvivesSIGKILL -v ./cmd/nomos/ | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|trial'

## screenshots: refresh the operator UI pictures in docs/img from the browser test.
screenshots: build
	NOMOS_BIN=$(CURDIR)/$(BIN) NOMOS_SCREENSHOT_DIR=$(CURDIR)/docs/img $(GO) test -count=1 -run TestOperatorUIApprovalFlow ./cmd/nomos/

## bench-state: what the shared state (Redis on loopback) adds to a decision:
## the rate-limit check and the approval lookup against their local
## equivalents in the same run (docs/scale-out.md). Needs redis-server.
bench-state:
	$(GO) test -run '^$$' -bench 'RateLimitCheck|ApprovalLookup' -benchtime 5000x -count 1 ./internal/ratelimit/ ./internal/approvals/

## fuzz: every fuzz target for a short, fixed budget each.
fuzz:
	@bash scripts/fuzz.sh $${FUZZTIME:-10s}

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet $(PKGS)

clean:
	rm -rf bin
