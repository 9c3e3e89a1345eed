//! TCP and SSL listeners: Layer 4 pass-through (ELB-SPEC §1, §1.3, §7, §8; DESIGN.md "TCP and SSL listeners").
//!
//! A TCP listener passes bytes both ways untouched: no header is added, a client's FIN reaches the instance as a
//! half-close and the rest of the answer still comes back, and ELB's idle timeout closes a connection in which no
//! byte moved either way. An SSL listener terminates TLS first, with the same certificates, SNI and `ssl_policy` as
//! an HTTPS listener, and speaks plain TCP or TLS (`instance_protocol = "SSL"`, no SNI, as ELB) to the instance.
//! Instances are chosen round robin (ELB-SPEC §3: TCP listeners round robin) over the same snapshot as HTTP, so the
//! zone and health rules are the same; a connection that finds every instance at its limit waits in the node's
//! surge queue, and a full queue closes it (§8, SpilloverCount). A failed connect goes on to the next instance
//! (nothing was sent yet, so it is always safe) and is reported to passive health checks as HTTP's are.
//!
//! # Layout
//!
//! In the order a connection goes through them:
//!
//! - `accept`: one connection's life (the node's accept loop hands it over): the trusted upstream's PROXY header (when the
//!   listener accepts one), the TLS handshake (SSL), the instance, the tunnel, the log line.
//! - `proxy_protocol`: the PROXY protocol: v1 and v2 headers read from a trusted upstream (on any listener that
//!   accepts them: the node's HTTP and HTTPS listeners read theirs with the same `read_header`), the v1 line
//!   written to instances (§7).
//! - `prefixed`: a client stream with bytes read past the PROXY header put back in front (the node's HTTP and
//!   HTTPS listeners use it too).
//! - `connect`: picking (round robin, surge queue), connecting with the next instance on failure, the PROXY
//!   line, TLS to the instance.
//! - `record`: what a connection counts (RequestCount as connections, Latency as connect time, bytes) and its
//!   access-log line with `- - -` request fields (§10, §11).
//!
//! - `splice`: the copy loop of a TCP -> TCP connection, splice(2) through a pipe each way (measured cheaper than
//!   a user-space copy, BENCHMARKS.md); a connection with TLS on either side uses
//!   [`crate::data_plane::tunnel`], the WebSocket tunnel's, 16 KiB each way through user space.

mod accept;
mod connect;
pub(crate) mod prefixed;
pub(crate) mod proxy_protocol;
mod record;
pub(crate) mod splice;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Listener, LoadBalancer, PolicyKind, Protocol};

pub(crate) use accept::serve;

/// What one TCP/SSL listener adds to the [`crate::data_plane::proxy::ListenerContext`] every listener has.
pub(crate) struct Layer4 {
    /// The node's address and the listener's port: the destination a PROXY line names (ELB-SPEC §7).
    pub node: SocketAddr,
    /// A ProxyProtocolPolicyType on the instance port: each connection to an instance starts with a v1 line.
    pub send_proxy_protocol: bool,
    /// elbe's extension (`accept_proxy_protocol`): each client connection starts with a v1 or v2 header from a
    /// trusted upstream balancer, whose address becomes the client's.
    pub accept_proxy_protocol: bool,
    /// `instance_protocol = "SSL"`: instances are spoken to in TLS.
    pub ssl_to_instance: bool,
    /// The TLS client for SSL instances (no SNI; verifying against the port's `backend_ca`, or nothing).
    pub instance_tls: Option<Arc<rustls::ClientConfig>>,
    /// `backend_connect_timeout`, which bounds the TLS handshake with an instance too.
    pub connect_timeout: Duration,
    /// How long a client may take to send its PROXY header and finish its TLS handshake.
    pub handshake_timeout: Duration,
    /// The round robin's position (ELB-SPEC §3), this listener's own.
    cursor: AtomicUsize,
}

impl Layer4 {
    /// The settings of `listener` as its node serves it at `node` (the node's address, the bound port).
    /// `instance_tls` is the TLS client for `instance_protocol = "SSL"` (no SNI; the port's `backend_ca` one, or the
    /// health checks' unverified one, ELB-SPEC §12), ignored otherwise.
    pub(crate) fn new(
        config: &Config,
        load_balancer: &str,
        listener: &Listener,
        node: SocketAddr,
        instance_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let lb = config
            .load_balancers
            .iter()
            .find(|lb| lb.name == load_balancer);
        Layer4 {
            node,
            send_proxy_protocol: lb.is_some_and(|lb| sends_proxy_protocol(lb, listener)),
            accept_proxy_protocol: listener.accept_proxy_protocol,
            ssl_to_instance: listener.instance_protocol == Protocol::Ssl,
            instance_tls: instance_tls.filter(|_| listener.instance_protocol == Protocol::Ssl),
            connect_timeout: config.limits.backend_connect_timeout,
            handshake_timeout: config.limits.tls_handshake_timeout,
            cursor: AtomicUsize::new(0),
        }
    }
}

/// ELB-SPEC §7: a ProxyProtocolPolicyType on the listener's instance port, and the instance spoken to in plain
/// TCP (TCP -> TCP, SSL -> TCP; SSL -> SSL has no Proxy Protocol).
fn sends_proxy_protocol(lb: &LoadBalancer, listener: &Listener) -> bool {
    listener.instance_protocol == Protocol::Tcp
        && lb
            .backend_servers
            .iter()
            .filter(|server| server.instance_port == listener.instance_port)
            .flat_map(|server| &server.policy_names)
            .any(|name| {
                lb.policies
                    .iter()
                    .any(|p| p.name == *name && p.kind == PolicyKind::ProxyProtocol)
            })
}
