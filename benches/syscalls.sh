#!/usr/bin/env bash
# System calls per proxied request (issue 18 item 3), elbe against nginx in one run: each proxy (one worker, one
# nginx backend) is traced with `strace -f -yy` while h2load sends a fixed number of HTTP/1.1 keep-alive requests
# after a warm-up; each call is put on the side its socket faces (client: the proxy's listening port is the local
# end; backend: the backend's port is the remote end; other: epoll, timers, futexes, anything without a socket)
# and counted per request. MODE=plain (default) or MODE=tls (HTTPS to the proxy, TLS 1.3, ALPN http/1.1).
#
#   cargo build --release && benches/syscalls.sh [ELBE_BIN]     # default: target/release/elbe
#   MODE=tls REQUESTS=20000 CLIENTS=16 benches/syscalls.sh
#
# Needs strace, nginx, h2load (nghttp2-client), openssl (tls), curl. Ports: backend 127.0.0.1:9301,
# nginx 9302, elbe 9303. strace slows every proxy alike; the counts, not the times, are the result.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
ELBE=${1:-$here/target/release/elbe}
MODE=${MODE:-plain}; WARMUP=${WARMUP:-2000}; REQUESTS=${REQUESTS:-20000}; CLIENTS=${CLIENTS:-16}
for tool in strace nginx h2load curl openssl; do
  command -v $tool >/dev/null || { echo "syscalls.sh: $tool not found" >&2; exit 1; }
done
[ -x "$ELBE" ] || { echo "syscalls.sh: no elbe at $ELBE (cargo build --release)" >&2; exit 1; }
case $MODE in plain) scheme=http ;; tls) scheme=https ;; *) echo "syscalls.sh: MODE is plain or tls" >&2; exit 1 ;; esac
T=$(mktemp -d /tmp/syscalls.XXXXXX); pids=()
cleanup() { for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$T"; }
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
mkdir -p "$T/nb" "$T/np"
cat > "$T/backend.conf" <<C
daemon off; worker_processes 1; pid $T/nb/pid; error_log $T/nb/err.log; events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; server { listen 127.0.0.1:9301; location / { return 200 "hello from 9301\n"; } } }
C
ssl=""; [ $MODE = tls ] && ssl="ssl; ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $T/cert.pem; ssl_certificate_key $T/key.pem"
cat > "$T/proxy.conf" <<C
daemon off; worker_processes 1; pid $T/np/pid; error_log $T/np/err.log; events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream b { server 127.0.0.1:9301; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:9302 $ssl;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } } }
C
listener='protocol = "HTTP"'
[ $MODE = tls ] && listener="protocol = \"HTTPS\"
certificates = [{ cert = \"$T/cert.pem\", key = \"$T/key.pem\" }]"
cat > "$T/elbe.toml" <<C
[admin]
listen = "127.0.0.1:0"
[[load_balancer]]
name = "bench"
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.1"
[[load_balancer.listener]]
$listener
load_balancer_port = 9303
instance_protocol = "HTTP"
instance_port = 9301
[[load_balancer.instance]]
id = "i-9301"
zone = "zone-a"
address = "127.0.0.1:9301"
C
start() { local name=$1; shift; setsid "$@" >"$T/$name.out" 2>&1 </dev/null & pids+=($!); }
start backend nginx -e "$T/nb/err.log" -c "$T/backend.conf"
start nginx nginx -e "$T/np/err.log" -c "$T/proxy.conf"
TOKIO_WORKER_THREADS=1 RUST_LOG=elbe=warn start elbe "$ELBE" run --config "$T/elbe.toml"
wait_for() { for _ in $(seq 1 300); do curl -fksS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "syscalls.sh: $1 never answered" >&2; exit 1; }
for port in 9301 9302 9303; do s=http; [ $port != 9301 ] && s=$scheme; wait_for $s://127.0.0.1:$port/; done

# The process to trace: nginx's worker (the master only supervises), elbe itself (strace -f takes its threads).
traced_pid() { case $1 in nginx) pgrep -P "${pids[1]}" nginx | head -1 ;; elbe) echo "${pids[2]}" ;; esac; }
count() { # name port -> the per-request table on stdout
  local name=$1 port=$2 pid; pid=$(traced_pid "$name")
  h2load --h1 -n "$WARMUP" -c "$CLIENTS" $scheme://127.0.0.1:$port/ >/dev/null
  strace -f -qq -yy -o "$T/$name.trace" -p "$pid" & local st=$!
  sleep 1   # strace attaches
  h2load --h1 -n "$REQUESTS" -c "$CLIENTS" $scheme://127.0.0.1:$port/ > "$T/$name.h2load"
  grep -q "$REQUESTS succeeded, 0 failed" <(grep "requests:" "$T/$name.h2load") || { cat "$T/$name.h2load" >&2; exit 1; }
  sleep 0.5; kill -INT $st; wait $st 2>/dev/null || true
  # One line per call: "<side> <syscall>" (a resumed call was counted where it started).
  sed -E 's/^[0-9]+ +//' "$T/$name.trace" | grep -v -e '^<\.\.\.' -e '^+++' -e '^---' | awk -v port="$port" '
    { call = $1; sub(/\(.*/, "", call)
      side = "other"
      if (match($0, /TCP:\[[0-9.]+:[0-9]+->[0-9.]+:[0-9]+\]/)) {
        ep = substr($0, RSTART + 5, RLENGTH - 6); split(ep, lr, "->")
        if (lr[1] ~ (":" port "$")) side = "client"; else if (lr[2] ~ /:9301$/) side = "backend"
      } else if (match($0, /TCP:\[[0-9.]+:[0-9]+\]/)) side = "client"
      print side, call }' | sort | uniq -c | awk -v n="$REQUESTS" -v who="$name" '
    { printf "%s %s %s %.3f\n", who, $2, $3, $1 / n }'
}
echo "=== syscalls.sh MODE=$MODE REQUESTS=$REQUESTS CLIENTS=$CLIENTS $(date -u +%Y-%m-%dT%H:%M:%SZ)"
{ count nginx 9302; count elbe 9303; } > "$T/all"
# The table: one row per (side, call), nginx and elbe side by side, calls per request.
printf '| side | call | nginx | elbe |\n|---|---|---|---|\n'
awk '{ print $2, $3 }' "$T/all" | sort -u | while read -r side call; do
  awk -v s="$side" -v c="$call" '$2 == s && $3 == c { v[$1] = $4 }
    END { printf "| %s | %s | %.2f | %.2f |\n", s, c, v["nginx"] + 0, v["elbe"] + 0 }' "$T/all"
done
awk '{ t[$1] += $4 } END { printf "| all | all | %.2f | %.2f |\n", t["nginx"], t["elbe"] }' "$T/all"
[ -n "${KEEP:-}" ] && cp "$T"/*.trace "$KEEP/"
exit 0
