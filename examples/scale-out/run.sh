#!/usr/bin/env bash
# examples/scale-out/run.sh: a two-replica Nomos deployment on loopback.
#   redis-server  127.0.0.1:6380   shared state (approvals, nonces, MCP sessions)
#   replica 1     127.0.0.1:8281   nomos run on replica.Caddyfile
#   replica 2     127.0.0.1:8282   nomos run on replica.Caddyfile
#   load balancer 127.0.0.1:8280   nomos run on lb.Caddyfile (plain Caddy)
# Each process gets its own data directory under $NOMOS_SCALE_DIR (default:
# a new temporary directory). Prints `ready` when everything answers;
# SIGINT or SIGTERM stops everything. Run it from anywhere after
# `make build`; redis-server comes from Debian (apt-get install redis-server).
# Ports can be moved with NOMOS_SCALE_{REDIS,LB,R1,R2}_PORT and the admin
# endpoints (default: port + 10) with NOMOS_SCALE_{LB,R1,R2}_ADMIN_PORT.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/examples/scale-out"
bin="${NOMOS_BIN:-$root/bin/nomos}"
redis_port="${NOMOS_SCALE_REDIS_PORT:-6380}"
lb_port="${NOMOS_SCALE_LB_PORT:-8280}"
r1_port="${NOMOS_SCALE_R1_PORT:-8281}"
r2_port="${NOMOS_SCALE_R2_PORT:-8282}"
dir="${NOMOS_SCALE_DIR:-$(mktemp -d -t nomos-scale-out.XXXXXX)}"

export NOMOS_API_KEY="${NOMOS_API_KEY:-dev-alice-key}"
export NOMOS_REVIEWER_KEY="${NOMOS_REVIEWER_KEY:-dev-reviewer-key}"
export NOMOS_AGENT_SECRET="${NOMOS_AGENT_SECRET:-dev-agent-secret}"

command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install redis-server" >&2; exit 1; }
[ -x "$bin" ] || { echo "$bin is missing: run make build" >&2; exit 1; }
export NOMOS_RETAIL_CMD="${NOMOS_RETAIL_CMD:-$root/bin/retail-mcp}"
[ -x "$NOMOS_RETAIL_CMD" ] || { echo "$NOMOS_RETAIL_CMD is missing: run make build" >&2; exit 1; }

pids=()
stop() {
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	echo "stopped"
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

mkdir -p "$dir/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir/redis" \
	>"$dir/redis/redis.log" 2>&1 &
pids+=($!)
echo "redis-server pid $! on 127.0.0.1:$redis_port"

# replica <n> <port> <admin port>
replica() {
	local d="$dir/replica$1"
	mkdir -p "$d/data" "$d/config"
	(cd "$root" && XDG_DATA_HOME="$d/data" XDG_CONFIG_HOME="$d/config" \
		NOMOS_REPLICA_PORT="$2" NOMOS_ADMIN="127.0.0.1:$3" NOMOS_REDIS="127.0.0.1:$redis_port" \
		exec "$bin" run --config "$here/replica.Caddyfile" --adapter caddyfile) >"$d/nomos.log" 2>&1 &
	pids+=($!)
	echo "replica $1 pid $! on 127.0.0.1:$2 (data $d)"
}
replica 1 "$r1_port" "${NOMOS_SCALE_R1_ADMIN_PORT:-$((r1_port + 10))}"
replica 2 "$r2_port" "${NOMOS_SCALE_R2_ADMIN_PORT:-$((r2_port + 10))}"

mkdir -p "$dir/lb/data" "$dir/lb/config"
(cd "$root" && XDG_DATA_HOME="$dir/lb/data" XDG_CONFIG_HOME="$dir/lb/config" \
	NOMOS_LB_PORT="$lb_port" NOMOS_LB_ADMIN="127.0.0.1:${NOMOS_SCALE_LB_ADMIN_PORT:-$((lb_port + 10))}" \
	NOMOS_REPLICA_1="127.0.0.1:$r1_port" NOMOS_REPLICA_2="127.0.0.1:$r2_port" \
	exec "$bin" run --config "$here/lb.Caddyfile" --adapter caddyfile) >"$dir/lb/nomos.log" 2>&1 &
pids+=($!)
echo "load balancer pid $! on 127.0.0.1:$lb_port"

answers() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }
for _ in $(seq 1 150); do
	if redis-cli -p "$redis_port" ping >/dev/null 2>&1 &&
		answers "http://127.0.0.1:$r1_port/healthz" && answers "http://127.0.0.1:$r2_port/healthz" &&
		answers "http://127.0.0.1:$lb_port/healthz"; then
		echo "ready"
		wait
		exit 0
	fi
	for pid in "${pids[@]}"; do
		kill -0 "$pid" 2>/dev/null || { echo "a process exited; logs in $dir" >&2; exit 1; }
	done
	sleep 0.2
done
echo "not ready after 30s; logs in $dir" >&2
exit 1
