#!/usr/bin/env bash
# Installs the Node tools of the MCP end-to-end tests into ./.tools, and
# nowhere else:
#
#   .tools/node22/node_modules/.bin/node   Node 22, from the npm package node@22
#   .tools/npm/node_modules/               @modelcontextprotocol/conformance,
#                                          @modelcontextprotocol/sdk and
#                                          @modelcontextprotocol/server-everything
#
# Only the npm registry is used. A stamp file records what was installed, so
# a second run with the same versions returns at once. Runs that overlap (two
# test binaries) are serialized with flock when it is available.
set -euo pipefail
cd "$(dirname "$0")/.."

node_version=22.23.3
conformance_version=0.1.16
# The SDK the conformance suite itself resolves (it asks for ^1.27.1), so
# the suite and examples/clients/ts share one copy.
sdk_version=1.32.2
# The reference server the relay comparison (cmd/nomos/relay_e2e_test.go)
# runs directly and behind nomos_mcp; it resolves the same SDK (^1.30.0).
everything_version=2026.8.31

tools="$PWD/.tools"
node_dir="$tools/node22"
npm_dir="$tools/npm"
stamp="$tools/mcp-tools.stamp"
want="node@$node_version conformance@$conformance_version sdk@$sdk_version everything@$everything_version"
node="$node_dir/node_modules/.bin/node"
suite="$npm_dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
sdk="$npm_dir/node_modules/@modelcontextprotocol/sdk/package.json"
everything="$npm_dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

installed() {
  [[ -f "$stamp" && "$(<"$stamp")" == "$want" && -x "$node" && -f "$suite" && -f "$sdk" && -f "$everything" ]]
}

installed && exit 0

mkdir -p "$tools"
if command -v flock >/dev/null; then
  exec 9>"$tools/mcp-tools.lock"
  flock 9
  installed && exit 0
fi
rm -f "$stamp"

npm_install() { # npm_install <prefix> <package>...
  local prefix=$1
  shift
  mkdir -p "$prefix"
  # A package.json of our own keeps npm from walking up to a parent project.
  [[ -f "$prefix/package.json" ]] || echo '{"private":true}' >"$prefix/package.json"
  npm install --prefix "$prefix" --save-exact --no-audit --no-fund --loglevel=error "$@" >&2
}

if [[ ! -x "$node" || "$("$node" --version)" != "v$node_version" ]]; then
  echo "mcp-tools: installing node@$node_version into $node_dir" >&2
  npm_install "$node_dir" "node@$node_version"
fi
"$node" --version | grep -qx "v$node_version" || { echo "mcp-tools: $node is not v$node_version" >&2; exit 1; }

echo "mcp-tools: installing @modelcontextprotocol/conformance@$conformance_version, sdk@$sdk_version and server-everything@$everything_version into $npm_dir" >&2
# npm runs on Node 22, so the packages' engines (node >= 22) are met.
PATH="$node_dir/node_modules/.bin:$PATH" npm_install "$npm_dir" \
  "@modelcontextprotocol/conformance@$conformance_version" "@modelcontextprotocol/sdk@$sdk_version" \
  "@modelcontextprotocol/server-everything@$everything_version"
[[ -f "$suite" && -f "$sdk" && -f "$everything" ]] || { echo "mcp-tools: install incomplete under $npm_dir" >&2; exit 1; }

echo "$want" >"$stamp"
