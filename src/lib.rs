//! elbe: a Layer-7 load balancer that behaves like AWS Elastic Load Balancing "Classic".
//!
//! # Using the library
//!
//! - [`config`]: the TOML file, parsed (a raw serde model that rejects unknown keys) and validated (domain types
//!   with ELB's defaults); errors name file, key path and reason.
//! - [`server`]: [`server::start`] binds every listener (port 0 = any free port, read back in
//!   [`server::Server::status`]) and returns the running [`server::Server`]: reload, shutdown, `/status`.
//! - [`testing`]: the harness for users' own tests: an emulated ELB in-process, a client that caches DNS as real
//!   clients do.
//! - [`headers::trusted_client_ip`]: for instances, the client's address from `X-Forwarded-For`, read safely.
//! - [`demo`]: the demonstration `cargo run` starts, and its echo instances.
//! - [`notify`]: readiness for systemd (`sd_notify`), which the `elbe` command sends.
//!
//! # Layout
//!
//! The house follows the request. Layers import downwards only, and no modules import each other in a circle
//! (`tests/layering.rs` reads the source and enforces both):
//!
//! 1. **Entry**: `main.rs` (the `elbe` command), `server` (starts the control plane, the nodes, the admin
//!    listener and the DNS responder; reload and shutdown), `testing`, `demo`.
//! 2. **Control plane** (`control_plane/`, slow, may lock): `control` owns the mutable state (configuration,
//!    registrations, health, resolved names) and publishes an immutable snapshot per node listener whenever it
//!    changes (`control/publish`), applies registrations and health events (`control/registration`), reloads
//!    (`control/reload`) and reports (`control/status`: `/status`, `/healthz`); `health` runs ELB's checks
//!    (states, thresholds, the probe, the checker); `discovery` re-resolves `host:port` instances and sends the
//!    answers as events; `admin` serves `/status`, `/healthz`, `/metrics` and instance registration; `api` answers
//!    ELB's own API there (the AWS Query protocol, SigV4, every action, each change a plan the server stages and
//!    commits as a reload); `store` keeps every change made through them durable, as one record per object laid
//!    on the file (`store/overlay`), in `state_dir` (redb), in memory for the harness, or in etcd (`cluster`).
//! 3. **DNS** (`dns`): the authoritative responder for load balancer names.
//! 4. **Data plane** (`data_plane/`, the hot path: no lock, the snapshot is an `ArcSwap` load), in the order a
//!    request flows:
//!    - `node`: one zone's node, the accept loops of its listeners, with `tls` for HTTPS;
//!    - `front_end`: client connections: `front_end/http1` is elbe's HTTP/1.x server (the connection's state
//!      machine, reading requests, writing responses, ELB's 408 and idle timers), `front_end/http2` elbe's
//!      HTTP/2 server (`server`: frames, streams on the connection's task, flow control; with the wire format
//!      of `http2/`), its idle timer around the socket and RFC 8441 WebSockets;
//!    - `proxy`: the request path as tower layers: `track` (in flight, metrics, access log), `check` (ELB's
//!      refusals, with `headers` checks), `forwarded` (X-Forwarded-*, hop-by-hop headers, Host), `forward`
//!      (pick, surge queue, send, ELB's 503/502/504, the keep-alive-race replay); `answer` makes ELB's own
//!      responses, `response_body` carries a response and the request's bookkeeping to the client;
//!    - `tcp`: TCP and SSL listeners (Layer 4): Proxy Protocol in and out, round-robin connect, the splice(2)
//!      copy loop (the buffered `tunnel` where TLS is on either side), one log line per connection;
//!    - `passive`: instances that failed under traffic, reported to the control plane on a channel;
//!    - `routing`: `balancer` (least outstanding requests by the power of two choices, round robin) and `surge`
//!      (ELB's surge queue and spillover);
//!    - `snapshot`: what one node listener may route to now;
//!    - `back_end`: `target` (an instance as a listener reaches it, with its counters and pool), `pool` (lock-free
//!      idle keep-alive connections), `http1` (elbe's HTTP/1.1 client: connection, request, exchange, response
//!      head), `tls` (the TLS clients for HTTPS/SSL instances, verified with `backend_ca`), `error` (whose fault,
//!      retry safety);
//!    - `body` (a client's request body, requests in flight per connection) and `elb_response` (ELB's own
//!      responses and their bytes), which everything above uses.
//! 5. **Wire format, observability, shutdown**: `http1` (HTTP/1.1 for both roles: field syntax, head spans,
//!    framing, socket I/O; no elbe types), `http2` (HTTP/2's wire format: `hpack`, the header compression codec;
//!    no elbe types), `observability` (`metrics`: ELB's CloudWatch metrics as Prometheus series; `access_log`:
//!    ELB's access-log lines, written off the request path), `shutdown` (the signal and the connection count that
//!    SIGTERM, tests and reload share).
//! 6. **Config** (`config`, `config/`): what everything above is configured with.

// Every public item says what it is: a new one without a doc comment fails the build.
#![deny(missing_docs)]

pub mod config;
pub mod demo;
pub mod notify;
pub mod server;
pub mod testing;

/// For instances behind elbe: reading the client's address from `X-Forwarded-For` the only safe way.
pub mod headers {
    pub use crate::data_plane::headers::forwarded::trusted_client_ip;
}

#[doc(hidden)]
pub mod bench_support;
#[doc(hidden)]
pub mod fuzz_support;

mod control_plane;
mod data_plane;
mod dns;
mod http1;
mod http2;
mod observability;
mod shutdown;
