#!/usr/bin/env bash
# TCP pass-through, elbe against haproxy `mode tcp` and nginx `stream`, same run, same backend (issue 14's
# benchmark; ../shared/bench/peers.sh is HTTP only). Not run by CI: it takes the machine for a few minutes.
#
# Each balancer listens on 127.0.0.1 and passes TCP to one nginx serving HTTP on 127.0.0.1:9101 (a 1 MiB file for
# throughput, an empty one for connection rate). wrk drives HTTP through the Layer 4 hop:
#   - throughput: wrk -c 32 on /1m (keep-alive: few connections, many bytes);
#   - connections per second: wrk -c 64 with `Connection: close` on /0 (one TCP connection per request).
# CPU per balancer is read from /proc/<pid>/stat (utime+stime) around each run, so the table gives requests or
# bytes per CPU-second as well as the rates.
#
#   cargo build --release && bash benches/tcp_peers.sh        # SECONDS_PER_RUN=10 by default
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${ELBE_BIN:-$here/target/release/elbe}
secs=${SECONDS_PER_RUN:-10}
for tool in wrk nginx haproxy; do
  command -v "$tool" >/dev/null || { echo "tcp_peers.sh: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
stream_module=/usr/lib/nginx/modules/ngx_stream_module.so
[ -f "$stream_module" ] || { echo "tcp_peers.sh: nginx's stream module is missing (apt-get install libnginx-mod-stream)" >&2; exit 1; }
[ -x "$bin" ] || { echo "tcp_peers.sh: build elbe first (cargo build --release)" >&2; exit 1; }
tmp=$(mktemp -d)
chmod 755 "$tmp" # nginx's workers run as nobody when started by root: they must read the files
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# The backend: nginx, HTTP, two files.
mkdir -p "$tmp/www"
head -c 1048576 /dev/zero > "$tmp/www/1m"
: > "$tmp/www/0"
cat > "$tmp/backend.conf" <<CONF
daemon off; worker_processes 1; pid $tmp/backend.pid; error_log /dev/null;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:9101 reuseport backlog=4096; root $tmp/www; } }
CONF
nginx -c "$tmp/backend.conf" -p "$tmp" & pids+=($!)

# The balancers, each on its own port.
cat > "$tmp/elbe.toml" <<TOML
[admin]
listen = "127.0.0.1:0"
[[load_balancer]]
name = "bench"
[load_balancer.health_check]
target = "TCP:9101"
interval = "5s"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 2
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.1"
[[load_balancer.listener]]
protocol = "TCP"
load_balancer_port = 9201
instance_protocol = "TCP"
instance_port = 9101
[[load_balancer.instance]]
id = "i-1"
zone = "zone-a"
address = "127.0.0.1:9101"
TOML
"$bin" run --config "$tmp/elbe.toml" >/dev/null 2>&1 & pids+=($!); elbe_pid=$!
cat > "$tmp/haproxy.cfg" <<CONF
global
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:9202
  default_backend b
backend b
  server s1 127.0.0.1:9101
CONF
haproxy -f "$tmp/haproxy.cfg" -db & pids+=($!); haproxy_pid=$!
cat > "$tmp/stream.conf" <<CONF
load_module $stream_module;
daemon off; worker_processes 1; pid $tmp/stream.pid; error_log /dev/null;
events { worker_connections 4096; }
stream { server { listen 127.0.0.1:9203; proxy_pass 127.0.0.1:9101; } }
CONF
nginx -c "$tmp/stream.conf" -p "$tmp" & pids+=($!); nginx_pid=$!

# Ready when each answers through its hop (polled, never a fixed wait).
for port in 9201 9202 9203; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/0" >/dev/null && break; sleep 0.1; done
done

# A balancer's CPU ticks: the process and its children (nginx's worker does the work, not its master).
cpu() { cat "/proc/$1/stat" $(pgrep -P "$1" | sed 's|.*|/proc/&/stat|') | awk '{t += $14 + $15} END {print t}'; }
ticks=$(getconf CLK_TCK)
printf '%-8s %-12s %14s %16s\n' balancer run rate per-cpu-second
for entry in "elbe 9201 $elbe_pid" "haproxy 9202 $haproxy_pid" "nginx 9203 $nginx_pid"; do
  set -- $entry
  for run in throughput connections; do
    before=$(cpu "$3")
    if [ "$run" = throughput ]; then
      out=$(wrk -t 2 -c 32 -d "${secs}s" "http://127.0.0.1:$2/1m")
      rate=$(awk '/Transfer\/sec/ {print $2}' <<<"$out")
      count=$(awk '/requests in/ {print $1}' <<<"$out") # MiB moved = requests
    else
      out=$(wrk -t 2 -c 64 -d "${secs}s" -H 'Connection: close' "http://127.0.0.1:$2/0")
      rate=$(awk '/Requests\/sec/ {print $2 " conn/s"}' <<<"$out")
      count=$(awk '/requests in/ {print $1}' <<<"$out")
    fi
    used=$(( $(cpu "$3") - before ))
    per=$(awk -v n="$count" -v t="$used" -v hz="$ticks" 'BEGIN { if (t == 0) print "-"; else printf "%.0f", n / (t / hz) }')
    printf '%-8s %-12s %14s %16s\n' "$1" "$run" "$rate" "$per"
  done
done
