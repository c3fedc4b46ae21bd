#!/usr/bin/env bash
# Throughput of the whole pipeline: the API (SQLite in a temporary
# directory), one worker and `faafo producer --one-shot` as three separate
# processes on RabbitMQ. The producer creates one batch of tasks, calls
# `process` for each, and PUTs every result and image back; the time from
# its start to its exit is what is reported, with the CPU seconds each
# process used and the machine's idle CPU seconds meanwhile.
#
#   producer/bench/pipeline.sh small [TASKS]     # 64x64, 32 iterations (default 5000 tasks)
#   producer/bench/pipeline.sh default [TASKS]   # the original's sizes (default 2000 tasks)
#
# Then compare the default run with the renderer alone on the same tasks:
#   target/release/faafo bench-render --tasks 2000 --seed 7
#
# Environment: FAAFO (the faafo binary, default target/release/faafo),
# TRANSPORT_URL (default rabbit://guest:guest@127.0.0.1:5672/; a vhost of
# its own is created and deleted through the management API at RABBIT_API,
# default http://127.0.0.1:15672/api, as guest),
# IN_FLIGHT (producer max_in_flight, default 64), SEED (default 7),
# RPC_CODEC (json, the default, or msgpack), EXECUTOR_SIZE (the worker's;
# default 0: the worker's default, twice the CPUs), KEEP_LOGS (a directory to copy the
# logs, configuration and database into at the end), SPLIT_CORES=1 (the
# worker alone on CPU 1; the API, the producer and the local RabbitMQ
# node on CPU 0, its affinity restored at the end: as on a deployment where
# workers have hosts of their own; compare with
# `taskset -c 1 target/release/faafo bench-render`).
set -euo pipefail

mode=${1:-small}
case $mode in
small)
    tasks=${2:-5000}
    sizes="min_width = 64\nmax_width = 64\nmin_height = 64\nmax_height = 64\nmin_iterations = 32\nmax_iterations = 32"
    ;;
default)
    tasks=${2:-2000}
    sizes=""
    ;;
*)
    echo "usage: $0 small|default [TASKS]" >&2
    exit 2
    ;;
esac
seed=${SEED:-7}
in_flight=${IN_FLIGHT:-64}
vhost="faafo-pipeline-$$"
source "$(dirname "$0")/common.sh"
# SPLIT_CORES=1: processes pinned to CPU 0 (services) or 1 (the worker).
services=() render=() broker_mask=
if [ -n "${SPLIT_CORES:-}" ]; then
    services=(taskset -c 0) render=(taskset -c 1)
    broker_mask=$(taskset -p "$(pgrep -o beam.smp)" | awk '{print $NF}')
    taskset -a -p -c 0 "$(pgrep -o beam.smp)" >/dev/null
fi

port=$(free_port)
write_conf "$port" "rpc_codec = ${RPC_CODEC:-json}"
cat >>"$dir/faafo.conf" <<EOF

[worker]
executor_size = ${EXECUTOR_SIZE:-0}

[producer]
min_tasks = $tasks
max_tasks = $tasks
max_in_flight = $in_flight
generator_seed = $seed
$(printf "$sizes")
EOF

"${services[@]}" "$faafo" api --config-file "$dir/faafo.conf" 2>"$dir/api.err" &
pids+=($!)
wait_for_api "$port"
"${render[@]}" "$faafo" worker --config-file "$dir/faafo.conf" 2>"$dir/worker.err" &
pids+=($!)
sleep 1
# CPU seconds (user + system) a process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
broker_pid=$(pgrep -o beam.smp || true)
broker_before=$([ -n "$broker_pid" ] && cpu "$broker_pid" || echo 0)
# Idle CPU time of the whole machine so far, in clock ticks.
idle() { awk 'NR == 1 { print $5 }' /proc/stat; }
idle_before=$(idle)
start=$(date +%s.%N)
TIMEFORMAT=%U+%S
producer_cpu=$( { time "${services[@]}" "$faafo" producer --one-shot --config-file "$dir/faafo.conf" 2>"$dir/producer.err"; } 2>&1 )
end=$(date +%s.%N)
idle_ticks=$(( $(idle) - idle_before ))
echo "CPU seconds during the run: api $(cpu "${pids[0]}") (incl. start), worker $(cpu "${pids[1]}"), producer $(echo "$producer_cpu" | bc), broker $(echo "$([ -n "$broker_pid" ] && cpu "$broker_pid" || echo 0) - $broker_before" | bc), idle (all CPUs) $(echo "scale=2; $idle_ticks / $(getconf CLK_TCK)" | bc)"
done_count=$(curl -fsS "http://127.0.0.1:$port/v1/fractal?status=done&results_per_page=1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["num_results"])')
python3 - "$tasks" "$done_count" "$start" "$end" "$mode" <<'EOF'
import sys
tasks, done, start, end, mode = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
seconds = end - start
print(f"pipeline ({mode}): {done} of {tasks} tasks done in {seconds:.2f} s: {done / seconds:.1f} fractals/s")
EOF
