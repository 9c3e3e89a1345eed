#!/usr/bin/env bash
# Runs every test of elbe. On a fresh Debian 12 with only the Rust toolchain it first installs the programs the
# tests drive, and says which:
#   curl, dig (dnsutils), openssl  real clients of the proxy, the DNS responder and TLS
#   dnsmasq (dnsmasq-base)          a real DNS server for DNS discovery (the binary only, no system service)
#   systemd-analyze (systemd)       checks packaging/systemd/elbe.service (and /bin/kill, procps, that its
#                                   ExecReload runs)
#   python3                         runs the scale-out hook, examples/prometheus/scale-out-hook.py
#   h2load, nghttp (nghttp2-client) real HTTP/2 clients whose first bytes the frame reader's tests parse
#   testssl (testssl.sh)            audits the HTTPS listener: no HIGH or CRITICAL finding
#   chromium                        a real headless browser for the status page (tests/status_page.rs)
#   keepalived, ip (iproute2)       the floating-IP pair's failover in network namespaces (tests/failover.rs);
#                                   keepalived runs only inside the test's namespaces, never as a system service
#   promtool (prometheus)           checks /metrics and the alert rules; unpacked into target/promtool, not
#                                   installed, so no Prometheus server is started
#   aws (PyPI awscli, with pip)     the real AWS CLI against the ELB API (tests/api.rs); pip comes from apt
#                                   (python3-pip) when missing
#   etcd (etcd-server)              a real etcd for the cluster's state store (store/etcd's tests start their own
#                                   on free loopback ports; the package's system service is not used)
#   protoc (protobuf-compiler,      builds the `cluster` feature: etcd-client compiles etcd's .proto files, which
#     libprotobuf-dev)              import protobuf's well-known types (/usr/include/google/protobuf)
# A test whose program is missing fails (tests/tools.rs names it); none is skipped.
#
# Then: `cargo nextest run` (every test binary, one process per test) and `cargo test --doc` (nextest does not
# run doctests), or plain `cargo test` (doctests included) when cargo-nextest is
# not installed. Arguments go to the test runner:
#   ./test.sh -E 'binary(cli)'      (nextest)       ./test.sh --test cli      (cargo test)
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/sbin:/sbin"

have() { command -v "$1" >/dev/null 2>&1; }

# The Debian packages that provide the missing programs.
missing=()
have curl || missing+=(curl)
have dig || missing+=(dnsutils)
have openssl || missing+=(openssl)
have dnsmasq || missing+=(dnsmasq-base)
have systemd-analyze || missing+=(systemd)
# The unit's ExecReload runs /bin/kill, and systemd-analyze verify checks that it exists.
[ -x /bin/kill ] || missing+=(procps)
have python3 || missing+=(python3)
# h2load and nghttp send their opening frames to src/http2/frame/tests/clients.rs.
(have h2load && have nghttp) || missing+=(nghttp2-client)
# testssl.sh audits the HTTPS listener (tests/testssl.rs).
have testssl || missing+=(testssl.sh)
# Headless chromium loads the status page (tests/status_page.rs).
have chromium || missing+=(chromium)
# keepalived in network namespaces made with ip(8): the floating-IP pair fails over (tests/failover.rs).
have keepalived || missing+=(keepalived)
have ip || missing+=(iproute2)
# The cluster's etcd store (feature `cluster`): a real etcd, and protoc with protobuf's own .proto files to build
# the etcd client.
have etcd || missing+=(etcd-server)
have protoc || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif have sudo; then sudo "$@"; else
    echo "test.sh: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

apt_updated=
apt_update() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
}

if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} (apt-get)"
  apt_update
  # systemd comes without its recommends: only systemd-analyze is used, nothing is started.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The AWS CLI drives the ELB API (tests/api.rs): PyPI's awscli, for the user running the tests.
export PATH="$PATH:$HOME/.local/bin"
if ! have aws; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "test.sh: installing python3-pip (apt-get) for the AWS CLI"
    apt_update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  echo "test.sh: installing the AWS CLI (pip install --user awscli)"
  # Debian 12 marks its Python as externally managed (PEP 668); a --user install touches no system package.
  python3 -m pip install --quiet --user awscli 2>/dev/null ||
    python3 -m pip install --quiet --user --break-system-packages awscli
fi

promtool=target/promtool/usr/bin/promtool
if [ -z "${PROMTOOL:-}" ] && ! have promtool && [ ! -x "$promtool" ]; then
  echo "test.sh: unpacking promtool from Debian's prometheus package into target/promtool"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 || { apt_update && apt-get download prometheus >/dev/null; }; })
  mkdir -p target/promtool
  dpkg -x "$tmp"/prometheus_*.deb target/promtool
fi
if [ -z "${PROMTOOL:-}" ] && [ -x "$promtool" ]; then
  PROMTOOL="$PWD/$promtool"
  export PROMTOOL
fi

if cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: running the suite with cargo nextest, then the doctests with cargo test --doc"
  # --features cluster: the etcd store and its tests (the default build leaves them out, so it needs no protoc).
  cargo nextest run --locked --features cluster "$@"
  if [ $# -eq 0 ]; then
    cargo test --locked --doc --features cluster
    echo "test.sh: checking the library's documentation (cargo doc, warnings are errors)"
    RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --lib --features cluster
  fi
else
  echo "test.sh: cargo-nextest is not installed; running the suite with cargo test (slower: one test binary at a time)"
  cargo test --locked --features cluster "$@"
fi
