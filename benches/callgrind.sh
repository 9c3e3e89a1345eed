#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: repeatable where timings are not (the same
# binary and load give the same count on a busy machine). elbe runs under valgrind with one worker in front of
# an nginx backend; h2load sends a warm-up, then the measured requests; the instructions callgrind counted
# between the two dumps, divided by the requests, is the result.
#
#   cargo build --release && benches/callgrind.sh [ELBE_BIN ...]      # default: target/release/elbe
#
# Needs valgrind, nginx and h2load (nghttp2-client). Ports: backend 127.0.0.1:9101, elbe 127.0.0.1:9183.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || set -- "$here/target/release/elbe"
for tool in valgrind callgrind_control nginx h2load; do
  command -v $tool >/dev/null || { echo "callgrind.sh: $tool not found" >&2; exit 1; }
done
WARMUP=${WARMUP:-2000}; REQUESTS=${REQUESTS:-10000}; CLIENTS=${CLIENTS:-16}
T=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT
cat > "$T/backend.conf" <<CONF
worker_processes 1; pid $T/backend.pid; error_log $T/backend.err; daemon off;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:9101; location / { return 200 "hello from 9101\n"; } } }
CONF
setsid nginx -e "$T/backend.err" -c "$T/backend.conf" & pids+=($!)
cat > "$T/elbe.toml" <<TOML
[admin]
listen = "127.0.0.1:0"
[[load_balancer]]
name = "bench"
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.1"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 9183
instance_protocol = "HTTP"
instance_port = 9101
[[load_balancer.instance]]
id = "i-9101"
zone = "zone-a"
address = "127.0.0.1:9101"
TOML
wait_for() { for _ in $(seq 1 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "callgrind.sh: $1 never answered" >&2; return 1; }
wait_for http://127.0.0.1:9101/
for bin in "$@"; do
  out="$T/callgrind.out"
  TOKIO_WORKER_THREADS=1 RUST_LOG=elbe=warn setsid valgrind --tool=callgrind --callgrind-out-file="$out.%p" \
    --dump-instr=no --collect-atstart=yes "$bin" run --config "$T/elbe.toml" >"$T/elbe.log" 2>&1 & vpid=$!
  pids+=($vpid)
  wait_for http://127.0.0.1:9183/
  h2load --h1 -n "$WARMUP" -c "$CLIENTS" http://127.0.0.1:9183/ >/dev/null
  callgrind_control --zero "$vpid" >/dev/null
  h2load --h1 -n "$REQUESTS" -c "$CLIENTS" http://127.0.0.1:9183/ > "$T/h2load.txt"
  grep -q "succeeded, 0 failed" <(grep "requests:" "$T/h2load.txt") || { cat "$T/h2load.txt" >&2; exit 1; }
  callgrind_control --dump=measured "$vpid" >/dev/null
  sleep 1
  total=$(grep -h "^summary:" "$out".*.* 2>/dev/null | tail -1 | awk '{print $2}')
  [ -n "$total" ] || total=$(grep -h "^totals:" "$out".* | tail -1 | awk '{print $2}')
  kill -- -"$vpid" 2>/dev/null || true; wait "$vpid" 2>/dev/null || true
  echo "$(basename "$bin"): $(( total / REQUESTS )) instructions per request ($total over $REQUESTS requests)"
  [ -n "${KEEP:-}" ] && cp "$out".* "$KEEP/" 2>/dev/null; rm -f "$out".*
done
