# Shared by the bench scripts (sourced, once the script has set `vhost`):
# the faafo binary ($FAAFO), the broker ($TRANSPORT_URL) and its management
# API ($RABBIT_API); a temporary directory ($dir) and the RabbitMQ vhost,
# both removed at the end however the run ends, with the processes whose
# PIDs the script adds to `pids`; a free port, the configuration file, and
# the wait for the API. The script may set broker_mask (the broker's CPU
# mask to give back at the end); KEEP_LOGS=DIR keeps the run's directory.

faafo=${FAAFO:-target/release/faafo}
broker=${TRANSPORT_URL:-rabbit://guest:guest@127.0.0.1:5672/}
mgmt=${RABBIT_API:-http://127.0.0.1:15672/api}
[ -x "$faafo" ] || { echo "$faafo not found: cargo build --release -p faafo-producer --bin faafo" >&2; exit 1; }
dir=$(mktemp -d)
pids=()

# Every step runs whatever failed before it: processes stopped first (so
# that their logs are complete), then the logs kept, the broker unpinned,
# the vhost and the directory removed.
cleanup() {
    set +e
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    wait 2>/dev/null
    [ -n "${KEEP_LOGS:-}" ] && cp -r "$dir" "$KEEP_LOGS"
    [ -n "${broker_mask:-}" ] && taskset -a -p "$broker_mask" "$(pgrep -o beam.smp)" >/dev/null
    curl -fsS -u guest:guest -X DELETE "$mgmt/vhosts/$vhost" >/dev/null
    rm -rf "$dir"
}

trap cleanup EXIT
curl -fsS -u guest:guest -X PUT "$mgmt/vhosts/$vhost" >/dev/null
curl -fsS -u guest:guest -X PUT -H 'content-type: application/json' \
    -d '{"configure":".*","write":".*","read":".*"}' "$mgmt/permissions/$vhost/guest" >/dev/null

# A TCP port nothing listens on.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (up to 10 s) until the API on port $1 is ready.
wait_for_api() {
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "the API on port $1 did not become ready" >&2
    return 1
}

# Writes $dir/faafo.conf for the vhost and the API on port $1: [DEFAULT]
# (with the lines of $2 added), [api]; the script appends its sections.
write_conf() {
    cat >"$dir/faafo.conf" <<EOF
[DEFAULT]
transport_url = ${broker%/}/$vhost
state_path = $dir
endpoint_url = http://127.0.0.1:$1
log_file = $dir/faafo.log
${2:-}

[api]
bind_port = $1
EOF
}
