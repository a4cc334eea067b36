#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it. It installs what the
# tests need, so a fresh clone on a machine with Go passes.
set -euo pipefail
cd "$(dirname "$0")/.."
export NOMOS_BIN="$PWD/bin/nomos"

echo "== lint (gofmt, go vet)"
make -s lint

echo "== go test (unit, corpus, fuzz seeds, Caddyfile, handlers, end to end)"
go test -count=1 -timeout 20m ./...

echo "== short fuzz pass"
bash scripts/fuzz.sh 3s
