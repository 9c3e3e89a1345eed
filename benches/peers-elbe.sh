#!/usr/bin/env bash
# Starts elbe the way ../shared/bench/peers.sh expects (see that script's header): one node on BENCH_LISTEN
# balancing over the benchmark's two backends 127.0.0.1:9001 and :9002, HTTP in MODE=plain, HTTPS (ALPN h2,
# http/1.1) with BENCH_CERT/BENCH_KEY otherwise, BENCH_WORKERS tokio worker threads.
#
#   cargo build --release
#   MODE=plain ../shared/bench/peers.sh "$PWD/benches/peers-elbe.sh"
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${ELBE_BIN:-$here/target/release/elbe}
[ -x "$bin" ] || { echo "peers-elbe.sh: build elbe first (cargo build --release)" >&2; exit 1; }
config=${BENCH_TMP:-$(mktemp -d)}/elbe.toml
host=${BENCH_LISTEN%:*}; port=${BENCH_LISTEN##*:}
if [ "${BENCH_MODE:-plain}" = plain ]; then
  listener="protocol = \"HTTP\""
else
  listener="protocol = \"HTTPS\"
certificates = [{ cert = \"$BENCH_CERT\", key = \"$BENCH_KEY\" }]"
fi
cat > "$config" <<TOML
[admin]
listen = "127.0.0.1:0"

[limits]
backend_idle_connections = ${BENCH_UPSTREAM_KEEPALIVE:-128}

[[load_balancer]]
name = "bench"

[[load_balancer.availability_zone]]
name = "zone-a"
node = "$host"

[[load_balancer.listener]]
$listener
load_balancer_port = $port
instance_protocol = "HTTP"
instance_port = 9001

[[load_balancer.instance]]
id = "i-9001"
zone = "zone-a"
address = "127.0.0.1:9001"

[[load_balancer.instance]]
id = "i-9002"
zone = "zone-a"
address = "127.0.0.1:9002"
TOML
export TOKIO_WORKER_THREADS=${BENCH_WORKERS:-1}
export RUST_LOG=${RUST_LOG:-elbe=warn}
exec "$bin" run --config "$config"
