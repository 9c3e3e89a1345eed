//! elbe: a Layer-7 load balancer that behaves like AWS Elastic Load Balancing "Classic".
//!
//! # Layout
//!
//! Read in the order a request flows:
//!
//! - [`config`]: the TOML file, parsed (raw serde model) and validated (domain types with ELB's defaults).
//! - [`server`]: starts the control plane, the nodes, the admin listener and the DNS responder; shutdown and
//!   reload ([`shutdown`] holds the signal and the connection count they share).
//! - [`control`]: owns the mutable state (registrations, health, resolved names) and publishes immutable
//!   [`snapshot`]s; [`health`] runs ELB's health checks, [`discovery`] re-resolves `host:port` instances.
//! - [`node`]: one zone's node: the accept loops of its listeners, with [`tls`] for HTTPS.
//! - [`front_end`]: elbe's HTTP/1.x server, one client connection: requests read, responses written, ELB's
//!   idle timeout and request-head timeout (408); [`client_connection`]: the idle timer of HTTP/2 connections,
//!   which hyper serves; [`framing`]: how HTTP/1.1 bodies are delimited, for both ends.
//! - [`proxy`]: the request path, as tower layers: tracking, checks, X-Forwarded-* ([`headers`]), forwarding.
//! - [`balancer`]: least outstanding requests (power of two choices) and round robin; [`surge`]: ELB's surge
//!   queue and spillover.
//! - [`pool`]: lock-free pools of idle keep-alive connections to instances; [`backend_connection`]: elbe's own
//!   HTTP/1.1 client, one request and its response on such a connection, driven on the client connection's task.
//! - [`body`]: request and response bodies, streamed, with the per-request bookkeeping.
//! - [`error`]: ELB's own responses (400, 408, 502, 503, 504) and the proxy's error type.
//! - [`metrics`]: ELB's CloudWatch metrics as Prometheus series; [`access_log`]: ELB's access-log lines.
//! - [`admin`]: `/status`, `/healthz`, `/metrics`, instance registration.
//! - [`dns`]: the authoritative responder for load balancer names.
//! - [`notify`]: readiness for systemd (`sd_notify`): `READY=1` once every listener is bound.
//! - [`testing`]: the harness for users' own tests (an emulated ELB in-process, a DNS-caching client).
//! - [`demo`]: the embedded demonstration that `cargo run` starts.
#![forbid(unsafe_code)]
#![deny(clippy::await_holding_lock, clippy::disallowed_types)]

pub mod config;
pub mod control_plane;
pub mod data_plane;
pub mod demo;
pub mod dns;
pub mod http1;
pub mod notify;
pub mod observability;
pub mod server;
pub mod shutdown;
pub mod testing;
