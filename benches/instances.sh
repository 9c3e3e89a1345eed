#!/usr/bin/env bash
# Proxied throughput with 2 and with 1,000 registered instances, same run, same backend capacity (issue 18 item 5:
# the 1,000-instance run must keep at least 0.95x of the 2-instance one). Not run by CI: it takes the machine for
# a minute or two.
#
# One nginx process (one worker) is the backend: it listens on 1,000 ports of 127.0.0.1 (20000..20999) and
# answers every request with the same small 200, so both runs have the same backend capacity; only the number of
# instances elbe balances over changes. elbe (one node on 127.0.0.1:18080, TCP health checks every 5 s) is started
# once per configuration, every instance is waited InService, then wrk drives keep-alive HTTP through it. The two
# configurations alternate for ROUNDS rounds; the medians and their ratio are printed, with elbe's CPU per request.
#
#   cargo build --release && bash benches/instances.sh     # SECONDS_PER_RUN=10 ROUNDS=3 CONNECTIONS=64
#   PEER=nginx or PEER=haproxy: the same runs through that proxy instead (below)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${ELBE_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/elbe}
secs=${SECONDS_PER_RUN:-10}
rounds=${ROUNDS:-3}
connections=${CONNECTIONS:-64}
many=${INSTANCES:-1000}
for tool in wrk nginx curl $([ "${PEER:-elbe}" = haproxy ] && echo haproxy); do
  command -v "$tool" >/dev/null || { echo "instances.sh: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
[ "${PEER:-elbe}" != elbe ] || [ -x "$bin" ] || { echo "instances.sh: build elbe first (cargo build --release); looked for $bin" >&2; exit 1; }
tmp=$(mktemp -d)
chmod 755 "$tmp" # nginx's workers run as nobody when started by root
pids=()
elbe_pid=
cleanup() {
  [ -n "$elbe_pid" ] && kill "$elbe_pid" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# The backend: one nginx worker on $many ports.
{
  echo "daemon off; worker_processes 1; pid $tmp/backend.pid; error_log /dev/null; worker_rlimit_nofile 8192;"
  echo "events { worker_connections 4096; }"
  echo "http { access_log off; keepalive_requests 1000000; server {"
  for ((i = 0; i < many; i++)); do echo "listen 127.0.0.1:$((20000 + i));"; done
  echo "location / { return 200 'hello from the instance\n'; } } }"
} > "$tmp/backend.conf"
nginx -c "$tmp/backend.conf" -p "$tmp" & pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$((20000 + many - 1))/" >/dev/null && break; sleep 0.1; done

# elbe's configuration with the first $1 instances (ports 20000..).
config() {
  local n=$1 file=$tmp/elbe-$1.toml
  cat > "$file" <<TOML
[admin]
listen = "127.0.0.1:18081"

[[load_balancer]]
name = "bench"

[load_balancer.health_check]
target = "TCP:20000"
interval = "5s"
timeout = "2s"
healthy_threshold = 2
unhealthy_threshold = 2

[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.1"

[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 18080
instance_protocol = "HTTP"
instance_port = 20000
TOML
  for ((i = 0; i < n; i++)); do
    printf '[[load_balancer.instance]]\nid = "i-%05d"\nzone = "zone-a"\naddress = "127.0.0.1:%d"\n\n' "$i" "$((20000 + i))" >> "$file"
  done
  echo "$file"
}

# PEER=nginx: the same runs through nginx as the proxy (one worker, least_conn over the same instances, 128 idle
# keep-alive connections per worker), to tell what the number of instances costs any proxy on this machine (more
# backend connections, colder caches) from what it costs elbe.
peer=${PEER:-elbe}
nginx_config() {
  local n=$1 file=$tmp/proxy-$1.conf
  {
    echo "daemon off; master_process off; worker_processes 1; pid $tmp/proxy-$n.pid; error_log /dev/null; worker_rlimit_nofile 8192;"
    echo "events { worker_connections 4096; }"
    echo "http { access_log off; upstream instances { least_conn; keepalive 128;"
    for ((i = 0; i < n; i++)); do echo "server 127.0.0.1:$((20000 + i));"; done
    echo "} server { listen 127.0.0.1:18080; keepalive_requests 1000000; location / {"
    echo "proxy_pass http://instances; proxy_http_version 1.1; proxy_set_header Connection \"\"; } } }"
  } > "$file"
  echo "$file"
}

# PEER=haproxy: the same through haproxy (one thread, `balance random(2)`: the power of two choices elbe uses, an
# O(1) pick like elbe's, where nginx's least_conn scans; idle backend connections reused by every client
# connection), to tell what 1,000 instances cost on this machine a proxy whose pick does not grow with them.
haproxy_config() {
  local n=$1 file=$tmp/proxy-$1.cfg
  {
    printf 'global
  nbthread 1
  maxconn 8192
'
    printf 'defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
'
    printf 'frontend web
  bind 127.0.0.1:18080
  default_backend instances
'
    printf 'backend instances
  balance random(2)
'
    for ((i = 0; i < n; i++)); do printf '  server i%d 127.0.0.1:%d
' "$i" "$((20000 + i))"; done
  } > "$file"
  echo "$file"
}

# Starts the proxy with $1 instances and waits until it serves through all of them (elbe: every instance
# InService); sets elbe_pid.
start_proxy() {
  local n=$1 file up
  if [ "$peer" = haproxy ]; then
    file=$(haproxy_config "$n")
    haproxy -db -f "$file" >"$tmp/proxy-$n.log" 2>&1 & elbe_pid=$!
    for _ in $(seq 100); do curl -fs http://127.0.0.1:18080/ >/dev/null && return; sleep 0.1; done
    echo "instances.sh: haproxy did not answer" >&2; exit 1
  fi
  if [ "$peer" = nginx ]; then
    file=$(nginx_config "$n")
    nginx -c "$file" -p "$tmp" >"$tmp/proxy-$n.log" 2>&1 & elbe_pid=$!
    for _ in $(seq 100); do curl -fs http://127.0.0.1:18080/ >/dev/null && return; sleep 0.1; done
    echo "instances.sh: nginx did not answer" >&2; exit 1
  fi
  file=$(config "$n")
  # elbe's log goes to a file: run's standard output is its result.
  TOKIO_WORKER_THREADS=1 RUST_LOG=elbe=warn "$bin" run --config "$file" >"$tmp/elbe-$n.log" 2>&1 & elbe_pid=$!
  for _ in $(seq 200); do
    up=$(curl -fs http://127.0.0.1:18081/status 2>/dev/null | grep -c '"state": "InService"' || true)
    [ "$up" = "$n" ] && return
    sleep 0.1
  done
  echo "instances.sh: only $up of $n instances InService" >&2; exit 1
}

# CPU ticks (user + system) of a process.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# One run with $1 instances: prints "requests/s CPU-us/request".
run() {
  local n=$1
  start_proxy "$n"
  wrk -t1 -c"$connections" -d2s http://127.0.0.1:18080/ >/dev/null # warm-up: pools fill
  local t0 t1 rps
  t0=$(ticks "$elbe_pid")
  rps=$(wrk -t1 -c"$connections" -d"${secs}s" http://127.0.0.1:18080/ | awk '/Requests\/sec/ { print $2 }')
  t1=$(ticks "$elbe_pid")
  kill "$elbe_pid"; wait "$elbe_pid" 2>/dev/null || true; elbe_pid=
  # USER_HZ = 100: a tick is 10 ms.
  awk -v r="$rps" -v t="$((t1 - t0))" -v s="$secs" 'BEGIN { printf "%.0f %.1f\n", r, t * 10000 / (r * s) }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

: > "$tmp/2"; : > "$tmp/$many"
for ((round = 1; round <= rounds; round++)); do
  for n in 2 "$many"; do
    result=$(run "$n")
    echo "round $round, $n instances: ${result% *} req/s, ${result#* } CPU us/request"
    echo "$result" >> "$tmp/$n"
  done
done
two=$(cut -d' ' -f1 "$tmp/2" | median)
lots=$(cut -d' ' -f1 "$tmp/$many" | median)
echo "| instances | req/s (median of $rounds) | CPU us/request (median) |"
echo "|---|---|---|"
echo "| 2 | $two | $(cut -d' ' -f2 "$tmp/2" | median) |"
echo "| $many | $lots | $(cut -d' ' -f2 "$tmp/$many" | median) |"
awk -v a="$lots" -v b="$two" -v n="$many" 'BEGIN { printf "%s instances / 2 instances: %.3fx\n", n, a / b }'
