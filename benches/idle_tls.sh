#!/usr/bin/env bash
# Memory per idle HTTPS keep-alive client connection (issue 18 item 1), side by side in one run: nginx, haproxy
# and elbe each terminate TLS (one self-signed P-256 certificate, ALPN http/1.1) and proxy to one nginx backend;
# N clients each finish a handshake, send one request, read the answer and stay connected; the proxy's RSS (all
# its processes) before and after, divided by N. The plain-HTTP twin is ../shared/bench/idle_conns.sh, whose
# shape this follows (one worker each, the same backend, the same client), so the two tables compare.
#   benches/idle_tls.sh [N]      (from the elbe checkout; needs target/release/elbe, nginx, haproxy, openssl,
#                                 python3; N defaults to 4000: the Python client's own TLS state is the limit)
set -u
N=${1:-4000}
ELBE=${ELBE:-$PWD/target/release/elbe}
for tool in nginx haproxy openssl python3; do
  command -v "$tool" >/dev/null || { echo "idle_tls.sh: $tool is missing" >&2; exit 1; }
done
[ -x "$ELBE" ] || { echo "idle_tls.sh: no elbe at $ELBE (cargo build --release)" >&2; exit 1; }
T=$(mktemp -d /tmp/idle-tls.XXXXXX)
ulimit -n "$(ulimit -Hn)" 2>/dev/null
pids=()
cleanup() { for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null; done; sleep 0.5; rm -rf "$T"; }
trap cleanup EXIT
mkdir -p "$T/nb" "$T/np"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null ||
  { echo "idle_tls.sh: openssl could not make a certificate" >&2; exit 1; }
cat "$T/cert.pem" "$T/key.pem" > "$T/both.pem"
cat > "$T/backend.conf" <<C
daemon off; worker_processes 1; pid $T/nb/pid; error_log $T/nb/err.log; events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000; server { listen 127.0.0.1:9201; location / { return 200 "ok\n"; } } }
C
cat > "$T/proxy.conf" <<C
daemon off; worker_processes 1; pid $T/np/pid; error_log $T/np/err.log; worker_rlimit_nofile 20000;
events { worker_connections 12000; }
http { access_log off; keepalive_requests 100000; keepalive_timeout 300s;
  upstream b { server 127.0.0.1:9201; keepalive 128; }
  server { listen 127.0.0.1:9202 ssl backlog=4096; ssl_certificate $T/cert.pem; ssl_certificate_key $T/key.pem;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
C
cat > "$T/haproxy.cfg" <<C
global
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend f
  bind 127.0.0.1:9203 ssl crt $T/both.pem alpn http/1.1
  maxconn 9000
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:9201
C
cat > "$T/elbe.toml" <<C
[admin]
listen = "127.0.0.1:0"
[limits]
max_connections = 30000
[[load_balancer]]
name = "bench"
idle_timeout = "300s"
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.1"
[[load_balancer.listener]]
protocol = "HTTPS"
load_balancer_port = 9204
instance_protocol = "HTTP"
instance_port = 9201
certificates = [{ cert = "$T/cert.pem", key = "$T/key.pem" }]
[[load_balancer.instance]]
id = "i-1"
zone = "zone-a"
address = "127.0.0.1:9201"
C
start() { setsid "$@" >"$T/$(basename "$1").out" 2>&1 & pids+=($!); }
start nginx -c "$T/backend.conf"
start nginx -c "$T/proxy.conf"
start haproxy -f "$T/haproxy.cfg"
RUST_LOG=elbe=warn TOKIO_WORKER_THREADS=1 start "$ELBE" run --config "$T/elbe.toml"
listening() { python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$1" 2>/dev/null; }
for port in 9201 9202 9203 9204; do
  for _ in $(seq 100); do listening "$port" && break; sleep 0.1; done
  listening "$port" || { echo "idle_tls.sh: nothing listens on $port" >&2; cat "$T"/*.out >&2; exit 1; }
done
sleep 1
rss_of() { # total RSS in KiB of the session led by $1
  ps -o rss= -s "$1" 2>/dev/null | awk '{s+=$1} END {print s+0}'
}
printf '%-8s %10s %10s %12s\n' target rss0_KiB rss1_KiB bytes/conn
for name in nginx haproxy elbe; do
  case $name in nginx) port=9202; sid=${pids[1]} ;; haproxy) port=9203; sid=${pids[2]} ;; elbe) port=9204; sid=${pids[3]} ;; esac
  r0=$(rss_of "$sid")
  python3 - "$port" "$N" "$T/$name.hold" <<'PY' &
import socket, ssl, sys, time
port, n, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
context.set_alpn_protocols(["http/1.1"])
req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
socks = []
for i in range(n):
    s = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.sendall(req)
    socks.append(s)
ok = 0
for s in socks:
    s.settimeout(10)
    d = b""
    while b"\r\n\r\n" not in d:
        d += s.recv(4096)
    ok += d.startswith(b"HTTP/1.1 200")
open(flag, "w").write(str(ok))
time.sleep(15)
PY
  cpid=$!
  for _ in $(seq 600); do [ -f "$T/$name.hold" ] && break; sleep 0.5; done
  sleep 2
  r1=$(rss_of "$sid")
  ok=$(cat "$T/$name.hold" 2>/dev/null || echo 0)
  printf '%-8s %10s %10s %12s  (%s of %s answered 200)\n' "$name" "$r0" "$r1" "$(( (r1 - r0) * 1024 / N ))" "$ok" "$N"
  kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null
  sleep 2
done
