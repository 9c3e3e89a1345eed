#!/usr/bin/env bash
# HTTP/2 over TLS: user-space instructions per proxied request (callgrind) and the new backend connections a
# fixed h2load run makes elbe open. The h2 twin of benches/callgrind.sh: elbe (one worker) terminates TLS with
# ALPN h2 in front of two nginx instances on HTTP/1.1, as ../shared/bench/peers.sh MODE=h2 runs it; h2load sends a
# warm-up, then the measured requests (-c CONNS -m STREAMS). The instructions callgrind counted between the two
# dumps, divided by the requests, is the first result; the connections the instances accepted meanwhile (nginx's
# stub_status) the second.
#
#   cargo build --release && benches/callgrind_h2.sh [ELBE_BIN ...]     # default: target/release/elbe
#   VALGRIND=0 benches/callgrind_h2.sh     # elbe at full speed: backend connections only (timing-dependent)
#   VALGRIND=0 STRACE=1 benches/callgrind_h2.sh   # ... and elbe's system calls per request (strace -c -f)
#
# Needs valgrind (unless VALGRIND=0), nginx, openssl, curl and h2load (nghttp2-client). Ports: instances
# 127.0.0.1:9101 and :9102, their stub_status :9109, elbe 127.0.0.1:9184.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || set -- "$here/target/release/elbe"
VALGRIND=${VALGRIND:-1}
tools="nginx h2load openssl curl"; [ "$VALGRIND" = 1 ] && tools="$tools valgrind callgrind_control"
for tool in $tools; do
  command -v $tool >/dev/null || { echo "callgrind_h2.sh: $tool not found" >&2; exit 1; }
done
WARMUP=${WARMUP:-2000}; REQUESTS=${REQUESTS:-20000}; CONNS=${CONNS:-64}; STREAMS=${STREAMS:-10}
IDLE=${BACKEND_IDLE_CONNECTIONS:-128}
T=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1
cat > "$T/backend.conf" <<CONF
worker_processes 1; pid $T/backend.pid; error_log $T/backend.err; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:9101; location / { return 200 "hello from 9101\n"; } }
  server { listen 127.0.0.1:9102; location / { return 200 "hello from 9102\n"; } }
  server { listen 127.0.0.1:9109; location = /status { stub_status; } } }
CONF
setsid nginx -e "$T/backend.err" -c "$T/backend.conf" & pids+=($!)
cat > "$T/elbe.toml" <<TOML
[admin]
listen = "127.0.0.1:0"
[limits]
backend_idle_connections = $IDLE
[[load_balancer]]
name = "bench"
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.1"
[[load_balancer.listener]]
protocol = "HTTPS"
load_balancer_port = 9184
instance_protocol = "HTTP"
instance_port = 9101
certificates = [{ cert = "$T/cert.pem", key = "$T/key.pem" }]
[[load_balancer.instance]]
id = "i-9101"
zone = "zone-a"
address = "127.0.0.1:9101"
[[load_balancer.instance]]
id = "i-9102"
zone = "zone-a"
address = "127.0.0.1:9102"
TOML
wait_for() { for _ in $(seq 1 600); do curl -kfsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "callgrind_h2.sh: $1 never answered" >&2; return 1; }
accepted() { curl -fsS http://127.0.0.1:9109/status | awk 'NR == 3 {print $1}'; }
wait_for http://127.0.0.1:9109/status
for bin in "$@"; do
  out="$T/callgrind.out"
  if [ "$VALGRIND" = 1 ]; then
    TOKIO_WORKER_THREADS=1 RUST_LOG=elbe=warn setsid valgrind --tool=callgrind --callgrind-out-file="$out.%p" \
      --dump-instr=no --collect-atstart=yes "$bin" run --config "$T/elbe.toml" >"$T/elbe.log" 2>&1 & vpid=$!
  else
    TOKIO_WORKER_THREADS=1 RUST_LOG=elbe=warn setsid "$bin" run --config "$T/elbe.toml" >"$T/elbe.log" 2>&1 & vpid=$!
  fi
  pids+=($vpid)
  wait_for https://127.0.0.1:9184/
  h2load -t1 -n "$WARMUP" -c "$CONNS" -m "$STREAMS" https://127.0.0.1:9184/ >/dev/null
  [ "$VALGRIND" = 1 ] && callgrind_control --zero "$vpid" >/dev/null
  before=$(accepted)
  if [ -n "${STRACE:-}" ]; then
    command -v strace >/dev/null || { echo "callgrind_h2.sh: strace not found" >&2; exit 1; }
    strace -c -f -o "$T/strace.txt" -p "$(pgrep -s "$vpid" elbe | head -1)" & spid=$!; sleep 1
  fi
  h2load -t1 -n "$REQUESTS" -c "$CONNS" -m "$STREAMS" https://127.0.0.1:9184/ > "$T/h2load.txt"
  grep -q "succeeded, 0 failed" <(grep "requests:" "$T/h2load.txt") || { cat "$T/h2load.txt" >&2; exit 1; }
  grep -qi "^application protocol: h2" "$T/h2load.txt" || { cat "$T/h2load.txt" >&2; echo "callgrind_h2.sh: not h2" >&2; exit 1; }
  new_conns=$(( $(accepted) - before - 1 ))   # the status request itself is one
  if [ -n "${STRACE:-}" ]; then
    kill -INT "$spid"; wait "$spid" 2>/dev/null || true
    calls=$(awk '$NF == "total" {print $4}' "$T/strace.txt")
    echo "system calls: $calls, $(( calls / REQUESTS )).$(( calls * 10 / REQUESTS % 10 )) per request"
    sort -k4 -n -r "$T/strace.txt" | awk 'NF >= 5 && $NF != "total" {print "  " $NF, $4}' | head -8
  fi
  line="$(basename "$bin"): $new_conns new backend connections over $REQUESTS requests"
  if [ "$VALGRIND" = 1 ]; then
    callgrind_control --dump=measured "$vpid" >/dev/null
    sleep 1
    total=$(grep -h "^summary:" "$out".*.* 2>/dev/null | tail -1 | awk '{print $2}')
    [ -n "$total" ] || total=$(grep -h "^totals:" "$out".* | tail -1 | awk '{print $2}')
    line="$line, $(( total / REQUESTS )) instructions per request ($total)"
  fi
  kill -- -"$vpid" 2>/dev/null || true; wait "$vpid" 2>/dev/null || true
  echo "$line"; grep "^finished in" "$T/h2load.txt" | sed 's/^/  h2load: /'
  [ -n "${KEEP:-}" ] && cp "$out".* "$KEEP/" 2>/dev/null; rm -f "$out".*
done
