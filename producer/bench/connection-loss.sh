#!/usr/bin/env bash
# What a lost connection costs: the producer's RabbitMQ connection is closed
# (through the management API, as a network failure or an operator would)
# while a one-shot batch of default-size tasks is in flight, with two
# workers; prints how many renders the workers started for how many tasks
# (a call sent again after the loss renders its task twice), and whether
# every task is done.
#
#   FAAFO=target/release/faafo producer/bench/connection-loss.sh [TASKS]
#
# Runs on a RabbitMQ vhost of its own (deleted at the end) with the API on
# SQLite in a temporary directory, like pipeline.sh.
set -euo pipefail

tasks=${1:-3000}
vhost="faafo-connection-loss-$$"
source "$(dirname "$0")/common.sh"

port=$(free_port)
write_conf "$port"
cat >>"$dir/faafo.conf" <<EOF

[producer]
min_tasks = $tasks
max_tasks = $tasks
max_in_flight = 64
generator_seed = 7
EOF

"$faafo" api --config-file "$dir/faafo.conf" 2>"$dir/api.err" &
pids+=($!)
wait_for_api "$port"
for worker in 1 2; do
    "$faafo" worker --config-file "$dir/faafo.conf" 2>"$dir/worker$worker.err" &
    pids+=($!)
done
sleep 1
start=$(date +%s.%N)
"$faafo" producer --one-shot --config-file "$dir/faafo.conf" 2>"$dir/producer.err" &
producer=$!
pids+=("$producer")
# The management API lists a connection once its statistics come (up to
# 5 s): wait for the producer's, then close it.
closed=0
for _ in $(seq 100); do
    sleep 0.1
    kill -0 "$producer" 2>/dev/null || break
    names=$(curl -fsS -u guest:guest "$mgmt/vhosts/$vhost/connections" | python3 -c '
import json, sys, urllib.parse
for c in json.load(sys.stdin):
    if c.get("client_properties", {}).get("connection_name", "").startswith("faafo-producer"):
        print(urllib.parse.quote(c["name"], safe=""))')
    for name in $names; do
        curl -fsS -u guest:guest -X DELETE "$mgmt/connections/$name" >/dev/null && closed=$((closed + 1))
    done
    [ "$closed" -gt 0 ] && break
done
status=0
wait "$producer" || status=$?
end=$(date +%s.%N)
done_count=$(curl -fsS "http://127.0.0.1:$port/v1/fractal?status=done&results_per_page=1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["num_results"])')
renders=$({ cat "$dir"/faafo.log* 2>/dev/null | grep -o "processing task [0-9a-f-]*" || true; } |
    sort | uniq -c | awk '{ n += $1; t += 1 } END { printf "%d renders of %d tasks", n + 0, t + 0 }')
echo "connection closed $closed time(s) during the batch; producer exit $status; $done_count of $tasks done; $renders; $(printf '%.2f' "$(echo "$end - $start" | bc)") s"
