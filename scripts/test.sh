#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it. It installs what the
# tests need, so a fresh clone on a machine with Go passes.
set -euo pipefail
cd "$(dirname "$0")/.."
export NOMOS_BIN="$PWD/bin/nomos"

echo "== Debian packages the tests need (redis-server, chromium)"
# redis-server: the shared-state (scale-out) tests run private ones on loopback.
# chromium: the operator UI browser test drives it (or set NOMOS_CHROMIUM).
need=""
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
if [ -z "${NOMOS_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  need="$need chromium"
fi
if [ -n "$need" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing:$need"
  if ! { command -v apt-get >/dev/null 2>&1 && $sudo apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need >/dev/null; }; then
    echo "could not install$need with apt-get: run 'apt-get install -y$need' as root, then make test." >&2
    echo "(For the browser test, NOMOS_CHROMIUM may name another Chromium binary.)" >&2
    exit 1
  fi
fi

echo "== lint (gofmt, go vet)"
make -s lint

echo "== go test (unit, corpus, fuzz seeds, Caddyfile, handlers, end to end)"
go test -count=1 -timeout 20m ./...

echo "== race detector on the engine packages"
go test -race -count=1 ./internal/... ./audit/ ./policy/... ./mcp/

echo "== xcaddy: a custom Caddy built from this checkout has the Nomos modules"
xcaddy_version=v0.4.5
GOBIN="$PWD/.tools" go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$xcaddy_version"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PWD/.tools/xcaddy" build v2.11.9 --output "$tmp/caddy" \
  --with github.com/caddy-nomos/nomos@v0.0.0-00010101000000-000000000000=. >"$tmp/xcaddy.log" 2>&1 \
  || { cat "$tmp/xcaddy.log"; exit 1; }
for module in nomos http.handlers.nomos_api http.handlers.nomos_ui; do
  "$tmp/caddy" list-modules | grep -qx "$module" || { echo "xcaddy build lacks $module"; exit 1; }
done
"$tmp/caddy" policy test --action examples/actions/refund-40.json --bundle examples/policies/retail.yaml | grep -q '"decision":"ALLOW"'
# The landlock launcher is there too: it answers the probe with an ABI, or
# (on a kernel without Landlock) refuses with 126, never "unknown command".
rc=0; "$tmp/caddy" sandbox-exec probe >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 0 ] || [ "$rc" -eq 126 ] || { echo "xcaddy build lacks sandbox-exec (exit $rc)"; exit 1; }
echo "xcaddy build ok"

echo "== short fuzz pass"
bash scripts/fuzz.sh 3s
