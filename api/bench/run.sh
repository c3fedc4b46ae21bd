#!/usr/bin/env bash
# Measures faafo-api with wrk (Debian package `wrk`) on one database:
#   GET /v1/fractal/<uuid> and POST /v1/fractal, 64 connections, 2 threads.
# usage: api/bench/run.sh [DATABASE_URL] [DURATION]
#   DATABASE_URL: empty (SQLite file in a temporary state_path), or a mysql://
#   or postgresql:// URL of an existing, empty database.
# POST sends time-ordered uuids (as the producer does); UUIDS=v4 sends
# random ones (see post.lua).
set -euo pipefail
cd "$(dirname "$0")/../.."
url="${1:-}"
duration="${2:-20s}"
port="${FAAFO_BENCH_PORT:-5077}"
state=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$state"' EXIT
# API_BIN: a faafo-api binary to measure instead of building this tree's.
api_bin=${API_BIN:-}
if [ -z "$api_bin" ]; then
  cargo build --release -q -p faafo-api
  api_bin=./target/release/faafo-api
fi
cat > "$state/api.conf" <<CONF
[DEFAULT]
state_path = $state
database_url = $url
[database]
max_connections = 16
[api]
bind_port = $port
CONF
"$api_bin" --config-file "$state/api.conf" 2> "$state/api.log" &
pid=$!
for _ in $(seq 1 50); do
  curl -fs "http://127.0.0.1:$port/readyz" > /dev/null && break
  sleep 0.2
done
uuid=$(curl -fs -X POST "http://127.0.0.1:$port/v1/fractal" -H 'Content-Type: application/json' \
  -d '{"width":510,"height":278,"iterations":281,"xa":-3.35,"xb":1.14,"ya":-2.13,"yb":2.47}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
echo "== $(echo "${url:-sqlite}" | sed -E 's#://[^@/]*@#://***@#') GET /v1/fractal/$uuid"
wrk -t2 -c64 -d"$duration" --latency "http://127.0.0.1:$port/v1/fractal/$uuid"
echo "== POST /v1/fractal"
wrk -t2 -c64 -d"$duration" --latency -s api/bench/post.lua "http://127.0.0.1:$port"
echo "== rows: $(curl -fs "http://127.0.0.1:$port/v1/fractal?results_per_page=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["num_results"])')"
echo "== $(curl -fs "http://127.0.0.1:$port/metrics" | grep '^faafo_api_log_lines_dropped_total')"
